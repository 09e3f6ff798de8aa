#!/usr/bin/env python3
"""Print the emulated full-run figures the project tracks (goals: <= 5 s, <= 1.5x).

1. Wall time of `tsm-conformance run --emulate CONFIG --junit ...` (a new process each time:
   interpreter, pytest and plugin start-up included), median of N runs.
2. Suite / raw ratio on the same operations: the catalogue run in-process (checks, recording,
   profile lookups) against a plain loop that replays exactly the Tree operations the suite made,
   with no check logic, on a fresh emulated kernel.  Medians of N runs each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "conformance")]

from tsm_conformance.checks.runner import Session  # noqa: E402
from tsm_conformance.emulator import boot  # noqa: E402
from tsm_conformance.names import BENCH_RUN  # noqa: E402
from tsm_conformance.profile.load import load_profile  # noqa: E402
from tsm_conformance.seq import TREE_OPS  # noqa: E402
from tsm_conformance.target.base import Tree  # noqa: E402
from tsm_conformance.target.emulated import EmulatedTree  # noqa: E402
from tsm_conformance.target.live import LiveTree  # noqa: E402

OPS = TREE_OPS  # the Tree protocol's operations (seq.py's table)


class Capture(Tree):
    """Tree proxy that records (operation, args) at the protocol boundary (no provider control,
    host or trust anchors of its own: Tree's defaults)."""

    def __init__(self, tree: EmulatedTree | LiveTree) -> None:
        self._t, self.ops = tree, []
        self.kind = tree.kind
        self.describe, self.kernel_release = tree.describe, tree.kernel_release
        self.hints = tree.hints
        for name in OPS:
            setattr(self, name, self._wrap(name, getattr(tree, name)))

    def _wrap(self, name, fn):  # noqa: ANN001, ANN202
        ops = self.ops

        def call(*args):  # noqa: ANN002, ANN202
            ops.append((name, args))
            return fn(*args)
        return call


# Left out of the ratio: provider-control checks reload modules, concurrency and host checks
# sleep for a fixed time on purpose, and the state machine (model.*) spends its time generating
# random programs (and is not repeatable run to run, which the op capture below needs).  The CLI
# wall time includes them all.
NOT_IN_RATIO = ("provider.", "concurrency.", "host.", "model.")


def tree_checks() -> list:
    """Deterministic checks that only talk to the tree from one thread."""
    from tsm_conformance.checks.base import all_checks
    return [c for c in all_checks() if not c.id.startswith(NOT_IN_RATIO)]


def suite_once(config: str, root: str | None = None) -> tuple[float, list]:
    """Time one uninstrumented run, then capture the operations of an identical one (the suite is
    deterministic), so the capture layer is not charged to the suite."""
    profile, checks = load_profile(config), tree_checks()
    tree = LiveTree(root) if root else EmulatedTree(config)
    t0 = time.perf_counter()
    Session(tree, profile, prefix=BENCH_RUN).run(checks)
    dt = time.perf_counter() - t0
    cap = Capture(LiveTree(root) if root else EmulatedTree(config))
    Session(cap, profile, prefix=BENCH_RUN).run(checks)  # type: ignore[arg-type]
    return dt, cap.ops


def replay(fns: dict, ops: list) -> float:
    """The raw loop: each captured operation as one call, errors ignored, nothing else."""
    t0 = time.perf_counter()
    for name, args in ops:
        try:
            fns[name](*args)
        except OSError:
            pass
    return time.perf_counter() - t0


def raw_syscalls_once(root: str, ops: list) -> float:
    """The same operations as plain os.* calls on the live tree (no Tree wrapper at all)."""
    j = os.path.join
    return replay({"mkdir": lambda p: os.mkdir(j(root, p)), "rmdir": lambda p: os.rmdir(j(root, p)),
                   "listdir": lambda p="": os.listdir(j(root, p)), "stat": lambda p: os.stat(j(root, p)),
                   "open": lambda p, f: os.open(j(root, p), f), "close": os.close, "read": os.read,
                   "pread": os.pread, "write": os.write, "pwrite": os.pwrite, "lseek": os.lseek}, ops)


def raw_once(config: str, ops: list) -> float:
    """The same operations straight into a fresh emulated kernel's entry points."""
    tree = EmulatedTree(config, kernel=boot(config))
    return replay({name: getattr(tree, name) for name in OPS}, ops)


def cli_once(config: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO / "conformance"))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "tsm_conformance.cli", "run", "--emulate", config,
                            "--junit", f"{d}/junit.xml"], capture_output=True, env=env, cwd=d)
        dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"run failed: {p.stdout.decode()[-500:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=7, help="repetitions (default 7)")
    ap.add_argument("--config", action="append", help="emulated provider (default: all five)")
    ap.add_argument("--root", help="measure the suite/raw ratio on this live tree instead (profile: --config)")
    a = ap.parse_args()
    if a.root:
        config = (a.config or ["tsm_test"])[0]
        suites, raws = [], []
        for _ in range(a.n):
            s, ops = suite_once(config, a.root)
            suites.append(s)
            raws.append(raw_syscalls_once(a.root, ops))
        ms, mr = statistics.median(suites), statistics.median(raws)
        print(f"live {a.root} ({config}): suite {ms * 1e3:.1f} ms, raw syscalls {mr * 1e3:.1f} ms, "
              f"ratio {ms / mr:.2f}, {len(ops)} ops (goal <= 1.5)")
        return
    configs = a.config or ["sev_guest", "sev_guest-svsm", "tdx_guest", "arm_cca_guest", "tsm_test"]
    print(f"{'config':16} {'cli wall s':>10} {'suite ms':>9} {'raw ms':>8} {'ratio':>6} {'ops':>5}")
    for config in configs:
        walls = [cli_once(config) for _ in range(a.n)]
        suites, raws = [], []
        for _ in range(a.n):
            s, ops = suite_once(config)
            suites.append(s)
            raws.append(raw_once(config, ops))
        ms, mr = statistics.median(suites), statistics.median(raws)
        print(f"{config:16} {statistics.median(walls):10.2f} {ms * 1e3:9.2f} {mr * 1e3:8.2f} {ms / mr:6.2f} "
              f"{len(ops):5}")
    print("goals: cli wall <= 5 s; suite/raw ratio <= 1.5")


if __name__ == "__main__":
    main()
