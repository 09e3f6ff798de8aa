#!/usr/bin/env python3
"""Parse and parse+verify throughput per report format, on reports the emulator builds.

    python3 benchmarks/formats.py [-n REPEATS] [--reports N]

Prints per format: build ms, parse µs, parse+verify ms (medians of REPEATS timings of N reports
each) and reports/s.  The machine is shared: read medians, not single runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))

from tsm_conformance.emulator.reports import cca, snp, tdx  # noqa: E402
from tsm_conformance.formats import registry  # noqa: E402
from tsm_conformance.verify.base import anchors_from_pem  # noqa: E402
from tsm_conformance.verify.run import verify  # noqa: E402


def builders() -> dict[str, tuple[Callable[[int], bytes], bytes | None, bytes]]:
    """format -> (build(counter), auxblob or None, anchor PEM)."""
    return {
        "snp": (lambda i: snp.build_report(report_data=i.to_bytes(64, "little"), vmpl=0, counter=i),
                snp.cert_table(key="vcek"), snp.anchor_pem()),
        "tdx": (lambda i: tdx.build_quote(report_data=i.to_bytes(64, "little"), counter=i), None, tdx.anchor_pem()),
        "cca": (lambda i: cca.build_token(challenge=i.to_bytes(64, "little"), counter=i), None, cca.anchor_pem()),
    }


def timed(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="repeats (default 5)")
    ap.add_argument("--reports", type=int, default=200, help="reports per timing (default 200)")
    args = ap.parse_args()
    print(f"{'format':8} {'build ms':>9} {'parse µs':>9} {'parse/s':>9} {'verify ms':>10} {'verified/s':>11}")
    for fmt, (build, aux, anchor) in builders().items():
        anchors = anchors_from_pem([anchor])
        blobs = [build(i) for i in range(args.reports)]
        certs = registry.parse("snp-certs", aux) if aux else None
        b, p, v = [], [], []
        for r in range(args.n):
            i = iter(range(args.reports * (r + 1), args.reports * (r + 2)))
            # each lambda is timed in its own iteration: the defaults bind that iteration's values
            b.append(timed(lambda build=build, i=i: build(next(i)), max(args.reports // 10, 10)))
            it = iter(blobs * 2)
            p.append(timed(lambda fmt=fmt, it=it: registry.parse(fmt, next(it)), args.reports))
            it2 = iter(blobs * 2)
            v.append(timed(lambda fmt=fmt, it2=it2, anchors=anchors, certs=certs:
                           verify(fmt, registry.parse(fmt, next(it2)), anchors, certs), args.reports))
        mb, mp, mv = (statistics.median(x) for x in (b, p, v))
        print(f"{fmt:8} {mb * 1e3:9.2f} {mp * 1e6:9.1f} {1 / mp:9.0f} {mv * 1e3:10.2f} {1 / mv:11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
