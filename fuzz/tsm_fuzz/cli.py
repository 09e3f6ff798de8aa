"""``tsm-conformance fuzz``: the fuzz runner's command line.

It lives here, not in ``tsm_conformance.cli``, because ``tsm_conformance`` never imports
``tsm_fuzz`` (ARCHITECTURE.md): ``tsm-conformance fuzz ...`` hands its arguments to ``main`` below
through ``importlib`` at run time.  ``python -m tsm_fuzz.cli ...`` is the same command.

Exit codes: 0 every target passed (or was skipped), 1 a finding or a harness error, 2 bad input
(unknown target, bad spec or root, a --bundle directory that is not empty; one line on stderr), 130
interrupted (Ctrl-C or SIGTERM: the workers are stopped, the JUnit and the bundle still written).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from . import runner, targets

if TYPE_CHECKING:
    from .bundle import FuzzBundle

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line naming the bad option (argparse would print the whole usage block
    first), as tsm-conformance's own subcommands do; exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="tsm-conformance fuzz",
        description="Fuzz the configfs-tsm ABI and the report parsers with atheris/libFuzzer, one process per "
                    "target. TARGET: a target name, several, 'all', or 'list' to show them.")
    ap.add_argument("target", nargs="+", metavar="TARGET")
    tgt = ap.add_mutually_exclusive_group()
    tgt.add_argument("--emulate", metavar="SPEC", help="the in-process emulator (default sev_guest), e.g. "
                     "sev_guest+inblob-truncate")
    tgt.add_argument("--root", metavar="DIR", help="a live or FUSE-mounted report directory (creates and removes "
                     "items named tsmfz-*; on real hardware every outblob read is an attestation request)")
    ap.add_argument("--any-filesystem", action="store_true",
                    help="accept a --root report group on a filesystem that is neither configfs nor an `emulate` "
                         "mount (another implementation of the ABI), as for tsm-conformance run")
    ap.add_argument("--profile", metavar="NAME",
                    help="the provider's expectations (default: the profile the tree's probe picks, as for run); "
                         "e.g. a new provider's own profile")
    ap.add_argument("--max-time", type=float, metavar="S", help="seconds per target (default 60 unless --runs)")
    ap.add_argument("--runs", type=int, metavar="N", help="inputs per target")
    ap.add_argument("--corpus", metavar="DIR", help="keep working corpora in DIR/<target>/ (seeded from "
                    "corpora/<target>/); default: a temporary copy of the seeds")
    ap.add_argument("--artifacts", metavar="DIR", default="fuzz-artifacts",
                    help="crash inputs, findings (.json, .tsmseq) and worker logs (default ./fuzz-artifacts)")
    ap.add_argument("--junit", metavar="FILE", help="write a JUnit XML report (one testcase per target)")
    ap.add_argument("--bundle", metavar="DIR",
                    help="also write a result bundle there (an absent or empty directory): results.json (one check "
                         "fuzz.<target> each), junit.xml, each finding's evidence and artifacts, summary.txt, "
                         "environment.json, MANIFEST.sha256; corpora are not copied (docs/fuzzing.md)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                    help="targets fuzzed in parallel (default: the number of CPUs)")
    ap.add_argument("--minimize-time", type=float, default=10.0, metavar="S",
                    help="seconds to shrink each finding's input (0: keep it as found)")
    ap.add_argument("--no-instrument", action="store_true",
                    help="no coverage instrumentation (plain random mutation; e.g. for a live root)")
    ap.add_argument("--kernel-log", metavar="PATH",
                    help="read this kernel log after every input; a KASAN/KCSAN/lockdep/UBSAN/BUG/WARN/oops/hung-task "
                         "report in it is a finding (kernel.*) with a .kernel.log excerpt (default on a configfs "
                         "root: /dev/kmsg when readable; 'none': off; a file or FIFO may stand in for it)")
    ap.add_argument("--kernel-taint", metavar="PATH",
                    help="compare this taint word after every input: a new bit is a finding (kernel.taint) "
                         "(default on a configfs root: /proc/sys/kernel/tainted; 'none': off)")
    return ap


def cmd_list() -> int:
    for name in targets.names():
        try:
            mod = targets.load(name)
        except Exception as e:  # noqa: BLE001 - a broken target module is listed, not fatal
            print(f"{name:16} BROKEN  {type(e).__name__}: {e}")
            continue
        why = targets.unavailable(mod)
        print(f"{name:16} {mod.DESCRIPTION}" + (f"  [unavailable: {why}]" if why else ""))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_OK
    if args.target == ["list"]:
        return cmd_list()
    if args.max_time is None and args.runs is None:
        args.max_time = 60.0
    if args.max_time is not None and args.max_time <= 0 or args.runs is not None and args.runs < 0:
        print("tsm-conformance fuzz: --max-time and --runs must be positive", file=sys.stderr)
        return EXIT_USAGE
    if args.jobs < 1 or not args.minimize_time >= 0:
        print("tsm-conformance fuzz: --jobs must be at least 1 and --minimize-time 0 or more", file=sys.stderr)
        return EXIT_USAGE
    if args.any_filesystem and not args.root:
        print("tsm-conformance fuzz: --any-filesystem goes with --root DIR", file=sys.stderr)
        return EXIT_USAGE
    if args.bundle:
        from tsm_conformance.results.record import bundle_problem
        problem = bundle_problem(args.bundle)
        if problem:
            print(f"tsm-conformance fuzz: {problem}", file=sys.stderr)
            return EXIT_USAGE
    emulate = args.emulate if args.emulate or args.root else "sev_guest"
    if args.profile:
        from tsm_conformance.profile.load import ProfileError, load_profile
        try:
            if load_profile(args.profile).abstract:
                print(f"tsm-conformance fuzz: profile {args.profile} is abstract (a base for providers); pick a "
                      "provider profile", file=sys.stderr)
                return EXIT_USAGE
        except ProfileError as e:
            print(f"tsm-conformance fuzz: {e}", file=sys.stderr)
            return EXIT_USAGE
    rec = _bundle(args, argv) if args.bundle else None
    try:
        with _signals(_interrupt):  # SIGTERM as Ctrl-C: the runner stops its workers (Runner.stop)
            code, _ = runner.run(args.target, emulate=emulate, root=args.root, max_time=args.max_time,
                                 runs=args.runs, corpus=args.corpus, artifacts=args.artifacts,
                                 junit_path=args.junit, jobs=args.jobs, instrument=not args.no_instrument,
                                 minimize_time=args.minimize_time, any_filesystem=args.any_filesystem,
                                 kernel_log=args.kernel_log, kernel_taint=args.kernel_taint, profile=args.profile,
                                 out=rec.out if rec else sys.stdout, on_start=rec.start if rec else None)
    except runner.UsageError as e:
        print(f"tsm-conformance fuzz: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        print("tsm-conformance fuzz: interrupted", file=sys.stderr)
        if rec:
            rec.note("tsm-conformance fuzz: interrupted")
    return _write_bundle(rec, code) if rec else code


def _bundle(args: argparse.Namespace, argv: list[str]) -> FuzzBundle:
    from .bundle import FuzzBundle
    return FuzzBundle(args.bundle, ["tsm-conformance", "fuzz", *argv], args.target, args.max_time, args.runs)


def _write_bundle(rec: FuzzBundle, code: int) -> int:
    """The bundle, with the command's exit status; its writing is not cut short by a late signal
    (it is bounded work).  A bundle that cannot be written is one line and fails the command."""
    try:
        with _signals(signal.SIG_IGN):
            rec.write(code)
    except OSError as e:
        print(f"tsm-conformance fuzz: --bundle {rec.dir}: {e.strerror or e}", file=sys.stderr)
        return code or EXIT_FAIL
    return code


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _signals(handler: Callable[[int, Any], None] | signal.Handlers) -> Iterator[None]:
    """SIGTERM (and, for SIG_IGN, SIGINT too) handled by ``handler`` inside the block; the
    previous handlers back after it.  Only the main thread may set handlers (an in-process caller
    on another thread keeps its own)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGTERM, signal.SIGINT) if handler is signal.SIG_IGN else (signal.SIGTERM,)
    before = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
