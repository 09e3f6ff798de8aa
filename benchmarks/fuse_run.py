#!/usr/bin/env python3
"""Full-suite wall time over a FUSE mount against in-process emulation (goal: <= 15 s per full run
over FUSE).

Per provider: `tsm-conformance emulate PROVIDER --mount DIR` is started once (its time to the
"mounted" line is shown separately); then the median of N runs of each of
`tsm-conformance run --root DIR/tsm/report` and `tsm-conformance run --emulate PROVIDER`, each a new
process (interpreter, pytest and plugin start-up included).  Needs FUSE (root, /dev/fuse, libfuse3).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "conformance")]

from tsm_conformance.frontend.fuse import unavailable_reason  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=str(REPO / "conformance"))
CLI = [sys.executable, "-m", "tsm_conformance.cli"]
GOAL = 15.0


def run_once(target: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(CLI + ["run", *target, "--junit", f"{cwd}/junit.xml", "--seq-dir", f"{cwd}/seqs"],
                       capture_output=True, env=ENV, cwd=cwd)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"run {' '.join(target)} exited {p.returncode}: {p.stdout.decode()[-800:]}")
    return dt


def mount(config: str, mnt: str) -> tuple[subprocess.Popen, float]:
    t0 = time.perf_counter()
    p = subprocess.Popen(CLI + ["emulate", config, "--mount", mnt], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    line = p.stdout.readline()  # type: ignore[union-attr]
    if not line.startswith("mounted "):
        p.kill()
        raise SystemExit(f"emulate {config}: {line}{p.communicate()[1]}")
    return p, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5, help="runs per target (default 5)")
    ap.add_argument("--config", action="append", help="emulated provider (default: all five)")
    a = ap.parse_args()
    why = unavailable_reason()
    if why:
        raise SystemExit(f"FUSE unavailable: {why}")
    configs = a.config or ["sev_guest", "sev_guest-svsm", "tdx_guest", "arm_cca_guest", "tsm_test"]
    print(f"{'config':16} {'mount s':>8} {'fuse run s':>10} {'in-process s':>12} {'ratio':>6}")
    worst = 0.0
    for config in configs:
        with tempfile.TemporaryDirectory() as d:
            mnt = f"{d}/mnt"
            os.mkdir(mnt)
            p, mount_s = mount(config, mnt)
            try:
                fuse = [run_once(["--root", f"{mnt}/tsm/report"], d) for _ in range(a.n)]
            finally:
                p.send_signal(signal.SIGINT)
                p.wait(10)
            inproc = [run_once(["--emulate", config], d) for _ in range(a.n)]
        mf, mi = statistics.median(fuse), statistics.median(inproc)
        worst = max(worst, mf)
        print(f"{config:16} {mount_s:8.2f} {mf:10.2f} {mi:12.2f} {mf / mi:6.2f}")
    print(f"medians of {a.n} runs; goal: a full run over FUSE <= {GOAL:.0f} s "
          f"({'met' if worst <= GOAL else 'NOT met'}: slowest {worst:.2f} s)")


if __name__ == "__main__":
    main()
