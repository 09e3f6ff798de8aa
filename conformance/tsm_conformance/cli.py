"""``tsm-conformance``: run the suite; inspect reports, profiles and quirks.

Exit codes follow kselftest: 0 all passed, 1 any failure or error, 2 usage or profile error,
4 nothing applicable ran; 130 interrupted (SIGINT or SIGTERM, after the cleanup).  ``--absent-exit``
changes the status of a machine without configfs-tsm (the kselftest wrapper: 4).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from importlib import resources
from typing import TYPE_CHECKING, NoReturn, Protocol

from . import signals

if TYPE_CHECKING:  # the commands import these lazily, where they are used
    from .outcome import Outcome
    from .runstate import SetupError, TsmState

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_SKIP = 0, 1, 2, 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it; also after SIGTERM (same unwinding)


def _usage(msg: str) -> int:
    print(f"tsm-conformance: {msg}", file=sys.stderr)
    return EXIT_USAGE


#: `run`'s options and their pytest twins (plugin.OPTIONS): `run` hands the plugin its run as these
#: options and nothing else.  The rest: --junit is pytest's --junitxml; --ktap and --format ktap are
#: --tsm-ktap (- for stdout); -q leaves out --tsm-progress; --seq-dir's default is the run's ini key
#: (best-effort, where a given directory is checked); --absent-exit has no twin: it is this
#: command's exit status, where pytest's are pytest's.
RUN_TWINS = {"root": "--tsm-root", "emulate": "--tsm-emulate", "any_filesystem": "--tsm-any-filesystem",
             "profile": "--tsm-profile", "module": "--tsm-module", "trust_anchor": "--tsm-trust-anchor",
             "seq_dir": "--tsm-seq-dir", "op_timeout": "--tsm-op-timeout", "on_hang": "--tsm-on-hang",
             "budget": "--tsm-budget", "baseline": "--tsm-baseline", "strict_baseline": "--tsm-strict-baseline",
             "bundle": "--tsm-bundle"}


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    """pytest with the plugin, its options built from ours; then the end-of-run sweep, the
    leftovers line and the kselftest exit status (from the items' typed outcomes)."""
    import pytest
    problem = _run_problem(args, extra)
    if problem:
        return _usage(problem)
    # Hypothesis (model.state_machine) keeps a cache directory: not in the user's working directory
    import tempfile
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                          os.path.join(tempfile.gettempdir(), f"tsm-conformance-hypothesis-{os.getuid()}"))
    watch = _watch()
    code, interrupted = None, False
    try:
        code = _pytest_main(args, extra, watch)
        interrupted = code == pytest.ExitCode.INTERRUPTED
    except KeyboardInterrupt:  # outside pytest's own handling (start-up, its session's end): the same
        interrupted = True  # not raised again: the sweep's leftovers line below is the last line
    finally:
        if watch.state is not None:  # again, in case pytest itself was interrupted
            try:
                _sweep(watch.state, interrupted)
            except KeyboardInterrupt:  # the first signal, on the way into the sweep: sweep, and say so
                _sweep(watch.state, True)
    if signals.handling():
        signals.ignore_from_now_on()  # done and swept: a signal now must not change the status
    # A KeyboardInterrupt the handler raised can be swallowed: Python reports an exception raised
    # inside a finalizer (__del__, a weakref callback) as "unraisable" and goes on.  The signal still
    # happened, so the run was interrupted.
    status = _run_status(args, code, watch, interrupted or signals.signalled())
    if args.bundle and watch.state is not None and os.path.isdir(args.bundle):
        from .results.record import finish
        finish(args.bundle, status)  # the bundle says the status this command exits with
    return status


def _run_status(args: argparse.Namespace, code: int | None, watch: RunWatch, interrupted: bool) -> int:
    """The command's exit status once pytest is done and the tree swept (kselftest's: 0, 1, 4;
    2 usage; 130 interrupted), from the items' outcomes (outcome.run_result)."""
    import pytest

    from .outcome import run_result
    setup = watch.setup_error
    if setup is not None:  # KTAP on stdout still gets a document: a skip for an absent ABI
        _bail_out_ktap(args, str(setup), skip=setup.absent)
        return _setup_failed(setup, args.absent_exit)
    usage = watch.usage
    if usage is not None:  # pytest refused an argument (after --): its usage block, in one line
        return _usage(usage)
    if interrupted:
        probing = watch.state is None and watch.interrupted
        _bail_out_ktap(args, "run interrupted while probing the tree" if probing
                       else "run interrupted before the checks were collected")
        if watch.state is None:  # no leftovers line: nothing was made
            print("tsm-conformance: interrupted", file=sys.stderr)
        return EXIT_USAGE if code == pytest.ExitCode.USAGE_ERROR else EXIT_INTERRUPTED
    if code == pytest.ExitCode.USAGE_ERROR:
        return EXIT_USAGE
    outcomes = watch.outcomes
    evidence = [o for nid, o in outcomes.items() if nid.endswith("::environment.kernel_log")]
    result = run_result([o for nid, o in outcomes.items() if not nid.endswith("::environment.kernel_log")], evidence)
    if result == "fail" or code == pytest.ExitCode.INTERNAL_ERROR:
        return EXIT_FAIL
    if result == "nothing-ran":
        print("tsm-conformance: nothing applicable ran", file=sys.stderr)
        return EXIT_SKIP
    return EXIT_OK


