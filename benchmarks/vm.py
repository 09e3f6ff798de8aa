#!/usr/bin/env python3
"""VM figures (caches warm): boot-to-JUnit wall time of `tsm-conformance vm` with one suite run
(median of N; goal <= 30 s), and the in-guest suite/raw-syscall ratio on the real configfs-tsm tree
(goal <= 1.5x).  Needs root, QEMU and the kernel cache (scripts/vm-tier.sh fills it)."""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "conformance")]

from tsm_conformance.vm.kernel import from_deb  # noqa: E402
from tsm_conformance.vm.runner import run_vm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--kernel-deb", default="linux-image-6.12-amd64")
    a = ap.parse_args()
    cache = Path(os.environ.get("TSM_CONFORMANCE_CACHE", "/var/cache/tsm-conformance"))
    env = dict(os.environ, PYTHONPATH=str(REPO / "conformance"))
    walls = []
    for _ in range(a.n):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "tsm_conformance.cli", "vm", "--kernel-deb", a.kernel_deb,
                                "--params", "privlevel_floor=1", "--junit", f"{d}/j.xml"],
                               capture_output=True, text=True, env=env)
            walls.append(time.perf_counter() - t0)
            if p.returncode:
                raise SystemExit(p.stdout[-2000:])
    tree = from_deb(a.kernel_deb, cache, lambda m: None)
    keep = Path(tempfile.mkdtemp(prefix="tsm-bench-"))
    cmd = f"{sys.executable} {REPO / 'benchmarks' / 'full_run.py'} -n 5 --root /sys/kernel/config/tsm/report"
    run_vm(tree, cache, keep / "j.xml", params=[], keep=keep, progress=lambda m: None,
           commands=[("privlevel_floor=1", cmd)])
    log = (keep / "command-0.log").read_text()
    ratio = re.search(r"live .*", log)
    print(f"{a.kernel_deb}: boot-to-JUnit median {statistics.median(walls):.1f} s over {a.n} runs "
          f"({', '.join(f'{w:.1f}' for w in walls)}); goal <= 30 s")
    print(f"in-guest {ratio[0] if ratio else 'ratio not measured: ' + log[-500:]}")


if __name__ == "__main__":
    main()
