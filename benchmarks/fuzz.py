#!/usr/bin/env python3
"""Fuzz throughput per target (goals, raw in-process: privlevel >= 20,000 exec/s; sequences >= 5,000
single-threaded, >= 1,500 threaded).

Two figures per target:

* ``raw``: the target's one-input function called in a plain loop over its seed corpus and
  seeded random mutations of it (no atheris): the cost of the harness plus the tree.
  ``sequences``' first row mutates its seeds (``corpora/sequences/``: long threaded race
  schedules, the slowest inputs it has); its next rows are seeded random inputs of
  1-47 bytes (as its tests use) by kind: single-threaded schedules (~34 operations on average) and
  threaded ones (several ``T<n>:`` threads, ~69 operations), which cost far more;
  ``per cpu-s`` is the same count over the process's CPU time instead of wall time (on a shared,
  loaded machine it moves less from run to run; the threads' CPU is counted, their waits not);
* ``atheris``: ``python -m tsm_fuzz.worker`` under libFuzzer for ``--seconds`` with the usual
  instrumentation, seeds, dictionary and -max_len; libFuzzer's own exec/s from its final line.

``--emulate SPEC`` (default sev_guest) picks the in-process tree; ``--root MOUNT`` measures over a
FUSE mount (``tsm-conformance emulate SPEC --mount DIR``, then ``--root DIR/tsm/report``) or a live
tree instead (the parser targets do not use a tree and are measured once).

    python3 benchmarks/fuzz.py [--targets a,b] [--seconds 15] [--no-atheris] [--emulate SPEC | --root DIR]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "conformance"), str(REPO / "fuzz")]

from tsm_conformance.names import BENCH_FUZZ  # noqa: E402
from tsm_fuzz import targets  # noqa: E402
from tsm_fuzz.api import Finding, TargetContext  # noqa: E402

_DONE = re.compile(r"^#(\d+)\s+DONE\b.*?exec/s: (\d+)")


def inputs(name: str, n: int = 2000) -> list[bytes]:
    seeds = [p.read_bytes() for p in sorted((REPO / "corpora" / name).glob("*"))] or [b""]
    rnd = random.Random(7)
    out = []
    for _ in range(n):
        d = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(0, 3)):
            if d and rnd.random() < 0.7:
                d[rnd.randrange(len(d))] = rnd.randrange(256)
            else:
                d.insert(rnd.randrange(len(d) + 1), rnd.randrange(256))
        out.append(bytes(d))
    return out


def by_kind(name: str, one: object, n: int = 1000) -> dict[str, list[bytes]]:
    """Inputs per kind for targets whose inputs differ in cost by kind (else empty): ``sequences``
    decodes each input to see whether its schedule runs one thread or several."""
    if name != "sequences":
        return {}
    from tsm_fuzz.targets.fuzz_sequences import decode
    shape = one.__self__.shape  # type: ignore[attr-defined]  # make() returns Runner.one
    rnd = random.Random(7)
    out: dict[str, list[bytes]] = {"single-threaded": [], "threaded": []}
    while min(map(len, out.values())) < n:
        d = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 48)))
        kind = "threaded" if len({m[1] for m in decode(d, shape)[1]}) > 1 else "single-threaded"
        if len(out[kind]) < n:
            out[kind].append(d)
    return out


def context(name: str, emulate: str | None, root: str | None) -> TargetContext:
    return TargetContext(emulate=emulate, root=root, prefix=f"{BENCH_FUZZ}{name[:4]}-")


def make(name: str, emulate: str | None, root: str | None):  # noqa: ANN201
    return targets.load(name).make(context(name, emulate, root))


def raw(one, data: list[bytes], seconds: float) -> tuple[float, float]:  # noqa: ANN001
    """Inputs per second of wall time and per second of the process's CPU time."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        for d in data:
            try:
                one(d)
            except Finding:
                pass
            n += 1
            if not n & 63 and time.perf_counter() - t0 >= seconds:
                break
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def under_atheris(name: str, emulate: str | None, root: str | None, seconds: float) -> float | None:
    work = Path(tempfile.mkdtemp(prefix="tsm-bench-"))
    try:
        corpus = work / "corpus"
        src = REPO / "corpora" / name
        shutil.copytree(src, corpus) if src.is_dir() else corpus.mkdir()
        cmd = [sys.executable, "-m", "tsm_fuzz.worker", name, "--artifacts", str(work)]
        cmd += ["--emulate", emulate] if emulate else ["--root", str(root)]
        cmd += ["--", f"-max_total_time={int(seconds)}", f"-artifact_prefix={work}/"]
        mod = targets.load(name)
        if getattr(mod, "MAX_LEN", None):
            cmd.append(f"-max_len={mod.MAX_LEN}")
        d = REPO / "corpora" / f"{name}.dict"
        if d.is_file():
            cmd.append(f"-dict={d}")
        res = subprocess.run(cmd + [str(corpus)], capture_output=True, text=True, timeout=seconds + 120)
        for line in res.stderr.splitlines():
            m = _DONE.match(line)
            if m:
                return float(m[2])
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", help="comma-separated (default: all)")
    ap.add_argument("--seconds", type=float, default=15.0, help="per target and mode")
    ap.add_argument("--no-atheris", action="store_true", help="the raw figures only")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--emulate", metavar="SPEC")
    g.add_argument("--root", metavar="DIR", help="a FUSE mount's or live report directory")
    args = ap.parse_args()
    emulate = args.emulate or (None if args.root else "sev_guest")
    names = args.targets.split(",") if args.targets else targets.names()
    where = f"emulated {emulate}" if emulate else f"root {args.root}"
    print(f"fuzz throughput on {where}, {args.seconds:g} s per figure")
    print(f"{'target':18} {'raw exec/s':>11} {'per cpu-s':>10} {'atheris exec/s':>15}")
    for name in names:
        try:
            mod = targets.load(name)
        except ValueError as e:
            print(f"fuzz.py: {e}", file=sys.stderr)
            return 2
        why = targets.unavailable(mod, context(name, emulate, args.root))  # (measurements: registers needed)
        if why:
            print(f"{name:18} {'-':>11} {'-':>10} {'-':>15}  ({why})")
            continue
        one = make(name, emulate, args.root)
        r, c = raw(one, inputs(name), min(args.seconds, 5.0))
        a = None if args.no_atheris else under_atheris(name, emulate, args.root, args.seconds)
        print(f"{name:18} {r:>11.0f} {c:>10.0f} {('-' if a is None else f'{a:.0f}'):>15}", flush=True)
        for kind, data in by_kind(name, one).items():
            r, c = raw(one, data, min(args.seconds, 5.0))
            print(f"  {kind:16} {r:>11.0f} {c:>10.0f} {'-':>15}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
