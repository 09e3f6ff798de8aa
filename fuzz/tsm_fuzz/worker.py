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

With ``--kernel-log PATH`` (/dev/kmsg, or a file or FIFO standing in for it) and/or
``--kernel-taint PATH`` (/proc/sys/kernel/tainted), the kernel's log and taint word are watched
(``KernelWatch``): after every input, one non-blocking read of the log and one of the taint word; a
report (``tsm_conformance.kernlog.classify``: KASAN, KCSAN, lockdep, UBSAN, BUG, WARN, oops, hung
task ...) or a new taint bit is a Finding (``kernel.kasan``, ``kernel.lockdep``, ``kernel.warn``,
``kernel.taint`` ...) attributed to that input, with the target's ``last_sequence()`` and the log
excerpt, written as ``<target>-<sha1[:8]>.kernel.log``.  A target's ``KNOWN`` counts (known bugs
matched, not raised) go to stderr as ``#tsmfz known={json}`` with the progress lines and at exit.

Exit codes: libFuzzer's (0 done, 77 a crash); 2 for a bad target or tree (one line on stderr).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tsm_conformance.names import FUZZ, with_pid

from .api import Finding, OneInput, TargetContext, sequence_hook

CONTEXT_LINES = 50  # kernel log lines kept from before a report, for its excerpt
EXCERPT_LINES = 200  # bounds of a finding's .kernel.log
EXCERPT_BYTES = 64 * 1024
SETTLE = 1.0  # seconds the rest of a report (its stack trace, the records after) may take to arrive
QUIET = 0.2  # ... and the log is taken as done with it after this long without a new line
ATTRIBUTION = ("kernel reports are attributed to the input during which they appeared in the kernel log "
               "(read after every input); an asynchronous one (hung task, lockup, a delayed KCSAN report) "
               "may have been caused by an earlier input")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text: str, n: int = 300) -> str:
    """Fit for a .tsmseq header value: no control characters, bounded."""
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= n else text[:n - 3] + "..."