def _run_problem(args: argparse.Namespace, extra: list[str]) -> str | None:
    """The one line for `run` arguments that cannot work, said before pytest starts (pytest would
    add its own framing, or fail only after the run, as an INTERNALERROR, to write a file)."""
    from .outputs import file_problem
    from .plugin import check_pattern_problem, seq_dir_problem
    from .runstate import op_timeout_problem
    if op_timeout_problem(args.op_timeout):
        return op_timeout_problem(args.op_timeout)
    if args.ktap and args.ktap != "-" and args.format == "ktap":
        return "give --format ktap (KTAP on stdout) or --ktap FILE, not both"
    if args.ktap and args.junit and args.ktap != "-" and os.path.abspath(args.ktap) == os.path.abspath(args.junit):
        return f"--ktap and --junit both name {args.ktap}"
    for opt, path in (("--ktap", args.ktap), ("--junit", args.junit)):
        if path and path != "-" and file_problem(path):  # their directories are created
            return f"{opt} {path}: {file_problem(path)}"
    patterns = [b.split("=", 1)[1] if b.startswith("--tsm-check=") else b  # --tsm-check after "--"
                for a, b in zip(["", *extra], extra) if a == "--tsm-check" or b.startswith("--tsm-check=")]
    problem = check_pattern_problem(patterns)
    if problem is None and args.seq_dir is not None:  # the default is best-effort (a note if unwritable)
        problem = seq_dir_problem(args.seq_dir)
    return problem


def _ktap_on_stdout(args: argparse.Namespace) -> bool:
    return args.format == "ktap" or args.ktap == "-"  # `--ktap -` is --format ktap: stdout is KTAP alone


