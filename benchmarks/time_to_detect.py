#!/usr/bin/env python3
"""Median time for a fuzz target to detect each behavioural emulator quirk (goal: <= 60 s).

Each quirk is mapped to the target expected to find it and a provider it applies to; the target's
worker (``python -m tsm_fuzz.worker``, atheris with the usual instrumentation, seeds and
dictionary) runs against ``--emulate PROVIDER+QUIRK`` with a fresh copy of the seed corpus and
libFuzzer seed i for run i, and the wall time from process start to the finding (interpreter and
set-up included) is recorded.  A run that ends without a finding counts as "not found" (its time
is the budget).  Quirks no fuzz target is meant to find (static facts such as modes, names and
visibility, provider-lifecycle faults) are listed with the reason.

    python3 benchmarks/time_to_detect.py [--runs 5] [--max-time 60] [--jobs 2] [--quirks a,b] [--no-seeds]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "conformance"), str(REPO / "fuzz")]

from tsm_conformance.emulator.quirks import QUIRKS  # noqa: E402
from tsm_fuzz import targets  # noqa: E402

INBLOB = ("inblob-truncate", "efbig-close-no-commit", "efbig-discards-buffer", "zero-write-accepted",
          "inblob-commit-on-write", "inblob-last-write-wins", "pwrite-ignores-offset", "nonce-ignored",
          "short-inblob-accepted", "read-before-inblob-enodata", "read-bumps-generation", "generation-starts-at-1",
          "inblob-open-bumps", "stale-outblob", "no-cache", "rdwr-allowed", "wo-readable", "bin-seekable")
PRIVLEVEL = ("privlevel-no-generation", "privlevel-reject-bumps", "privlevel-max-unchecked",
             "privlevel-floor-unchecked", "kstrtouint-lenient", "privlevel-decimal-only", "privlevel-overflow-wraps",
             "text-write-unsplit", "text-multiwrite-once", "guid-reject-no-bump")
SEQUENCES = ("rmdir-fd-alive", "mkdir-duplicate-ok", "rmdir-name-leak", "rmdir-keeps-state", "rmdir-silent-fail",
             "shared-generation", "shared-inblob", "unlocked-generation", "mkdir-race", "rmdir-read-eio",
             "nested-mkdir-allowed", "ro-writable", "no-snapshot", "pread-ignores-offset", "auxblob-regenerates")
MEASUREMENTS = ("mr-overwrite", "mr-size-unchecked", "mr-readonly-writable", "mr-refresh-always", "mr-stale-report",
                "mr-no-suffix")
TARGET_OF = {**{q: "inblob" for q in INBLOB}, **{q: "privlevel" for q in PRIVLEVEL},
             **{q: "sequences" for q in SEQUENCES}, **{q: "measurements" for q in MEASUREMENTS}}
# The provider each quirk is fuzzed on: tsm_test's reports are unsigned and take any inblob
# length (cheapest), otherwise the first provider the quirk applies to.
PREFERRED = ("tsm_test", "sev_guest", "sev_guest-svsm", "arm_cca_guest", "tdx_guest")
NOT_FUZZED = "a static fact or a provider/host fault: the conformance checks catch it, no fuzz input varies it"


def provider_for(quirk: str) -> str:
    return next(p for p in PREFERRED if p in QUIRKS[quirk].applies_to)


def one_run(target: str, spec: str, seed: int, max_time: float, seeds: bool) -> float | None:
    """Seconds to the finding, or None."""
    work = Path(tempfile.mkdtemp(prefix="tsm-ttd-"))
    try:
        corpus, art = work / "corpus", work / "art"
        src = REPO / "corpora" / target
        if seeds and src.is_dir():
            shutil.copytree(src, corpus)
        else:
            corpus.mkdir()
        art.mkdir()
        cmd = [sys.executable, "-m", "tsm_fuzz.worker", target, "--emulate", spec, "--artifacts", str(art), "--",
               f"-max_total_time={int(max_time)}", f"-seed={seed}", f"-artifact_prefix={art}/{target}-"]
        d = REPO / "corpora" / f"{target}.dict"
        if d.is_file():
            cmd.append(f"-dict={d}")
        max_len = getattr(targets.load(target), "MAX_LEN", None)
        if max_len:
            cmd.append(f"-max_len={max_len}")
        cmd.append(str(corpus))
        t0 = time.monotonic()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=max_time + 120)
        took = time.monotonic() - t0
        found = [json.loads(p.read_text()) for p in art.glob("*.json")]
        return took if found else None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-time", type=float, default=60.0, help="budget per run (s)")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    ap.add_argument("--quirks", help="comma-separated subset")
    ap.add_argument("--no-seeds", action="store_true", help="start from an empty corpus")
    args = ap.parse_args()
    have = set(targets.names())
    chosen = args.quirks.split(",") if args.quirks else list(QUIRKS)
    bad = [q for q in chosen if q not in QUIRKS]
    if bad:
        print(f"unknown quirk(s): {', '.join(bad)}", file=sys.stderr)
        return 2
    plan = [(q, TARGET_OF[q], f"{provider_for(q)}+{q}") for q in chosen if TARGET_OF.get(q) in have]
    jobs = [(q, t, s, i + 1) for q, t, s in plan for i in range(args.runs)]
    results: dict[str, list[float | None]] = {q: [] for q, _, _ in plan}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(one_run, t, s, seed, args.max_time, not args.no_seeds): q for q, t, s, seed in jobs}
        for f, q in futs.items():
            results[q].append(f.result())
    print(f"time to detect, {args.runs} runs per quirk, budget {args.max_time:g} s, "
          f"{'empty corpus' if args.no_seeds else 'seed corpus'} (process start to finding)")
    print(f"{'quirk':28} {'target':10} {'spec':38} {'median s':>9} {'found':>6}  runs (s)")
    for q, t, s in plan:
        rs = results[q]
        found = [r for r in rs if r is not None]
        times = [r if r is not None else float("inf") for r in rs]
        med = statistics.median(times)
        shown = " ".join("-" if r is None else f"{r:.1f}" for r in rs)
        print(f"{q:28} {t:10} {s:38} {('>' + format(args.max_time, 'g')) if med == float('inf') else f'{med:.1f}':>9} "
              f"{len(found)}/{len(rs):<4}  {shown}")
    for q in chosen:
        if TARGET_OF.get(q) not in have:
            why = f"target {TARGET_OF[q]} not present" if q in TARGET_OF else NOT_FUZZED
            print(f"{q:28} {'-':10} {'':38} {'-':>9} {'':6}  {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