class KernelWatch:
    """The kernel log and taint word, read after every input; a report is a Finding.

    The log is opened at its end (``kernlog.LogTail``); ``check()`` costs one non-blocking read of
    it and one pread of the taint word.  A line ``kernlog.classify`` knows (the first one) makes a
    Finding ``kernel.<kind>``; else a taint bit newly set (other than a module load's) makes
    ``kernel.taint``.  The Finding carries the target's Sequence of the input (or of the oracle's
    own finding, when the input raised one too) and the excerpt: up to ``CONTEXT_LINES`` lines
    before, and what arrives within ``SETTLE`` seconds after, at most ``EXCERPT_LINES`` lines and
    ``EXCERPT_BYTES``."""

    def __init__(self, target: str, ctx: TargetContext, log: str | None, taint: str | None) -> None:
        from tsm_conformance import kernlog
        self.kernlog = kernlog
        self.target, self.ctx = target, ctx
        self.log_path, self.taint_path = log, taint
        self.tail = kernlog.LogTail(log) if log else None
        self.before: deque[str] = deque(maxlen=CONTEXT_LINES)
        self._taint_fd: int | None = None
        self._taint = b""
        self.problems: list[str] = []

    def start(self) -> None:
        if self.tail is not None and not self.tail.open():
            self.problems.append(f"kernel log not watched: {self.tail.error}")
            self.tail = None
        if self.taint_path:
            try:
                self._taint_fd = os.open(self.taint_path, os.O_RDONLY | os.O_CLOEXEC)
                self._taint = self.kernlog.read_word(self._taint_fd)
            except OSError as e:
                self.problems.append(f"taint not watched: {self.taint_path}: {os.strerror(e.errno or 0)}")
                self._taint_fd = None

    @property
    def active(self) -> bool:
        return self.tail is not None or self._taint_fd is not None

    def _new_taint(self) -> tuple[int, int] | None:
        """(old, new) when a bit other than a module load's was set since the last call."""
        if self._taint_fd is None:
            return None
        try:
            word = self.kernlog.read_word(self._taint_fd)
        except OSError:
            return None
        if word == self._taint:
            return None
        old_text, self._taint = self._taint, word
        try:
            old, new = int(old_text or b"0"), int(word or b"0")
        except ValueError:
            return None
        return (old, new) if new & ~old & ~self.kernlog.TAINT_MODULE_LOAD else None

    def check(self, sequence: Callable[[], Any] | None, prior: Finding | None = None) -> Finding | None:
        """After an input: None, or the kernel finding it is charged with."""
        lines = self.tail.read_new() if self.tail is not None else []
        taint = self._new_taint()
        if not lines and taint is None:
            return None
        classify = self.kernlog.classify
        hit = next((i for i, line in enumerate(lines) if classify(line)), None)
        if hit is None and taint is None:
            self.before.extend(lines)
            return None
        if hit is not None:
            rule = classify(lines[hit]) or "kernel.report"
            observed = f"kernel log: {_one_line(lines[hit])}"
        else:
            rule, observed = "kernel.taint", ""
        if taint is not None:
            t = self.kernlog.taint_text
            observed = "; ".join(x for x in (observed, f"taint {t(taint[0])} -> {t(taint[1])}") if x)
        text = self._excerpt(lines, hit, rule)
        seq = prior.sequence if prior is not None and prior.sequence is not None else None
        if seq is None and sequence is not None:
            seq = sequence()
        if seq is not None:
            hdr = seq.header
            hdr.setdefault("check", f"fuzz.{self.target}")
            if prior is not None:
                hdr["also"] = _one_line(f"{prior.rule}: {prior.observed}")
            hdr["rule"], hdr["observed"] = rule, _one_line(observed)
            if hit is not None:  # the report line alone: replay --vm looks for it again
                hdr["kernel-report"] = _one_line(lines[hit])
            hdr["note"] = _one_line(ATTRIBUTION, 400)
            if self.ctx.root:
                hdr.setdefault("kernel", os.uname().release)
        note = ATTRIBUTION
        if prior is not None:
            note += f"; the oracle also found {prior.rule}: {prior.observed}"
        if seq is None:
            note += "; the target gives no replayable sequence (no last_sequence()): the crash input is the evidence"
        return Finding(rule, observed, seq, kernel_log=text, note=note)

    def _excerpt(self, lines: list[str], hit: int | None, rule: str) -> str:
        """The lines around the first report line, the rest of the report read as it arrives."""
        got = list(self.before) + lines
        at = len(self.before) + hit if hit is not None else len(got)
        if self.tail is not None:
            end = time.monotonic() + SETTLE
            quiet = time.monotonic() + QUIET
            while len(got) < at + EXCERPT_LINES and time.monotonic() < min(end, quiet):
                time.sleep(0.02)
                more = self.tail.read_new()
                if more:
                    got += more
                    quiet = time.monotonic() + QUIET
        start = max(0, at - CONTEXT_LINES)
        body = got[start:start + EXCERPT_LINES]
        keep = at - start  # where the report line is in body
        size = sum(len(x.encode()) + 1 for x in body)
        cut = False
        while size > EXCERPT_BYTES - 2048 and len(body) > 1:  # 2 KiB for the comments
            cut = True
            if len(body) - 1 > keep:  # the end of the report first, then what came before it
                size -= len(body.pop().encode()) + 1
            else:
                size -= len(body.pop(0).encode()) + 1
                keep -= 1
        head = [f"# kernel log excerpt, fuzz target {self.target}: {rule}", f"# {ATTRIBUTION}"]
        if self.tail is not None and self.tail.lost:
            head.append(f"# {self.tail.lost} kernel log record(s) were overwritten before they were read")
        if self.tail is None:
            head.append("# the kernel log is not watched (only the taint word)")
        if cut:
            head.append(f"# cut to {EXCERPT_BYTES // 1024} KiB")
        if hit is not None:
            head.append(f"# the first report line is line {len(head) + 2 + keep} of this file")
        else:
            head.append("# no report line: the taint word changed")
        out = "\n".join([_one_line(x, 1000) for x in head] + body) + "\n"
        self.before.clear()
        return out


def guarded(one: OneInput, watch: KernelWatch | None) -> OneInput:
    """``one`` with the kernel watched after each input (``one`` itself when nothing is watched).
    A kernel report wins over the oracle's finding of the same input (the oracle's is noted) and
    over a harness error (a kernel bug can make a syscall fail in ways no rule foresees)."""
    if watch is None or not watch.active:
        return one
    hook = sequence_hook(one)
    check = watch.check

    def run(data: bytes) -> None:
        try:
            one(data)
        except Finding as f:
            k = check(hook, f)
            if k is not None:
                raise k from None
            raise
        except Exception as e:
            k = check(hook)
            if k is not None:
                raise k from e
            raise
        k = check(hook)
        if k is not None:
            raise k
    return run


def write_finding(artifacts: Path, target: str, f: Finding, data: bytes, suffix: str = "") -> Path:
    """The finding's JSON (and .tsmseq when it has a sequence); returns the JSON path."""
    from tsm_conformance.seq import format_tsmseq
    h = hashlib.sha1(data).hexdigest()
    stem = artifacts / f"{target}-{h[:8]}{suffix}"
    seq_path = log_path = None
    if f.sequence is not None:
        seq_path = stem.with_name(stem.name + ".tsmseq")
        seq_path.write_text(format_tsmseq(f.sequence))
    if f.kernel_log is not None:
        log_path = stem.with_name(stem.name + ".kernel.log")
        log_path.write_text(f.kernel_log)
    info = {"target": target, "rule": f.rule, "observed": f.observed, "input_sha1": h,
            "input_hex": data.hex() if len(data) <= 4096 else None, "tsmseq": str(seq_path) if seq_path else None,
            "kernel_log": str(log_path) if log_path else None, "note": f.note or None}
    out = stem.with_name(stem.name + ".json")
    out.write_text(json.dumps(info, indent=1) + "\n")
    return out