def _pytest_args(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """pytest's command line for `run`: the run's own ini file, the plugin, and its options built
    from ours (RUN_TWINS); the arguments after -- last."""
    ini = resources.files("tsm_conformance") / "data" / "pytest-run.ini"
    # -p is a no-op when the entry point already loaded the plugin under the same name
    # Hypothesis's pytest plugin is for @given tests; the state-machine check drives Hypothesis
    # itself.  Left on, its terminal summary imports Hypothesis under assertion rewriting (~0.8 s)
    # even in a run interrupted before that check.
    # pytest's unraisable-exception plugin would replace signals' unraisablehook, which turns a
    # KeyboardInterrupt that landed in a finalizer into an interrupt delivered again.
    argv = ["-c", str(ini), "--rootdir", os.getcwd(), "-p", "tsm_conformance.plugin", "-p", "no:hypothesispytest",
            "-p", "no:unraisableexception", "--tsm-exclusive", "-q", "-rfEsxX"]
    import pytest
    if tuple(int(n) for n in pytest.__version__.split(".")[:2] if n.isdigit()) >= (8, 4):
        # On CI (the CI or BUILD_NUMBER variable) pytest puts each failure's whole text in the short
        # summary too: the report would print twice, and its "Reproduce with:" line with it.
        argv.append("--force-short-summary")
    for name, flag in RUN_TWINS.items():
        value = getattr(args, name)
        if isinstance(value, bool):  # a switch
            argv += [flag] if value else []
        elif value is not None:
            argv += [x for v in (value if isinstance(value, list) else [value]) for x in (flag, str(v))]
    if args.junit:
        argv += ["--junitxml", args.junit]
    if _ktap_on_stdout(args) or args.ktap:
        argv += ["--tsm-ktap", "-" if _ktap_on_stdout(args) else args.ktap]
    if not args.quiet:
        argv += ["--tsm-progress"]
    return argv + extra


def _pytest_main(args: argparse.Namespace, extra: list[str], watch: object) -> int:
    import contextlib

    import pytest
    # KTAP on stdout: pytest's own report goes to stderr, so stdout is KTAP alone
    redirect = contextlib.redirect_stdout(sys.stderr) if _ktap_on_stdout(args) else contextlib.nullcontext()
    with redirect:
        return int(pytest.main(_pytest_args(args, extra), plugins=[watch]))


class RunWatch(Protocol):
    """What `run` learns from the pytest run it starts (``_watch``'s plugin object)."""

    state: TsmState | None
    setup_error: SetupError | None
    outcomes: dict[str, Outcome]
    interrupted: bool
    usage: str | None


def _watch() -> RunWatch:
    """A pytest plugin object for `run`: what it learns from the pytest run it starts."""
    import pytest

    from .plugin import SetupUsageError, run_outcomes, run_state

    class Watch:
        """The state the plugin built (to sweep and say what is left), a set-up error (said in
        `run`'s words, one line), pytest's own usage error (one line, `usage`), each item's
        outcome (the exit status)."""

        def __init__(self) -> None:
            self.state: TsmState | None = None
            self.setup_error: SetupError | None = None
            self.outcomes: dict[str, Outcome] = {}
            self.interrupted = False
            self.usage: str | None = None

        @pytest.hookimpl(wrapper=True)  # around parsing the arguments (after --) and the ini file
        def pytest_cmdline_parse(self) -> object:
            try:
                return (yield)
            except pytest.UsageError as e:
                self.usage = _one_line_usage(e)
                raise pytest.UsageError() from None  # no message: run says it, in one line

        @pytest.hookimpl(wrapper=True)  # around the session: pytest_configure, a historic hook, has no wrappers
        def pytest_cmdline_main(self, config: pytest.Config) -> object:
            try:
                return (yield)
            except SetupUsageError as e:
                self.setup_error = e.setup
                raise pytest.UsageError() from None  # no message: run says it, in one line
            except pytest.UsageError as e:
                self.usage = _one_line_usage(e)
                raise pytest.UsageError() from None
            finally:
                self.state, self.outcomes = run_state(config), run_outcomes(config)

        def pytest_keyboard_interrupt(self, excinfo: object) -> None:
            self.interrupted = True

        # Steps an interrupt must not cut in two (signals.held: it is raised when they are done):
        # a report reaching every plugin (KTAP's line and its area's end, JUnit, the counts), the
        # KTAP header and plan, and the session's end (the not-run results, KTAP's and JUnit's
        # files, the summary); an interrupt raised inside one left KTAP without an area's line.
        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_runtest_logreport(self) -> object:
            with signals.held():
                return (yield)

        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_collection_finish(self) -> object:
            with signals.held():
                return (yield)

        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_sessionfinish(self) -> object:
            with signals.held():
                return (yield)
    return Watch()


def _one_line_usage(e: BaseException) -> str:
    """pytest's usage error in one line: argparse's (its usage block, then "PROG: error: MESSAGE",
    then the ini file and rootdir) as "pytest: MESSAGE", which names the option; any other (-p, -W,
    -c, --rootdir, ...) with its lines joined."""
    lines = [ln.strip() for a in e.args for ln in str(a).splitlines() if ln.strip()]
    for ln in lines:
        _, sep, message = ln.partition(": error: ")
        if sep:
            return f"pytest: {message}"
    return " ".join(lines) or "pytest refused its arguments"


def _sweep(state: TsmState, interrupted: bool) -> None:
    """The end-of-run sweep (cleanup.sweep: the plugin's, again), and the leftovers line; a
    signal arriving meanwhile waits until both are done.  Once the tree is swept the status is
    decided (a signal held during the sweep makes it 130: signals.signalled()), so signals are
    ignored from then on and nothing follows the leftovers line."""
    from .cleanup import sweep
    with signals.final_cleanup():
        left = sweep(state.tree, state.session.prefix, removed=state.swept)
        if signals.handling():
            signals.ignore_from_now_on()
        _say_leftovers(state, left, interrupted or signals.signalled())


def _bail_out_ktap(args: argparse.Namespace, why: str, skip: bool = False) -> None:
    """KTAP readers get a document even when the run stopped before its KTAP began (ktap.bail_out
    does nothing when the header was written): on stdout always; a --ktap file only once the run
    had opened it (a refused run leaves an existing file as it was, like --junit's)."""
    if args.format == "ktap" or args.ktap:
        from .ktap import bail_out
        bail_out("-" if args.format == "ktap" else args.ktap, why, skip)


def _say_leftovers(state: TsmState, left: list[str], interrupted: bool) -> None:
    """One line on stderr about report items after the end-of-run sweep: any left behind (with what
    to do), and after an interrupt, that none were."""
    tree, swept = state.tree, state.swept
    where = tree.describe()
    if not left and interrupted:  # confirm by listing (the sweep gives up quietly when it cannot list)
        prefix = state.session.prefix
        try:
            left = [n for n in tree.listdir("") if n.startswith(prefix)]
        except OSError as e:
            from .errnos import name
            print(f"tsm-conformance: interrupted; cannot list {where} ({name(e.errno)}) to confirm no report "
                  f"items are left: check it, then `tsm-conformance clean`", file=sys.stderr)
            return
    if left:
        print(f"tsm-conformance: {'interrupted; ' if interrupted else ''}"
              f"{len(left)} report item(s) could not be removed from {where}: "
              f"{' '.join(sorted(left))}; `tsm-conformance clean` removes them once nothing holds them",
              file=sys.stderr)
    elif interrupted:
        print(f"tsm-conformance: interrupted; 0 report items left in {where} "
              f"(the end-of-run sweep removed {len(swept)})", file=sys.stderr)


def cmd_vm(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from .vm.kernel import VmError
    from .vm.options import cache_dir, kernel_from_args
    from .vm.runner import run_vm

    def progress(msg: str) -> None:
        print(f"tsm-vm: {msg}", flush=True)
    cache = cache_dir(args)
    fuzz = [t for t in (args.fuzz or "").split(",") if t]
    if fuzz and args.differential:
        return _usage("vm: --fuzz and --differential are separate runs")
    if args.differential and args.provider_module:
        return _usage("vm: --differential compares tsm_test with the emulator's model of it; drop --provider-module")
    if args.max_time is not None and not fuzz:
        return _usage("vm: --max-time goes with --fuzz TARGETS")
    max_time = 60.0 if args.max_time is None else args.max_time
    if max_time <= 0:
        return _usage("vm: --max-time must be positive")
    timeout = args.timeout or (900.0 + max_time * len(fuzz) * max(1, len(args.params or [1])))
    if args.bundle:
        from .results.record import bundle_problem
        if bundle_problem(args.bundle):
            return _usage(bundle_problem(args.bundle) or "")
    try:
        tree = kernel_from_args(args, cache, progress)
        kst = None
        if args.kselftest is not None:
            kst = Path(args.kselftest) if isinstance(args.kselftest, str) else tree.source
            if kst is None:
                return _usage("vm --kselftest: name the kernel source tree (--kselftest TREE) or build from one "
                              "(--kernel-tree)")
        params = args.params if args.params is not None else ([] if args.differential else None)
        return run_vm(tree, cache, Path(args.junit or "tsm-vm-junit.xml"), params, extra, timeout,
                      Path(args.keep) if args.keep else None, progress,
                      differential=args.sequences if args.differential else 0, seed=args.seed, accel=args.accel,
                      provider_src=Path(args.provider_module) if args.provider_module else None,
                      profile=args.profile, fuzz=fuzz, max_time=max_time,
                      fuzz_out=Path(args.fuzz_out) if args.fuzz_out else None, kselftest=kst,
                      bundle=Path(args.bundle) if args.bundle else None)
    except VmError as e:
        return _usage(str(e))


def cmd_replay_vm(args: argparse.Namespace) -> int:
    """replay FILE --vm ...: the same .tsmseq in a fresh guest with the given kernel and provider;
    a kernel-log finding reproduces when the same kernel report appears again."""
    from pathlib import Path

    from .seq import load_tsmseq
    from .vm.kernel import VmError
    from .vm.options import cache_dir, kernel_from_args
    from .vm.runner import run_vm

    def progress(msg: str) -> None:
        print(f"tsm-vm: {msg}", flush=True)
    try:
        load_tsmseq(args.file)  # one line for a bad file before anything is built
    except ValueError as e:
        return _usage(str(e))
    if args.root or args.emulate or args.any_filesystem:
        return _usage("replay --vm runs in a fresh guest: drop --root/--emulate/--any-filesystem")
    cache = cache_dir(args)
    try:
        tree = kernel_from_args(args, cache, progress)
        params = args.params[:1] if args.params else None
        return run_vm(tree, cache, Path(args.junit or "tsm-vm-replay-junit.xml"), params, [],
                      args.timeout or 900.0, Path(args.keep) if args.keep else None, progress, accel=args.accel,
                      provider_src=Path(args.provider_module) if args.provider_module else None,
                      profile=args.profile, replay=Path(args.file))
    except VmError as e:
        return _usage(str(e))


def cmd_profiles(args: argparse.Namespace) -> int:
    from .profile.load import ProfileError, list_profiles, load_profile, render_profile, validate_paths
    if args.action == "list":
        for name, path in list_profiles():
            try:
                p = load_profile(name)
                kind = "abstract" if p.abstract else f"provider {p.provider}"
                print(f"{name:16} {kind:24} {path}")
            except ProfileError as e:
                print(f"{name:16} INVALID  {e}")
        return EXIT_OK
    if args.action == "show":
        if len(args.names) != 1:
            return _usage("profiles show takes one NAME")
        try:
            print(render_profile(load_profile(args.names[0])), end="")
        except ProfileError as e:
            return _usage(str(e))
        return EXIT_OK
    if not args.names:
        return _usage("profiles validate takes one or more PATHs")
    dir_problems = {p: why for p in args.names if (why := _profile_dir_problem(p))}
    for why in dir_problems.values():
        _usage(why)
    bad = len(dir_problems)
    for path, err in validate_paths([p for p in args.names if p not in dir_problems]):
        if err is None:
            print(f"ok {path}")
        else:
            bad += 1
            print(str(err), file=sys.stderr)
    return EXIT_USAGE if bad else EXIT_OK


def _profile_dir_problem(path: str) -> str | None:
    """A directory given to `profiles validate` that holds no profile validated nothing: not a pass."""
    from pathlib import Path

    from .profile.search import profile_files
    if not os.path.isdir(path):
        return None
    try:
        if profile_files(Path(path)):
            return None
    except OSError as e:
        return f"{path}: {e.strerror}"
    return f"{path}: no profiles to validate (no *.yaml or *.yml file in this directory)"


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a .tsmseq; report each step whose result differs from the file's expectation."""
    from .names import REPLAY, with_pid
    from .runstate import SetupError, make_tree
    from .seq import load_tsmseq, replay
    try:
        seq = load_tsmseq(args.file)  # bounded, regular files only; FILE:LINE: what is wrong
    except ValueError as e:
        return _usage(str(e))
    emulate = args.emulate or (None if args.root else seq.header.get("emulate"))
    if not emulate and not args.root:
        return _usage(f"{args.file} names no emulator spec: give --root DIR or --emulate SPEC")
    try:
        tree = make_tree(args.root, emulate, any_filesystem=args.any_filesystem)
    except SetupError as e:
        return _usage(str(e))
    try:
        diffs = replay(tree, seq, with_pid(REPLAY))
    except ValueError as e:  # a fresh name is already in the group (a recycled pid)
        return _usage(str(e))
    for i, step, got in diffs:
        print(f"step {i + 1}: {step.op}\n  expected: {step.expected}\n  got:      {got}")
    checked = sum(1 for s in seq.steps if s.expected is not None)
    print(f"{tree.describe()}: {len(seq.steps)} steps, {checked} with expected results, {len(diffs)} differ")
    rule = seq.header.get("rule", "")
    if not diffs and rule.startswith("kernel."):  # the steps ran as recorded; the kernel log decides
        print(f"steps as recorded; {rule} is a kernel-log finding: replay --vm judges the fresh guest's log")
    elif not diffs and "check" in seq.header:
        print(f"reproduced: {seq.header['check']} observed {seq.header.get('observed', '?')}")
    return EXIT_FAIL if diffs else EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspection import ParseError, inspect_blob, load_input, render_json, render_text
    from .runstate import SetupError, trust_anchors

    # A blob is at most 16 MiB (TSM_REPORT_OUTBLOB_MAX from 7.0, docs/abi.md §1); hex text with line
    # breaks is under three times that.  More is not a report, and /dev/zero must not eat the memory.
    limit = 3 * 16 * 1024 * 1024

    def read(path: str) -> bytes:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            # open() of a FIFO waits for a writer: refuse what cannot be a saved report before
            # opening (a character device such as /dev/zero is read within the bound)
            mode = os.stat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
                raise ValueError(f"{path}: not a regular file (give a saved report, or - for standard input)")
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{path}: larger than any report ({limit} bytes read and more to come)")
        return data
    try:
        data = load_input(read(args.file))
        certs = load_input(read(args.certs)) if args.certs else None
        anchors = trust_anchors(args.trust_anchor)
    except ValueError as e:
        return _usage(str(e))
    except OSError as e:
        return _usage(f"{e.filename}: {e.strerror}")
    except SetupError as e:
        return _usage(str(e))
    try:
        fmt, parsed, v = inspect_blob(data, args.format, anchors, certs)
    except ParseError as e:
        print(f"tsm-conformance: {args.file}: {e}", file=sys.stderr)
        return EXIT_FAIL
    print((render_json if args.json else render_text)(fmt, parsed, v), end="")
    return EXIT_FAIL if v is not None and not v.ok else EXIT_OK


def cmd_emulate(args: argparse.Namespace) -> int:
    """Serve the emulator as a FUSE filesystem in the foreground until SIGINT/SIGTERM."""
    from .frontend.fuse import FuseUnavailable, serve
    try:
        serve(args.spec, args.mount, announce=lambda line: print(line, flush=True), trace=args.trace)
    except ValueError as e:  # a bad SPEC
        return _usage(str(e))
    except FuseUnavailable as e:
        return _usage(f"FUSE unavailable: {e}")
    return EXIT_OK


def cmd_client(args: argparse.Namespace, cmd: list[str]) -> int:
    """Run CMD once against the faithful emulator in a private mount namespace, traced; one summary
    line; 0 if it exited 0, else 1; 2 for a set-up problem."""
    from pathlib import Path

    from .client.runner import ClientSetupError, run_client, summarize
    if not cmd:
        return _usage("client needs a command after --: tsm-conformance client -- CMD ARGS...")
    if not args.timeout > 0:
        return _usage(f"--timeout {args.timeout:g}: give a positive number of seconds")
    if args.plans != "none":
        return _client_plans(args, cmd)
    try:
        run = run_client(cmd, args.emulate, Path(args.trace), args.timeout)
    except ClientSetupError as e:
        return _usage(f"client: {e}")
    s = summarize(run)
    status = f"timed out after {args.timeout:g} s" if run.status == "timeout" else f"exited {run.status}"
    print(f"client {status} in {run.duration:.2f} s; {s.operations} operations on the report group"
          f"{' (trace truncated)' if s.truncated else ''}; items made {s.items_made}, removed {s.items_removed}; "
          f"trace {args.trace}", file=sys.stderr)
    return EXIT_OK if run.status == 0 else EXIT_FAIL


def _client_plans(args: argparse.Namespace, cmd: list[str]) -> int:
    """The client once per fault plan, each trace judged by every rule: the rules x plans table,
    each failure's evidence, JUnit; 1 if any rule failed."""
    from pathlib import Path

    from .client.plans import PLANS, failures, run_plans, table, write_junit
    from .client.runner import ClientSetupError
    plans = PLANS if args.plans == "all" else tuple(p.strip() for p in args.plans.split(",") if p.strip())
    unknown = [p for p in plans if p not in PLANS]
    if unknown or not plans:
        return _usage(f"--plans {args.plans}: plans are {', '.join(PLANS)} (or all, or none)")
    import fnmatch

    from .client.rules import RULES
    globs = [g.strip() for g in (args.rules or "*").split(",") if g.strip()]
    chosen = [r for r in RULES if any(fnmatch.fnmatchcase(r, g) for g in globs)]
    missing = [g for g in globs if not any(fnmatch.fnmatchcase(r, g) for r in RULES)]
    if missing or not chosen:
        return _usage(f"--rules {args.rules}: {', '.join(missing) or 'nothing'} matches no rule (rules: "
                      f"{', '.join(RULES)})")
    try:
        results = run_plans(cmd, args.emulate, Path(args.out), args.timeout, plans)
        for p in results:  # the table, failures and JUnit speak of the chosen rules only
            p.verdicts = {r: v for r, v in p.verdicts.items() if r in chosen}
    except ClientSetupError as e:
        return _usage(f"client: {e}")
    except ValueError as e:  # a trace over its bound, an emulator spec refused
        return _usage(f"client: {e}")
    print("\n".join(table(results)))
    bad = failures(results)
    for rule, plan, evidence in bad:
        print(f"\n{rule} [{plan}]")
        print("\n".join(f"  {line}" for line in evidence))
    if args.junit:
        write_junit(results, Path(args.junit), cmd)
    print(f"client: {len(bad)} rule failure(s) over {len(results)} plan(s); traces in {args.out}", file=sys.stderr)
    return EXIT_FAIL if bad else EXIT_OK


def _setup_failed(e: SetupError, absent_exit: int) -> int:
    """The one line; exit 2, or --absent-exit when the machine simply has no configfs-tsm."""
    code = _usage(str(e))
    return absent_exit if e.absent else code


def cmd_detect(args: argparse.Namespace) -> int:
    """Probe the tree, match a profile with runstate's selection, print both with the evidence."""
    from .runstate import SetupError, _groups_seen, choose_profile, make_tree, probe_tree
    try:
        tree = make_tree(args.root, args.emulate, any_filesystem=args.any_filesystem)
        facts = probe_tree(tree, 90.0)
        groups = _groups_seen(facts)
        prof = choose_profile(facts)
    except SetupError as e:
        return _setup_failed(e, args.absent_exit)
    rows = [("target", facts.target), ("kernel", facts.kernel_release), ("provider", facts.provider),
            ("attributes", " ".join(sorted(facts.attributes))),
            ("privlevel_floor", "-" if facts.privlevel_floor is None else str(facts.privlevel_floor)),
            ("groups", ", ".join(f"{g} {'present' if v else 'absent'}" for g, v in sorted(groups.items())) or "-")]
    if prof.match_groups:
        rows.append(("matched on", f"provider {prof.provider}, " + ", ".join(
            f"{g} {'present' if w else 'absent'}" for g, w in prof.match_groups.items())))
    else:
        rows.append(("matched on", f"provider {prof.provider}"))
    print(f"profile {prof.name} ({prof.path})")
    for k, v in rows:
        print(f"  {k:16} {v}")
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    """Remove our leftover report items; refuse anything that is not a report group."""
    from . import DEFAULT_ROOT
    from .cleanup import NotAReportGroup, clean
    root = args.root or DEFAULT_ROOT
    if not os.path.exists(root):
        return _usage(f"{root} does not exist: give the configfs-tsm report directory with --root")
    try:
        res = clean(root, force=args.force, any_filesystem=args.any_filesystem)
    except NotAReportGroup as e:
        return _usage(str(e))
    except PermissionError as e:
        return _usage(f"{root}: {e.strerror}: run as root")
    for n in res.removed:
        print(f"removed {n}")
    for n, why in res.skipped:
        print(f"kept {n}: {why}")
    for n, why in res.failed:
        print(f"failed {n}: {why}", file=sys.stderr)
    print(f"{root}: {len(res.removed)} removed, {len(res.skipped)} kept, {len(res.failed)} failed")
    return EXIT_FAIL if res.failed else EXIT_OK


def cmd_quirks(_: argparse.Namespace) -> int:
    from .emulator.quirks import QUIRKS
    for q in QUIRKS.values():
        print(f"{q.name}\t{','.join(q.applies_to)}\t{q.description}")
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (argparse would print the whole usage first); exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="tsm-conformance", description="Conformance suite for the Linux configfs-tsm report ABI")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _run_parser(sub)
    _tree_parsers(sub)
    _other_parsers(sub)
    _vm_parser(sub)
    _results_parsers(sub)
    return ap


def _run_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`run`: each option has its pytest twin (RUN_TWINS, plugin.OPTIONS)."""
    run = sub.add_parser("run", help="run the checks against a live or emulated tree",
                         description="Arguments after -- go to pytest.")
    tgt = run.add_mutually_exclusive_group()
    tgt.add_argument("--root", metavar="DIR",
                     help="configfs-tsm report directory (default /sys/kernel/config/tsm/report)")
    tgt.add_argument("--emulate", metavar="SPEC",
                     help="PROVIDER[@ERA][+QUIRK[,QUIRK...]], e.g. sev_guest@6.16+stale-outblob")
    _any_filesystem(run)
    run.add_argument("--profile", metavar="NAME|PATH", help="profile (default: the one matching the tree's provider)")
    run.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    run.add_argument("--seq-dir", metavar="DIR",
                     help="write each failure as a replayable .tsmseq here (default ./tsm-failures)")
    run.add_argument("--trust-anchor", action="append", metavar="PEM|emulator",
                     help="a root for verifying report signatures: AMD ARK, Intel SGX root CA (certificate PEM) "
                          "or an Arm CCA platform key (public key PEM); repeatable; `emulator` for the "
                          "emulator's roots (e.g. a FUSE mount); an emulated run uses them by default")
    run.add_argument("--module", metavar="KO", help="the tsm_test module file, so provider-lifecycle checks "
                     "can rmmod/insmod it (VM target)")
    run.add_argument("--ktap", metavar="FILE",
                     help="write KTAP v1 results (one subtest per area) to FILE (- is stdout, as --format ktap)")
    _absent_exit(run)
    run.add_argument("--format", choices=("pytest", "ktap"), default="pytest",
                     help="stdout: pytest's report (default), or KTAP alone (pytest's report goes to stderr)")
    run.add_argument("--op-timeout", type=float, metavar="S",
                     help="deadline of every operation on the tree (default 90: past the TDX driver's 30 s quote "
                          "timeout); one past it fails its check as hung")
    run.add_argument("--on-hang", choices=("stop", "continue"), default="stop",
                     help="after a hung operation: skip the remaining checks as not-run (default), or go on")
    run.add_argument("--budget", metavar="reports=N,time=S",
                     help="cap report generations and/or wall time (s, or 10m, 1h); checks past it are "
                          "skipped as not-run")
    run.add_argument("--baseline", action="append", metavar="FILE|NAME|none",
                     help="known failures (YAML, docs/results.md): a failure an entry names is reported as known, "
                          "not failed (repeatable; default: the shipped known-kernel-bugs; none: no baseline)")
    run.add_argument("--strict-baseline", action="store_true",
                     help="a baseline entry whose check passes fails that check (default: a warning)")
    run.add_argument("--bundle", metavar="DIR",
                     help="also write a result bundle there (an absent or empty directory): results, evidence, "
                          "environment, MANIFEST.sha256 (docs/results.md)")
    run.add_argument("-q", "--quiet", action="store_true", help="no per-area progress lines on stderr")
    return run


def _tree_parsers(sub: argparse._SubParsersAction) -> None:
    """detect and clean (replay: _other_parsers, in the order of --help)."""
    det = sub.add_parser("detect", help="probe a tree and print the profile that matches it, with the evidence")
    dtg = det.add_mutually_exclusive_group()
    dtg.add_argument("--root", metavar="DIR",
                     help="configfs-tsm report directory (default /sys/kernel/config/tsm/report)")
    dtg.add_argument("--emulate", metavar="SPEC", help="an emulator spec (for testing)")
    _any_filesystem(det)
    _absent_exit(det)
    cl = sub.add_parser("clean", help="remove report items left by killed runs (tsmct-, tsmfz-, tsmrp-, ... only)")
    cl.add_argument("--root", metavar="DIR",
                    help="configfs-tsm report directory (default /sys/kernel/config/tsm/report)")
    cl.add_argument("--force", action="store_true", help="also items whose creating process is still running")
    _any_filesystem(cl)


def _other_parsers(sub: argparse._SubParsersAction) -> None:
    """profiles, quirks, fuzz (its own parser: tsm_fuzz.cli), emulate, inspect, replay."""
    pr = sub.add_parser("profiles", help="list, show or validate profiles")
    pr.add_argument("action", choices=("list", "show", "validate"))
    pr.add_argument("names", nargs="*", metavar="NAME|PATH")
    sub.add_parser("quirks", help="list the emulator's named faults")
    sub.add_parser("fuzz", help="fuzz the ABI and the report parsers (atheris); `fuzz --help` for its options",
                   add_help=False)
    em = sub.add_parser("emulate", help="mount the emulator as a FUSE filesystem (foreground; Ctrl-C unmounts)",
                        description="DIR becomes a configfs top: run the suite with --root DIR/tsm/report.")
    em.add_argument("spec", metavar="SPEC", help="PROVIDER[@ERA][+QUIRK[,QUIRK...]], as for run --emulate")
    em.add_argument("--mount", metavar="DIR", required=True, help="an empty directory to mount on")
    em.add_argument("--trace", metavar="FILE", help="write every operation on the report tree to FILE, one JSON line "
                                                   "each (frontend/trace.py; at most 100,000 records or 64 MiB)")
    clt = sub.add_parser("client", usage="tsm-conformance client [--emulate SPEC] [--timeout S] [--trace FILE] "
                                          "-- CMD ARGS...",
                         help="run an attestation client against the emulated report group, traced "
                              "(root, FUSE, unshare): tsm-conformance client -- CMD ARGS...",
                         description="CMD runs in a private mount namespace where /sys/kernel/config/tsm/report is "
                                     "the emulated group; every operation on it is written to the trace.")
    clt.add_argument("--emulate", metavar="SPEC", default="sev_guest", help="the emulated provider (default sev_guest)")
    clt.add_argument("--timeout", metavar="S", type=float, default=120.0,
                     help="seconds the client may run (then its process group is killed), default 120")
    clt.add_argument("--trace", metavar="FILE", default="tsm-client-trace.jsonl",
                     help="with --plans none: where the operation trace goes (JSON lines), default "
                          "./tsm-client-trace.jsonl")
    clt.add_argument("--plans", metavar="all|none|PLAN,...", default="all",
                     help="fault plans to run the client under, each judged by every client rule: none (just run "
                          "and trace it), generation-bump, empty-outblob, busy-once, enxio-read, foreign-name "
                          "(default all)")
    clt.add_argument("--out", metavar="DIR", default="tsm-client",
                     help="where the plans' traces go (DIR/PLAN.jsonl), default ./tsm-client")
    clt.add_argument("--junit", metavar="FILE", help="JUnit: a suite per plan, a case per rule")
    clt.add_argument("--rules", metavar="GLOB,...", help="only these client rules (ids or globs, e.g. "
                                                         "'client.generation.*'; default: every rule)")
    ins = sub.add_parser("inspect", help="parse a captured report (outblob/auxblob/manifestblob) and print its fields")
    ins.add_argument("file", metavar="FILE", help="raw bytes or hex text; - for stdin")
    ins.add_argument("--format", choices=("snp", "snp-certs", "svsm-manifest", "tdx", "cca"),
                     help="default: detected from the bytes")
    ins.add_argument("--json", action="store_true", help="JSON: the specifications' field names, bytes as hex")
    ins.add_argument("--certs", metavar="FILE", help="SNP: the certificate table (auxblob) holding the VCEK/VLEK")
    ins.add_argument("--trust-anchor", action="append", metavar="PEM|emulator",
                     help="verify signatures up to this root (repeatable)")
    rp = sub.add_parser("replay", help="replay a .tsmseq operation sequence and report differences")
    rp.add_argument("file", metavar="FILE")
    rtg = rp.add_mutually_exclusive_group()
    rtg.add_argument("--root", metavar="DIR", help="a live report directory")
    rtg.add_argument("--emulate", metavar="SPEC", help="an emulator spec (default: the file's '# emulate:')")
    _any_filesystem(rp)
    rp.add_argument("--vm", action="store_true",
                    help="replay in a fresh QEMU guest with the kernel and provider options below (a kernel-log "
                         "finding reproduces when the same kernel report appears)")
    rp.add_argument("--junit", metavar="FILE", help="with --vm: JUnit on the host (default tsm-vm-replay-junit.xml)")
    from .vm.options import add_kernel_options
    add_kernel_options(rp)


def _results_parsers(sub: argparse._SubParsersAction) -> None:
    """bundle verify, report, compare: results handed over and compared (docs/results.md)."""
    bu = sub.add_parser("bundle", help="check a result bundle (run/vm/fuzz --bundle DIR)")
    bsub = bu.add_subparsers(dest="bundle_cmd", required=True, metavar="verify")
    bv = bsub.add_parser("verify", help="exit 0 when every file matches MANIFEST.sha256 and the parts agree, else 1")
    bv.add_argument("dir", metavar="DIR")
    rep = sub.add_parser("report", help="one self-contained HTML file from bundles (several: a checks x runs matrix)")
    rep.add_argument("dirs", nargs="+", metavar="DIR|JUNIT")
    rep.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file (- for stdout)")
    cmp = sub.add_parser("compare", help="what changed between two runs; exit 1 on a new failure")
    cmp.add_argument("old", metavar="OLD", help="a bundle, its results.json or a JUnit file")
    cmp.add_argument("new", metavar="NEW")
    cmp.add_argument("--threshold", type=float, default=0.5, metavar="R",
                     help="report a check slower or faster by this ratio (default 0.5: 50%%)")
    cmp.add_argument("--min-seconds", type=float, default=0.5, metavar="S",
                     help="... and by at least this many seconds (default 0.5)")
    cmp.add_argument("--json", action="store_true", help="the comparison as JSON")


def cmd_results(args: argparse.Namespace) -> int:
    if args.cmd == "bundle":
        from .results.bundle import main as verify
        return verify(args.dir)
    if args.cmd == "report":
        from .results.html import write_report
        return write_report(args.dirs, args.output)
    from .results.compare import main as compare
    return compare(args.old, args.new, args.threshold, args.min_seconds, args.json)


def _vm_parser(sub: argparse._SubParsersAction) -> None:
    from .vm.options import add_kernel_options
    vm = sub.add_parser("vm", help="boot a real kernel under QEMU with a provider module and run the suite (or the "
                                   "fuzzers) inside", description="Arguments after -- go to pytest in the guest.")
    add_kernel_options(vm)
    vm.add_argument("--junit", metavar="FILE", help="JUnit on the host (default tsm-vm-junit.xml)")
    vm.add_argument("--differential", action="store_true",
                    help="run generated sequences on the kernel and the emulator and report divergences")
    vm.add_argument("--sequences", type=int, default=200, metavar="N", help="differential sequences (default 200)")
    vm.add_argument("--seed", type=int, default=1, help="first differential seed (default 1)")
    vm.add_argument("--fuzz", metavar="TARGET[,TARGET...]",
                    help="fuzz these targets in the guest against the real tree instead of running the suite "
                         "(sequences, inblob, privlevel); findings include kernel reports (KASAN, lockdep, ...)")
    vm.add_argument("--max-time", type=float, metavar="S", help="seconds per fuzz target (default 60)")
    vm.add_argument("--fuzz-out", metavar="DIR", help="where corpora and findings come home (default ./vm-fuzz)")
    vm.add_argument("--bundle", metavar="DIR",
                    help="write a result bundle there (an absent or empty directory): each guest run's bundle, the "
                         "merged JUnit, dmesg, the kernel and QEMU facts, MANIFEST.sha256 (docs/results.md)")
    vm.add_argument("--kselftest", nargs="?", const=True, metavar="TREE",
                    help="also run our kselftest wrapper through a kernel tree's own kselftest runner and check its "
                         "KTAP with the tree's parser (TREE defaults to --kernel-tree / --kernel-source-deb)")


def cmd_fuzz(argv: list[str]) -> int:
    """`fuzz` belongs to tsm_fuzz (tsm_conformance never imports it, ARCHITECTURE.md): its whole
    command line is handed to tsm_fuzz.cli at run time."""
    import importlib
    try:
        fuzz_cli = importlib.import_module("tsm_fuzz.cli")
    except ImportError as e:
        return _usage(f"fuzz needs the [fuzz] extra (atheris, junit-xml, hypothesis): {e}")
    return int(fuzz_cli.main(argv))


def main(argv: list[str] | None = None) -> int:
    as_command = argv is None  # the console script / python -m: this process is ours to signal
    argv = list(sys.argv[1:] if argv is None else argv)
    if not as_command:
        return cmd_fuzz(argv[1:]) if argv[:1] == ["fuzz"] else _dispatch(argv)
    code = _command(argv)
    # CPython marks a KeyboardInterrupt that left code run by exec() or eval() of a string
    # (dataclasses and namedtuple make their methods so) as unhandled even when it was caught
    # further up, and at exit kills the process with SIGINT instead of exiting with this status.
    # Every exec of a string clears that mark first (Python/pythonrun.c, run_eval_code_obj).
    exec("")  # noqa: S102
    return code


def _command(argv: list[str]) -> int:
    if argv[:1] in (["fuzz"], ["emulate"]):  # their own handling: Python's (the runner's), libfuse's
        signals.python_defaults()  # instead of start-up's (tsm_conformance/__init__.py)
    if argv[:1] == ["fuzz"]:  # its own parser, in tsm_fuzz.cli
        return cmd_fuzz(argv[1:])
    try:
        if argv[:1] != ["emulate"]:  # emulate keeps libfuse's own SIGINT/SIGTERM handling
            # inside the try: a SIGINT that comes once its handler is in place (even before
            # SIGTERM's) raises KeyboardInterrupt from here
            signals.unwind_on_signals()
        from .pipes import pipe_safe
        sys.stdout = pipe_safe(sys.stdout)
        code = _dispatch(argv)
    except KeyboardInterrupt:  # outside _dispatch's own handling (the import above)
        code = EXIT_INTERRUPTED
        print("tsm-conformance: interrupted", file=sys.stderr)
    finally:
        if argv[:1] != ["emulate"]:
            signals.ignore_from_now_on()
    if signals.signalled() and code != EXIT_INTERRUPTED:
        # The signal came before the status was decided, but its KeyboardInterrupt was still
        # owed (held back in the import system or a finalizer) when the command ended.
        print("tsm-conformance: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    return code


def _exit_status(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not an exit status 0..125") from None
    if not 0 <= n <= 125:
        raise argparse.ArgumentTypeError(f"{text} is not an exit status 0..125")
    return n


def _any_filesystem(p: argparse.ArgumentParser) -> None:
    p.add_argument("--any-filesystem", action="store_true",
                   help="accept a --root report group (.../tsm/report) on a filesystem that is neither configfs nor "
                        "an `emulate` mount: another implementation of the ABI (FUSE, virtiofs, ...); still only "
                        "our own items, and never the kernel's pseudo-filesystems (docs/any-filesystem.md)")


def _absent_exit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--absent-exit", type=_exit_status, default=EXIT_USAGE, metavar="N",
                   help="exit status when the machine has no configfs-tsm to test (configfs not mounted, no tsm "
                        "core, no report group, no provider), default 2 like other set-up errors; the "
                        "kselftest wrapper passes 4 (KSFT_SKIP)")


def _empty_value(args: argparse.Namespace) -> str | None:
    """An option given as "" (e.g. an unset shell variable): never silently the default."""
    for name, value in vars(args).items():
        if value == "" and name != "cmd":
            return f"--{name.replace('_', '-')} needs a value (it was given as an empty string)"
    return None


def _dispatch(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse already printed one usage line
        if e.code and argv[:1] == ["run"] and ("--format=ktap" in argv or any(
                a in ("--format", "--ktap") and b in ("ktap", "-") for a, b in zip(argv, argv[1:]))):
            from .ktap import bail_out
            bail_out("-", "the run did not start: bad arguments (the reason is on stderr)")
        return EXIT_USAGE if e.code else EXIT_OK
    empty = _empty_value(args)
    if empty:
        if args.cmd == "run":
            _bail_out_ktap(args, empty)
        return _usage(empty)
    try:
        if args.cmd == "run":
            code = cmd_run(args, extra)
            if code == EXIT_USAGE:  # a pre-check or pytest refused the arguments: KTAP on stdout still says so
                _bail_out_ktap(args, "the run did not start: bad arguments (the reason is on stderr)")
            return code
        if args.cmd == "profiles":
            return cmd_profiles(args)
        if args.cmd == "vm":
            return cmd_vm(args, extra)
        if args.cmd == "replay":
            return cmd_replay_vm(args) if args.vm else cmd_replay(args)
        if args.cmd == "inspect":
            return cmd_inspect(args)
        if args.cmd == "emulate":
            return cmd_emulate(args)
        if args.cmd == "client":
            return cmd_client(args, extra)
        if args.cmd == "detect":
            return cmd_detect(args)
        if args.cmd == "clean":
            return cmd_clean(args)
        if args.cmd in ("bundle", "report", "compare"):
            return cmd_results(args)
        return cmd_quirks(args)
    except KeyboardInterrupt:
        print("tsm-conformance: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        # An interrupt that lands inside an import leaves the module half-initialised, and a later
        # import then fails with ImportError: after a signal, that is still "interrupted".
        if signals.signalled():
            print("tsm-conformance: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        raise


if __name__ == "__main__":
    sys.exit(main())
