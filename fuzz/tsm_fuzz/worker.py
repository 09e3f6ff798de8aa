"""One target in one process: ``python -m tsm_fuzz.worker TARGET [options] -- [libFuzzer args]``.

``atheris.Fuzz()`` never returns, so the runner starts one of these per target.  Two modes:

* fuzz (default): our code (``tsm_conformance``, ``tsm_fuzz``) is imported under atheris'
  instrumentation, the target is set up once (``make(ctx)``), and its one-input function is wrapped:
  a ``Finding`` writes ``<artifacts>/<target>-<sha1[:8]>.json`` (rule, observed, input) and, when it
  carries a sequence, ``<target>-<sha1[:8]>.tsmseq``; then it is re-raised so libFuzzer stops and
  writes the crash input (``-artifact_prefix``).  About every 2 s a ``#tsmfz execs=N`` line goes to
  stderr for the runner's progress display.
* ``--minimize FILE``: no atheris; the crash input is shrunk (delta debugging over bytes, bounded by
  ``--max-time``) while the target still raises a Finding for the same rule, and the finding of the
  smallest input is written as above (``-min`` suffix).  Prints the finding's JSON path.

Exit codes: libFuzzer's (0 done, 77 a crash); 2 for a bad target or tree (one line on stderr).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from tsm_conformance.names import FUZZ, with_pid

from .api import Finding, TargetContext


def write_finding(artifacts: Path, target: str, f: Finding, data: bytes, suffix: str = "") -> Path:
    """The finding's JSON (and .tsmseq when it has a sequence); returns the JSON path."""
    from tsm_conformance.seq import format_tsmseq
    h = hashlib.sha1(data).hexdigest()
    stem = artifacts / f"{target}-{h[:8]}{suffix}"
    seq_path = None
    if f.sequence is not None:
        seq_path = stem.with_name(stem.name + ".tsmseq")
        seq_path.write_text(format_tsmseq(f.sequence))
    info = {"target": target, "rule": f.rule, "observed": f.observed, "input_sha1": h,
            "input_hex": data.hex() if len(data) <= 4096 else None, "tsmseq": str(seq_path) if seq_path else None}
    out = stem.with_name(stem.name + ".json")
    out.write_text(json.dumps(info, indent=1) + "\n")
    return out


def _context(args: argparse.Namespace) -> TargetContext:
    return TargetContext(emulate=args.emulate, root=args.root, any_filesystem=args.any_filesystem,
                         prefix=with_pid(FUZZ))


def _setup(name: str, ctx: TargetContext, instrument: bool):  # noqa: ANN202
    from . import targets
    if instrument:
        import atheris
        import importlib
        # What coverage guides: the target's own modules (its oracle, its decoder) and those it
        # names in INSTRUMENT (e.g. the emulator's kernel for the in-process tree, a parser).
        # Instrumenting everything we import costs an order of magnitude in exec/s.
        extra = _instrument_list(name, ctx)
        with atheris.instrument_imports(include=[targets.module_name(name), "tsm_fuzz.harness",
                                                 "tsm_fuzz.parsers", *extra]):
            mod = targets.load(name)
            for m in extra:
                importlib.import_module(m)
            why = targets.unavailable(mod)
            if why:
                raise SystemExit(f"tsm-fuzz worker: {name}: {why}")
            one = mod.make(ctx)
        return one
    mod = targets.load(name)
    why = targets.unavailable(mod)
    if why:
        raise SystemExit(f"tsm-fuzz worker: {name}: {why}")
    return mod.make(ctx)


def _instrument_list(name: str, ctx: TargetContext) -> list[str]:
    """Modules a target asks to have instrumented (``INSTRUMENT``; ``EMULATED_INSTRUMENT`` too
    when the tree is the in-process emulator), read from the source without importing it."""
    import ast
    from . import targets
    src = (targets.HERE / f"fuzz_{name}.py").read_text()
    out: list[str] = []
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            key = node.targets[0].id
            if key == "INSTRUMENT" or (key == "EMULATED_INSTRUMENT" and ctx.emulate):
                out += list(ast.literal_eval(node.value))
    return out