def _context(args: argparse.Namespace) -> TargetContext:
    return TargetContext(emulate=args.emulate, root=args.root, any_filesystem=args.any_filesystem,
                         prefix=with_pid(FUZZ), options={"profile": args.profile} if args.profile else {})


def _watch(args: argparse.Namespace, ctx: TargetContext) -> KernelWatch | None:
    """The kernel watch the options ask for, started (positioned at the log's end) and reported."""
    log = None if args.kernel_log in (None, "none") else args.kernel_log
    taint = None if args.kernel_taint in (None, "none") else args.kernel_taint
    if not log and not taint:
        return None
    w = KernelWatch(args.target, ctx, log, taint)
    w.start()
    for p in w.problems:
        print(f"tsm-fuzz worker: {args.target}: {p}", file=sys.stderr, flush=True)
    return w


def _known_reporter(mod: ModuleType) -> Callable[[], None]:
    """Prints the target's KNOWN counts (``#tsmfz known={json}``) when they changed since the last
    call.  Also called from the C library's exit (libFuzzer ends the process with exit(), which
    runs no Python atexit handler), so the last counts reach the runner."""
    known = getattr(mod, "KNOWN", None)
    total = [0]  # matches already reported: KNOWN only grows

    def report() -> None:
        if not known or sum(known.values()) == total[0]:  # cheap when nothing changed (every input)
            return
        total[0] = sum(known.values())
        now = {str(k): int(v) for k, v in dict(known).items()}
        os.write(2, f"#tsmfz known={json.dumps(now, sort_keys=True)}\n".encode())
    if known is not None:
        _at_c_exit(report)
    return report


_EXIT_HOOKS: list[Any] = []  # the ctypes callbacks must outlive the registration


def _at_c_exit(fn: Callable[[], None]) -> None:
    """Run ``fn`` from the C library's exit() (glibc's on_exit); nothing where there is none."""
    import ctypes
    try:
        on_exit = ctypes.CDLL(None).on_exit
    except (OSError, AttributeError):
        return
    proto = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)

    def call(status: int, arg: object) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - the process is ending; nothing to report it to
            pass
    cb = proto(call)
    _EXIT_HOOKS.append(cb)
    on_exit(cb, None)


def _setup(name: str, ctx: TargetContext, instrument: bool) -> tuple[OneInput, ModuleType]:
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
            why = targets.unavailable(mod, ctx)
            if why:
                raise SystemExit(f"tsm-fuzz worker: {name}: {why}")
            one = mod.make(ctx)
        return one, mod
    mod = targets.load(name)
    why = targets.unavailable(mod, ctx)
    if why:
        raise SystemExit(f"tsm-fuzz worker: {name}: {why}")
    return mod.make(ctx), mod


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
    target, mod = _setup(args.target, ctx, instrument=not args.no_instrument)
    one = guarded(target, _watch(args, ctx))  # after set-up: a report from here on is an input's
    known = _known_reporter(mod)
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
            known()
            raise
        known()  # after every input: the first known-bug match is timed (a TCG guest runs a few inputs/s)
    atheris.Setup([sys.argv[0]] + libfuzzer, wrapped)
    atheris.Fuzz()
    return 0


def minimize(args: argparse.Namespace) -> int:
    """Shrink a crash input while the same rule still fails (ddmin over bytes, time-bounded)."""
    ctx = _context(args)
    target, _ = _setup(args.target, ctx, instrument=False)
    one = guarded(target, _watch(args, ctx))
    data = Path(args.minimize).read_bytes()
    deadline = time.monotonic() + args.max_time

    def fails(d: bytes) -> Finding | None:
        try:
            one(d)
        except Finding as f:
            return f
        return None
    first = fails(data)
    if first is None or args.rule and first.rule != args.rule:
        # a kernel report need not come again (KASAN reports a bug once, WARN_ONCE warns once):
        # then the finding is kept as found
        print(f"tsm-fuzz worker: {args.minimize} does not reproduce "
              f"{args.rule or 'a finding'}{f' (got {first.rule})' if first else ''}", file=sys.stderr)
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
    ap.add_argument("--profile", metavar="NAME", help="the expectations (default: what the probe picks)")
    ap.add_argument("--artifacts", metavar="DIR", default=".")
    ap.add_argument("--no-instrument", action="store_true", help="no coverage instrumentation (FUSE/live roots)")
    ap.add_argument("--minimize", metavar="FILE")
    ap.add_argument("--max-time", type=float, default=10.0)
    ap.add_argument("--rule", help="--minimize: the rule the input must break again (else it is kept as found)")
    ap.add_argument("--kernel-log", metavar="PATH", help="watch this kernel log (/dev/kmsg or a stand-in); none: off")
    ap.add_argument("--kernel-taint", metavar="PATH",
                    help="watch this taint word (/proc/sys/kernel/tainted); none: off")
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
