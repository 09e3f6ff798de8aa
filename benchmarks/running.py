#!/usr/bin/env python3
"""Print the figures of running it for real (issue 6): what interrupts, hangs, the watchdog and
cleanup cost, and how many reports a run asks a provider for.

1. Signal to exit: SIGINT / SIGTERM sent at a random point of `run --emulate sev_guest`, time
   until the process has exited with everything removed (median, and the worst run).
2. Hung provider: wall time of `run --emulate sev_guest+report-hangs --op-timeout T` against T
   (the run must end within its deadline plus start-up and cleanup).
3. Watchdog cost: the in-process catalogue (no provider/concurrency/host/model checks) with the
   per-operation deadline armed against none; median of N each, and the ratio.
4. `clean`: time to remove N leftover items from a FUSE-mounted emulator (skipped without FUSE).
5. Report reads per full run for each emulated provider (what `--budget reports=N` counts).
6. A hang inside a concurrency check (a worker holds the lock the item's rmdir needs): wall time
   of the run in-process and over FUSE with `--op-timeout 1`.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "conformance")]

from tsm_conformance.checks.runner import Session  # noqa: E402
from tsm_conformance.names import BENCH_RUN, RUN, with_pid  # noqa: E402
from tsm_conformance.profile.load import load_profile  # noqa: E402
from tsm_conformance.target.emulated import EmulatedTree  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=str(REPO / "conformance"))
CLI = [sys.executable, "-m", "tsm_conformance.cli"]


def signal_to_exit(n: int, seed: int) -> None:
    rng = random.Random(seed)
    took, landed = [], 0
    for i in range(n):
        sig = (signal.SIGINT, signal.SIGTERM)[i % 2]
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.Popen(CLI + ["run", "--emulate", "sev_guest", "-q"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, env=ENV, cwd=d)
            time.sleep(rng.uniform(0.8, 2.5))
            t0 = time.perf_counter()
            p.send_signal(sig)
            err = p.communicate(timeout=120)[1]
            took.append(time.perf_counter() - t0)
        if "0 report items left" in err:
            landed += 1
        elif p.returncode not in (0, 130) or "could not be removed" in err:
            raise SystemExit(f"run {i}: exit {p.returncode}: {err[-400:]}")
    print(f"signal to exit: median {statistics.median(took) * 1e3:.0f} ms, worst {max(took) * 1e3:.0f} ms "
          f"({n} runs, {landed} signalled while checks ran, 0 items left in every one)")


def hung(timeouts: list[float]) -> None:
    for t in timeouts:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            p = subprocess.run(CLI + ["run", "--emulate", "sev_guest+report-hangs", "--op-timeout", str(t), "-q"],
                               capture_output=True, text=True, env=ENV, cwd=d, timeout=600)
            wall = time.perf_counter() - t0
        ok = p.returncode == 1 and "hung: read(fd" in p.stdout
        print(f"hung provider, --op-timeout {t:g} s: run ended in {wall:.2f} s (exit {p.returncode}, "
              f"{'names the hung read' if ok else 'DID NOT report the hang'})")


def watchdog_cost(n: int) -> None:
    from tsm_conformance.checks.base import all_checks
    checks = [c for c in all_checks() if not c.id.startswith(("provider.", "concurrency.", "host.", "model."))]
    profile = load_profile("sev_guest")
    runs: dict[str, list[float]] = {"armed": [], "none": []}
    for _ in range(n):
        for label, deadline in (("armed", 90.0), ("none", None)):
            s = Session(EmulatedTree("sev_guest"), profile, prefix=BENCH_RUN, op_timeout=deadline)
            t0 = time.perf_counter()
            s.run(checks)
            runs[label].append(time.perf_counter() - t0)
    a, b = statistics.median(runs["armed"]), statistics.median(runs["none"])
    print(f"watchdog: catalogue {a * 1e3:.1f} ms with deadlines armed, {b * 1e3:.1f} ms without "
          f"(ratio {a / b:.2f}, {len(checks)} checks, median of {n})")


@contextmanager
def fuse_mount(spec: str) -> Iterator[Path | None]:
    """`tsm-conformance emulate SPEC --mount` in a temporary directory; None without FUSE."""
    from tsm_conformance.frontend.fuse import unavailable_reason
    if unavailable_reason():
        yield None
        return
    with tempfile.TemporaryDirectory() as d:
        mnt = Path(d) / "mnt"
        mnt.mkdir()
        daemon = subprocess.Popen(CLI + ["emulate", spec, "--mount", str(mnt)], env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        report = mnt / "tsm" / "report"
        try:
            end = time.monotonic() + 30
            while not report.is_dir():
                if time.monotonic() > end or daemon.poll() is not None:
                    raise SystemExit("the FUSE emulator did not come up")
                time.sleep(0.05)
            yield report
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def clean_time(items: int) -> None:
    with fuse_mount("sev_guest") as report:
        if report is None:
            print("clean: skipped (FUSE cannot mount here)")
            return
        for i in range(items):
            os.mkdir(report / f"{with_pid(RUN, 999999)}{i}")  # a dead pid: clean may remove them
        t0 = time.perf_counter()
        p = subprocess.run(CLI + ["clean", "--root", str(report)], capture_output=True, text=True, env=ENV)
        wall = time.perf_counter() - t0
        left = [x for x in os.listdir(report) if x.startswith(RUN)]
        print(f"clean: {items} leftovers over FUSE removed in {wall:.2f} s, process start-up included "
              f"(exit {p.returncode}, {len(left)} left)")


def concurrency_hang() -> None:
    """A worker hung in a concurrency check holds the lock its item's rmdir needs: the run still
    ends (join deadline, the cleanup's rmdir deadline, the bounded sweep), in-process and over FUSE."""
    def one(where: str, target: list[str]) -> None:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            p = subprocess.run(CLI + ["run", *target, "--op-timeout", "1", "-q", "--", "--tsm-check",
                                      "concurrency.*"], capture_output=True, text=True, env=ENV, cwd=d, timeout=600)
            wall = time.perf_counter() - t0
        ok = p.returncode == 1 and "hung: join(" in p.stdout
        left = "the blocked item reported as left" if "could not be removed" in p.stderr else "no item left"
        print(f"hung concurrency check ({where}), --op-timeout 1 s: run ended in {wall:.1f} s (exit {p.returncode}, "
              f"{'names the join' if ok else 'DID NOT report the hang'}, {left})")
    one("in-process", ["--emulate", "sev_guest+report-hangs"])
    with fuse_mount("sev_guest+report-hangs") as report:
        if report is None:
            print("hung concurrency check (FUSE): skipped (FUSE cannot mount here)")
            return
        one("FUSE", ["--root", str(report)])


def report_reads() -> None:
    from tsm_conformance.checks.base import all_checks
    parts = []
    for config in ("sev_guest", "sev_guest-svsm", "tdx_guest", "arm_cca_guest", "tsm_test"):
        s = Session(EmulatedTree(config), load_profile(config), prefix=BENCH_RUN)
        s.run([c for c in all_checks() if not c.id.startswith("model.")])
        parts.append(f"{config} {s.reports_used}")
    print("report reads per full run (model.* left out: it varies with its seed): " + ", ".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=6, help="signalled runs and watchdog repetitions (default 6)")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--items", type=int, default=200, help="leftovers for the clean figure (default 200)")
    a = ap.parse_args()
    report_reads()
    watchdog_cost(a.n)
    hung([1.0, 3.0])
    concurrency_hang()
    signal_to_exit(a.n, a.seed)
    clean_time(a.items)


if __name__ == "__main__":
    main()