def fuzz(args: argparse.Namespace, libfuzzer: list[str]) -> int:
    import atheris
    artifacts = Path(args.artifacts)
    ctx = _context(args)
    one = _setup(args.target, ctx, instrument=not args.no_instrument)
    execs, next_stats = 0, time.monotonic() + 2

    # No stats thread: a second thread changes the emulator's behaviour (it widens race windows
    # when other threads exist) and costs exec/s; the count is printed from the input path.
    def wrapped(data: bytes) -> None:
        nonlocal execs, next_stats
        execs += 1
        if not execs & 255 and time.monotonic() >= next_stats:
            next_stats = time.monotonic() + 2
            print(f"#tsmfz execs={execs}", file=sys.stderr, flush=True)
        try:
            one(data)
        except Finding as f:
            write_finding(artifacts, args.target, f, data)
            raise
    atheris.Setup([sys.argv[0]] + libfuzzer, wrapped)
    atheris.Fuzz()
    return 0


def minimize(args: argparse.Namespace) -> int:
    """Shrink a crash input while the same rule still fails (ddmin over bytes, time-bounded)."""
    ctx = _context(args)
    one = _setup(args.target, ctx, instrument=False)
    data = Path(args.minimize).read_bytes()
    deadline = time.monotonic() + args.max_time

    def fails(d: bytes) -> Finding | None:
        try:
            one(d)
        except Finding as f:
            return f
        return None
    first = fails(data)
    if first is None:
        print(f"tsm-fuzz worker: {args.minimize} does not reproduce a finding", file=sys.stderr)
        return 1
    rule, best, best_f = first.rule, data, first
    n = 2
    while len(best) >= 1 and time.monotonic() < deadline:
        chunk = max(1, len(best) // n)
        shrunk = False
        for start in range(0, len(best), chunk):
            if time.monotonic() >= deadline:
                break
            cand = best[:start] + best[start + chunk:]
            f = fails(cand)
            if f is not None and f.rule == rule:
                best, best_f, shrunk = cand, f, True
                n = max(n - 1, 2)
                break
        if not shrunk:
            if chunk == 1:
                break
            n = min(n * 2, len(best))
    # one more pass: make bytes smaller (zero) where the finding survives, for readable sequences
    for i in range(len(best)):
        if time.monotonic() >= deadline:
            break
        if best[i]:
            cand = best[:i] + b"\0" + best[i + 1:]
            f = fails(cand)
            if f is not None and f.rule == rule:
                best, best_f = cand, f
    out = write_finding(Path(args.artifacts), args.target, best_f, best, suffix="-min")
    Path(str(out).removesuffix(".json") + ".input").write_bytes(best)
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    libfuzzer: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, libfuzzer = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="python -m tsm_fuzz.worker")
    ap.add_argument("target")
    ap.add_argument("--emulate", metavar="SPEC")
    ap.add_argument("--root", metavar="DIR")
    ap.add_argument("--any-filesystem", action="store_true")
    ap.add_argument("--artifacts", metavar="DIR", default=".")
    ap.add_argument("--no-instrument", action="store_true", help="no coverage instrumentation (FUSE/live roots)")
    ap.add_argument("--minimize", metavar="FILE")
    ap.add_argument("--max-time", type=float, default=10.0)
    args = ap.parse_args(argv)
    # tsm_conformance is not imported before the target is set up: modules imported earlier would
    # escape atheris' instrumentation.  SetupError (a bad spec or root) is matched by name for that.
    try:
        if args.minimize:
            return minimize(args)
        return fuzz(args, libfuzzer)
    except Exception as e:  # noqa: BLE001
        if isinstance(e, ValueError) or type(e).__name__ == "SetupError":
            print(f"tsm-fuzz worker: {args.target}: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
