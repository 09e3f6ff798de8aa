#!/usr/bin/env python3
"""Kernels built from source (`vm --kernel-tree`): build times and in-guest fuzzing figures.

* ``build``: a cold build of the guest kernel (an empty build directory: configure, bzImage,
  modules, modules_install), then an incremental one with nothing changed, then one after touching
  the configfs-tsm core's source (what a developer iterating on it waits for); per --debug variant.
* ``fuzz``: ``vm --fuzz TARGETS --max-time S`` on that kernel with tsm_test: in-guest exec/s per
  target (libFuzzer's final figure in each target's log) and the known-bug count.
* ``race``: N runs of the sequences target alone, each timed to its first known size-then-fill
  race (the guest log's first ``known`` line); the median is the figure.

    python3 benchmarks/vm_source.py --tree DIR [--debug kasan] [build] [fuzz] [race -n 5]

Needs root, QEMU and the build packages (scripts/vm-tier.sh installs them).  The cold build uses a
temporary cache unless --cache is given.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "conformance")]

from tsm_conformance.vm.source import build_dir, check_tree, debug_variants, from_source  # noqa: E402

T = [sys.executable, "-m", "tsm_conformance.cli"]


def build(tree: Path, debug: list[str], cache: Path) -> None:
    quiet = lambda m: None  # noqa: E731
    version = check_tree(tree)
    out, _ = build_dir(tree, version, debug, cache)
    shutil.rmtree(out, ignore_errors=True)
    for label in ("cold", "incremental, nothing changed", "incremental, configfs-tsm core touched"):
        if label.endswith("touched"):
            core = next(p for p in (tree / "drivers/virt/coco/guest/report.c", tree / "drivers/virt/coco/tsm.c")
                        if p.exists())
            # the tree is only read by vm; here the benchmark bumps one source's mtime on purpose
            core.touch()
        t0 = time.monotonic()
        from_source(tree, cache, debug, quiet)
        print(f"build {version} {'+'.join(['base', *debug])}: {label}: {time.monotonic() - t0:.0f} s", flush=True)


def vm(tree: Path, debug: list[str], cache: Path, *extra: str) -> tuple[str, float]:
    cmd = [*T, "vm", "--kernel-tree", str(tree), "--cache", str(cache), *extra]
    if debug:
        cmd += ["--debug", ",".join(debug)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO / "conformance")
    return p.stdout + p.stderr, time.monotonic() - t0


def fuzz(tree: Path, debug: list[str], cache: Path, targets: str, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        out, secs = vm(tree, debug, cache, "--fuzz", targets, "--max-time", str(seconds), "--fuzz-out", d,
                       "--junit", f"{d}/j.xml")
        for log in sorted(Path(d).glob("run-*/fuzz.log")):
            text = log.read_text(errors="replace")
            for line in text.splitlines():
                if "PASS:" in line or "FAIL" in line or "known" in line:
                    print(f"  {line.strip()}")
    print(f"fuzz {targets} --max-time {seconds:g} ({'+'.join(['base', *debug])}): whole VM run {secs:.0f} s")
    for line in out.splitlines():
        if "fuzz exit" in line or "findings" in line:
            print(f"  {line.strip()}")


def race(tree: Path, debug: list[str], cache: Path, n: int, seconds: float) -> None:
    found = []
    for i in range(n):
        d = tempfile.mkdtemp(prefix="tsm-race-")
        out, _ = vm(tree, debug, cache, "--fuzz", "sequences", "--max-time", str(seconds), "--fuzz-out", d,
                    "--junit", f"{d}/j.xml")
        m = re.search(r"known: .*?first after ([\d.]+) s", out)
        found.append(float(m[1]) if m else float("inf"))
        print(f"race run {i + 1}: {found[-1]:.1f} s to the first size-then-fill race", flush=True)
    print(f"race: median {statistics.median(found):.1f} s over {n} runs ({'+'.join(['base', *debug])})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="*", default=["build"], choices=["build", "fuzz", "race"])
    ap.add_argument("--tree", required=True, type=Path)
    ap.add_argument("--debug", default="")
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--targets", default="sequences,inblob,privlevel")
    ap.add_argument("--max-time", type=float, default=120.0)
    ap.add_argument("-n", type=int, default=5)
    a = ap.parse_args()
    debug = debug_variants(a.debug)
    cache = a.cache or Path(tempfile.mkdtemp(prefix="tsm-bench-cache-"))
    if "build" in a.what:
        build(a.tree, debug, cache)
    if "fuzz" in a.what:
        fuzz(a.tree, debug, cache, a.targets, a.max_time)
    if "race" in a.what:
        race(a.tree, debug, cache, a.n, a.max_time)


if __name__ == "__main__":
    main()
