"""pytest plugin (entry point ``pytest11``): collects profile x applicable checks as test items.

Inactive unless a ``--tsm-*`` option or a ``tsm_*`` ini key naming a run is given (``OPTIONS``:
root, emulate, profile, check, module, exclusive), so installing the package changes nothing for
other projects.  ``tsm-conformance run`` is this plugin under pytest with options built from its
own (every run option has a ``--tsm-*`` twin and ini key).  Collection: one collector per profile,
one per check area, one item per check, with stable ids; classname in JUnit is
``tsm.<profile>.<area>``.  Each report carries its typed verdict (``pytest_runtest_makereport``).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pytest

from . import DEFAULT_ROOT, __version__
from .checks.base import Check, all_checks
from .checks.runner import Result
from .kernlog import EVIDENCE_LINES
from .ktap import NOT_RUN_PROPERTY, attach, report_verdict
from .outcome import FACES, Outcome, TsmFailure, Verdict
from .report_text import render_failure
from .runstate import SetupError, TsmState, build_state

if TYPE_CHECKING:
    from .profile.baseline import Baseline, Entry

#: JUnit testcase properties: a failure's .tsmseq; the baseline entry that made a failure known, and
#: the failure's text (kept as evidence); a baseline entry found stale
SEQUENCE_PROPERTY = "tsm.sequence"
KNOWN_PROPERTY = FACES[Outcome.KNOWN].junit_property
KNOWN_FAILURE_PROPERTY = "tsm.known.failure"
STALE_PROPERTY = "tsm.baseline.stale"


class Option(NamedTuple):
    """A plugin option: ``--tsm-...`` on the command line and the ini key ``name``."""

    name: str  # "tsm_root": the ini key; the option is --tsm-root
    help: str
    kind: str = "str"  # str, list (repeatable; ini: one a line), bool, float, int
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    activates: bool = False  # giving it (option or ini key) switches the plugin on

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


#: Every option of the plugin.  `tsm-conformance run` hands its run to the plugin as these options
#: (cli.RUN_TWINS names each run option's twin), so a pytest command line does what `run` does.
OPTIONS = (
    Option("tsm_root", f"live configfs-tsm report directory (default {DEFAULT_ROOT})", metavar="DIR", activates=True),
    Option("tsm_any_filesystem", "accept a --tsm-root report group on a filesystem that is neither configfs nor an "
           "`emulate` mount (another implementation of the ABI; tsm-conformance run --any-filesystem)", "bool"),
    Option("tsm_emulate", "run against the built-in emulator, e.g. sev_guest@6.16", metavar="SPEC", activates=True),
    Option("tsm_profile", "profile to hold the tree to (default: by provider)", metavar="NAME|PATH", activates=True),
    Option("tsm_check", "only checks whose id matches GLOB (repeatable: any of them)", "list", "GLOB", activates=True),
    Option("tsm_module", "tsm_test module file for the provider-lifecycle checks", metavar="KO", activates=True),
    Option("tsm_exclusive", "collect nothing but tsm checks", "bool", activates=True),
    Option("tsm_trust_anchor", "trust anchor for format.signature.* (repeatable; `emulator`: the emulator's roots)",
           "list", "PEM|emulator"),
    Option("tsm_op_timeout", "deadline of every operation on the tree in seconds (default 90); one past it fails "
           "its check as hung", "float", "S"),
    Option("tsm_on_hang", "after a hung operation: skip the remaining checks as not-run (stop, the default) or go "
           "on (continue)", choices=("stop", "continue")),
    Option("tsm_budget", "cap report generations and/or wall time (s, or 10m, 1h); checks past it are skipped "
           "as not-run", metavar="reports=N,time=S"),
    Option("tsm_seq_dir", "write each failure's operations there as a .tsmseq", metavar="DIR"),
    Option("tsm_baseline", "known failures (YAML, docs/results.md): a failure an entry names is reported as known, "
           "not failed (repeatable; default the shipped known-kernel-bugs; none: no baseline)", "list",
           "FILE|NAME|none"),
    Option("tsm_strict_baseline", "a baseline entry whose check passes fails that check (default: a warning)",
           "bool"),
    Option("tsm_bundle", "write a result bundle there: results, evidence, environment, manifest (docs/results.md)",
           metavar="DIR"),
    Option("tsm_ktap", "write KTAP v1 results there (- for stdout)", metavar="PATH|-"),
    Option("tsm_progress", "one line per finished check area on stderr", "bool"),
    Option("tsm_hypothesis_seed", "seed of model.state_machine.* (default: random; the seed in use is logged)",
           "int", "N"),
)
_BY_NAME = {o.name: o for o in OPTIONS}
_INI_TYPE: dict[str, Literal["linelist", "bool"]] = {"list": "linelist", "bool": "bool"}  # else a string


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("tsm", "configfs-tsm conformance")
    for o in OPTIONS:
        kw: dict[str, Any] = {"help": o.help, "dest": o.name}
        if o.kind == "bool":
            kw["action"] = "store_true"
        else:
            kw["metavar"] = o.metavar
        if o.kind == "list":
            kw["action"] = "append"
        if o.kind in ("float", "int"):
            kw["type"] = float if o.kind == "float" else int
        if o.choices:
            kw["choices"] = o.choices
        g.addoption(o.flag, **kw)
        if o.kind == "bool":
            parser.addini(o.name, f"default for {o.flag}", type=_INI_TYPE.get(o.kind), default=False)
        else:
            parser.addini(o.name, f"default for {o.flag}", type=_INI_TYPE.get(o.kind))


def _opt(config: pytest.Config, name: str) -> Any:
    """The option's value, else its ini key's (converted as the option would be), else None."""
    o = _BY_NAME[name]
    given = config.getoption(name)
    if given or given == 0 and o.kind in ("float", "int"):
        return given
    ini = config.getini(name)
    if not ini:
        return None
    try:
        if o.kind in ("float", "int"):
            return float(ini) if o.kind == "float" else int(ini)
    except ValueError:
        want = "a number" if o.kind == "float" else "an integer"
        raise pytest.UsageError(f"ini {name} = {ini}: expected {want}") from None
    if o.choices and ini not in o.choices:
        raise pytest.UsageError(f"ini {name} = {ini}: expected one of {', '.join(o.choices)}")
    return ini


def _active(config: pytest.Config) -> bool:
    """Only a --tsm-* option or tsm_* ini key that names a run switches the plugin on."""
    return any(_opt(config, o.name) for o in OPTIONS if o.activates)


_KEY = pytest.StashKey[TsmState]()
_EVIDENCE = pytest.StashKey[Any]()


@pytest.hookimpl(tryfirst=True)  # --tsm-bundle gives JUnit its home before junitxml's configure reads it
def pytest_configure(config: pytest.Config) -> None:
    if not _active(config):
        return
    _check_patterns(config)  # before the tree is touched: a typo is a usage error, not an empty KTAP plan
    problem = _selection_problem(config)
    if problem:
        raise pytest.UsageError(problem)
    seq_dir = config.getoption("tsm_seq_dir")  # given: checked now; the ini key is best-effort (a note if unwritable)
    if seq_dir and seq_dir_problem(seq_dir):
        raise SetupUsageError(SetupError(seq_dir_problem(seq_dir) or ""))
    baseline = _load_baseline(config)  # a file's mistake is a usage error before the tree is touched
    bundle = _opt(config, "tsm_bundle")
    if bundle:
        from .results.record import bundle_problem
        problem = bundle_problem(bundle)
        if problem:
            raise SetupUsageError(SetupError(problem))
    state = config.stash[_KEY] = _build_state(config)
    state.baseline, state.strict_baseline = baseline, bool(_opt(config, "tsm_strict_baseline"))
    reporter = _ktap_reporter(config)
    config.pluginmanager.register(reporter, "tsm-ktap")
    config.pluginmanager.register(Completion(), "tsm-completion")
    reporter.diagnostics.append(f"tsm: {state.facts.target}, provider {state.facts.provider}, profile "
                                f"{state.profile.name}, kernel {state.facts.kernel_release}")
    if bundle:
        import sys

        from .results.record import BundleRecorder
        recorder = BundleRecorder(config, state, bundle, list(sys.argv))
        config.pluginmanager.register(recorder, "tsm-bundle")
        recorder.register()
    if state.tree.kind in ("live", "fuse", "foreign"):  # the kernel under the tree: taint and dmesg across the run
        from .kernlog import KernelEvidence
        ev = KernelEvidence()
        ev.start()
        config.stash[_EVIDENCE] = ev
    seed = _opt(config, "tsm_hypothesis_seed")
    if seed is not None:
        from .checks import statemachine
        statemachine.SEED = int(seed)


#: The names run-time messages use for options (runstate's SetupErrors speak the CLI's language)
_CLI_NAMES = re.compile(r"(?<![\w-])--(" + "|".join(re.escape(o.flag[6:]) for o in OPTIONS) + r")(?![\w-])")


# pytest marks UsageError final (a typing marker only), but only a UsageError is a usage error to
# pytest (one line, its exit status); the subclass carries the SetupError for `run` to say.
class SetupUsageError(pytest.UsageError):  # type: ignore[misc]
    """A SetupError as pytest's usage error, with the options named as they are here (--tsm-root);
    ``setup`` keeps the original, for a caller that says it in its own words (cli.run)."""

    def __init__(self, setup: SetupError) -> None:
        super().__init__(_CLI_NAMES.sub(r"--tsm-\1", str(setup)))
        self.setup = setup


def _build_state(config: pytest.Config) -> TsmState:
    """Target, probe and profile from the options (runstate.build_state, as `run` does)."""
    try:
        return build_state(_opt(config, "tsm_root"), _opt(config, "tsm_emulate"), _opt(config, "tsm_profile"),
                           _opt(config, "tsm_module"), _opt(config, "tsm_trust_anchor"),
                           op_timeout=_opt(config, "tsm_op_timeout"), budget=_opt(config, "tsm_budget"),
                           stop_on_hang=_opt(config, "tsm_on_hang") != "continue",
                           any_filesystem=bool(_opt(config, "tsm_any_filesystem")))
    except SetupError as e:
        raise SetupUsageError(e) from None


def _load_baseline(config: pytest.Config) -> Baseline:
    """--tsm-baseline files (default: the shipped one), checked against the catalogue's ids."""
    from .profile.baseline import DEFAULT, load_baselines
    from .profile.errors import ProfileError
    given = _opt(config, "tsm_baseline")
    names = [given] if isinstance(given, str) else list(given or ()) or [DEFAULT]
    try:
        return load_baselines(names, [c.id for c in all_checks()])
    except ProfileError as e:
        raise pytest.UsageError(f"--tsm-baseline: {e}") from None


def _ktap_reporter(config: pytest.Config) -> Any:
    """KTAP (--tsm-ktap), progress (--tsm-progress), the per-area table and each item's outcome."""
    import sys

    from .ktap import KtapReporter, open_stream
    ktap = _opt(config, "tsm_ktap")
    try:
        stream = open_stream(ktap) if ktap else None
    except OSError as e:
        raise pytest.UsageError(f"--tsm-ktap {ktap}: {e.strerror}") from None
    return KtapReporter(stream, sys.stderr if _opt(config, "tsm_progress") else None, key=ktap or "")


def run_state(config: pytest.Config) -> TsmState | None:
    """The tree, profile and session this pytest run uses (None: the plugin is inactive or its
    set-up failed); `tsm-conformance run` sweeps and reports its leftovers after pytest."""
    return config.stash.get(_KEY, None)


def run_outcomes(config: pytest.Config) -> dict[str, Outcome]:
    """Each item's outcome (nodeid -> Outcome) once the session has finished, as KTAP, JUnit and
    the per-area table count them (`run`'s exit status)."""
    reporter = config.pluginmanager.get_plugin("tsm-ktap")
    return reporter.outcomes() if reporter is not None else {}


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash.get(_KEY, None)
    if state is None:
        return
    for k, v in properties(state).items():
        _junit_suite_property(session.config, k, v)


def _junit_suite_property(config: pytest.Config, name: str, value: str) -> None:
    """A <testsuite> property in --junitxml's file.  pytest has no public hook or API for this:
    its one public way, the ``record_testsuite_property`` fixture, is reachable only from inside a
    test function, and these properties are known at session start (the probed facts) and after
    the last check (the kernel evidence), outside any test.  So this uses the fixture's own means,
    junitxml's stash key, and does nothing if a pytest version moves it."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - another pytest layout: no suite properties
        return
    xml = config.stash.get(xml_key, None)
    if xml is not None:
        xml.add_global_property(name, value)


def properties(state: TsmState) -> dict[str, str]:
    f = state.facts
    return {
        "tsm.suite_version": __version__,
        "tsm.profile": state.profile.name,
        "tsm.profile_path": state.profile.path,
        "tsm.provider": f.provider,
        "tsm.kernel_release": f.kernel_release,
        "tsm.target_kind": state.tree.kind,
        "tsm.target": f.target,
        "tsm.attributes": " ".join(sorted(f.attributes)),
        "tsm.trust_anchors": str(len(state.session.anchors.certificates) + len(state.session.anchors.public_keys)),
    }


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One warning line per stale baseline entry (with --strict-baseline each also failed its check)."""
    state = config.stash.get(_KEY, None)
    if state is None or not state.stale:
        return
    for e in state.stale:
        terminalreporter.write_line(f"tsm: baseline entry {e.where} is stale: {e.check} passed on "
                                    f"{state.facts.target} (kernel {state.facts.kernel_release}); remove it or "
                                    f"narrow its kernels/providers/params")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(_KEY, None)
    if state is None:
        return None
    return [f"tsm: {state.facts.target}, provider {state.facts.provider}, profile {state.profile.name} "
            f"({state.profile.path}), kernel {state.facts.kernel_release}"]


def pytest_ignore_collect(collection_path: Any, config: pytest.Config) -> bool | None:
    return True if _opt(config, "tsm_exclusive") else None


def check_pattern_problem(patterns: list[str]) -> str | None:
    """The one line for a --tsm-check pattern that matches no check, or None."""
    for pattern in patterns:
        if not any(fnmatch.fnmatch(c.id, pattern) for c in all_checks()):
            areas = sorted({c.area for c in all_checks()})
            return f"--tsm-check {pattern} matches no check (ids are AREA.WHAT..., areas: {', '.join(areas)})"
    return None


def _check_patterns(config: pytest.Config) -> list[str]:
    """--tsm-check values (repeatable) or the ini key; UsageError for one that matches no check."""
    given = _opt(config, "tsm_check")
    patterns = [given] if isinstance(given, str) else list(given or ())
    problem = check_pattern_problem(patterns)
    if problem:
        raise pytest.UsageError(problem)
    return patterns


def _selection_problem(config: pytest.Config) -> str | None:
    """pytest's own -k and -m expressions and file arguments, checked before the tree is touched
    and the outputs are opened: pytest checks them only while collecting, after the run had
    started (a full table of not-run checks, KTAP and JUnit written, then the usage error)."""
    try:  # pytest's expression grammar; no public name (another layout: pytest checks, later)
        from _pytest.mark.expression import Expression
    except ImportError:  # pragma: no cover
        # the class or None: an import fallback, which the checker cannot type as one name
        Expression = None  # type: ignore[assignment,misc]  # noqa: N806
    for opt, expr in (("-k", config.option.keyword), ("-m", config.option.markexpr)):
        if Expression is not None and expr and expr.strip():
            try:
                Expression.compile(expr.lstrip())
            except SyntaxError as e:  # pytest's own words
                return f"Wrong expression passed to '{opt}': {e.text}: at column {e.offset}: {e.msg}"
    if config.args_source == pytest.Config.ArgsSource.ARGS and not config.option.pyargs:
        for arg in config.args:
            path = arg.split("::", 1)[0]
            where = os.path.join(config.invocation_params.dir, path)
            if not os.path.exists(where):
                return f"file or directory not found: {arg}"
            if _opt(config, "tsm_exclusive") and not os.path.isdir(where):  # pytest: "not found", after the run
                return f"{arg}: only the configfs-tsm checks are collected here (select them with --tsm-check PATTERN)"
    return None


class ProfileCollector(pytest.Collector):
    def collect(self) -> Iterator[AreaCollector]:
        state: TsmState = self.config.stash[_KEY]
        patterns = _check_patterns(self.config)
        checks = [c for c in all_checks() if not patterns or any(fnmatch.fnmatch(c.id, p) for p in patterns)]
        areas: dict[str, list[Check]] = {}
        for c in checks:
            areas.setdefault(c.area, []).append(c)
        for area, cs in areas.items():
            yield AreaCollector.from_parent(self, name=area, checks=cs, state=state)


class AreaCollector(pytest.Collector):
    def __init__(self, *, checks: list[Check], state: TsmState, **kw: Any) -> None:
        super().__init__(**kw)
        self.checks, self.state = checks, state

    def collect(self) -> Iterator[pytest.Item]:
        for c in self.checks:
            item = CheckItem.from_parent(self, name=c.id, check=c, state=self.state)
            xf = self.state.session.expected_failure(c)
            if xf:
                item.add_marker(pytest.mark.xfail(strict=True, reason=f"{xf.tracking}: {xf.reason}"))
            yield item


def seq_dir_problem(directory: str) -> str | None:
    """The one line for a --seq-dir that cannot take files (outputs.dir_problem), or None."""
    from .outputs import dir_problem
    why = dir_problem(directory)
    return f"--seq-dir {directory}: {why}" if why else None


def write_sequence(directory: str, f: TsmFailure) -> str:
    """<dir>/<check-id>-<sha8>.tsmseq, content-addressed so reruns do not pile up copies."""
    import hashlib
    import os

    from .seq import format_tsmseq
    # TsmFailure.sequence is typed object (outcome.py, a layer below, may not import seq.py); the
    # caller writes only a failure whose sequence is set, always a seq.Sequence
    text = format_tsmseq(f.sequence)  # type: ignore[arg-type]
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{f.check_id}-{hashlib.sha1(text.encode()).hexdigest()[:8]}.tsmseq")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def _bundle_sequences(config: pytest.Config) -> str | None:
    """Where a failure's .tsmseq goes when only --tsm-bundle asks for one."""
    bundle = _opt(config, "tsm_bundle")
    return os.path.join(bundle, "sequences") if bundle else None


class HarnessError(Exception):
    """The check could not run (broken target or harness): reported as a pytest error."""


class CheckItem(pytest.Item):
    def __init__(self, *, check: Check, state: TsmState, **kw: Any) -> None:
        super().__init__(**kw)
        self.check, self.state = check, state
        self.result: Result | None = None
        self.known: Entry | None = None  # the baseline entry that made its failure known

    def setup(self) -> None:
        # The check runs here so that a broken harness surfaces as an error, not a failure.
        self.result = self.state.session.execute(self.check)
        if FACES[self.result.outcome].pytest == "error":
            raise HarnessError(f"{self.check.id}: could not run: {self.result.reason}")

    def runtest(self) -> None:
        r = self.result
        assert r is not None
        shows = FACES[r.outcome].pytest
        if shows == "skipped":  # reported at the check's location (pytest_runtest_makereport)
            pytest.skip(r.reason)
        entry = self.state.known_entry(self.check.id)
        if shows == "failed":
            assert r.failure is not None
            out = _opt(self.config, "tsm_seq_dir") or _bundle_sequences(self.config)
            if out and r.failure.sequence is not None:
                try:
                    r.failure.sequence_path = write_sequence(out, r.failure)
                    self.user_properties.append((SEQUENCE_PROPERTY, r.failure.sequence_path))
                except OSError as e:  # the failure itself must still be reported in full
                    r.failure.ops = [*r.failure.ops, f"# could not write its .tsmseq to {out}: {e.strerror}"]
            if entry is not None and r.outcome in (Outcome.FAIL, Outcome.TIMEOUT):
                self.known = entry  # kept, with its evidence, as a skip that does not fail the run
                self.user_properties += [(KNOWN_PROPERTY, f"{entry.where}: {entry.reason} ({entry.link})"),
                                         (KNOWN_FAILURE_PROPERTY, render_failure(r.failure))]
                # short: KTAP's SKIP reason becomes a result name in kernel CI databases; the whole
                # entry is the tsm.known property
                pytest.skip(f"known: {entry.headline()} [{entry.where}]")
            raise r.failure
        if entry is not None and r.outcome is Outcome.PASS:
            self.state.stale.append(entry)
            self.user_properties.append((STALE_PROPERTY, entry.where))
            rep = self.config.pluginmanager.get_plugin("tsm-ktap")
            if rep is not None:
                rep.diagnostics.append(f"baseline: stale entry {entry.where}: {self.check.id} passed")
            if self.state.strict_baseline:
                pytest.fail(f"{self.check.id}: stale baseline entry {entry.where}: the check passed on "
                            f"{self.state.facts.target} (kernel {self.state.facts.kernel_release}); remove the "
                            f"entry or narrow its kernels/providers/params (--strict-baseline)", pytrace=False)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, TsmFailure):
            return render_failure(excinfo.value)
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, 0, f"{self.check.id}: {self.check.rule}"

    def verdict(self, report: pytest.TestReport, raised: bool) -> Verdict | None:
        """The phase's verdict in the check's terms: its skip kind (not applicable, unsupported,
        not run) and a hang's TIMEOUT, from its result; pytest's xfail handling as pytest decided."""
        v = report_verdict(report, raised)
        r = self.result
        if v is None or r is None:
            return v
        if v.outcome is Outcome.SKIP and self.known is not None:
            return Verdict(Outcome.KNOWN, v.reason)
        if v.outcome is Outcome.SKIP and FACES[r.outcome].pytest == "skipped":
            return Verdict(r.outcome, v.reason)
        if v.outcome is Outcome.FAIL and r.outcome is Outcome.TIMEOUT and r.failure is not None:
            return Verdict(Outcome.TIMEOUT, r.failure.observed.splitlines()[0])
        return v


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: sees the report after pytest's xfail handling
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach each phase's typed verdict to its report (ktap.attach: KTAP, the per-area table and
    `run`'s exit status read it; outcome.FACES says how each shows), and report a check's skip at
    the check's location, not at the pytest.skip call in CheckItem.runtest."""
    report = yield
    if run_state(item.config) is None:
        return report
    raised = call.excinfo is not None
    if isinstance(item, CheckItem):
        if call.excinfo is not None and isinstance(call.excinfo.value, HarnessError):
            # in setup (where checks run) pytest would print its own traceback down to this raise
            report.longrepr = str(call.excinfo.value)
        if report.skipped and isinstance(report.longrepr, tuple):
            path, line = item.reportinfo()[:2]
            report.longrepr = (os.fspath(path), (line or 0) + 1, report.longrepr[2])
        attach(report, item.verdict(report, raised))
    else:
        attach(report, report_verdict(report, raised))
    return report


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(_KEY, None)
    if state is None:
        return
    from pathlib import Path
    col = ProfileCollector.from_parent(session, name=f"tsm/{state.profile.name}",
                                       nodeid=f"tsm/{state.profile.name}", path=Path(state.profile.path))
    for node in col.collect():
        items.extend(node.collect())
    if config.stash.get(_EVIDENCE, None) is not None:  # last: the kernel log of everything before it
        env = EnvCollector.from_parent(col, name="environment")
        items.append(KernelLogItem.from_parent(env, name="environment.kernel_log"))


class EnvCollector(pytest.Collector):
    def collect(self) -> Iterator[pytest.Item]:
        return iter(())


class KernelLogItem(pytest.Item):
    """Runs after every check on a live or FUSE target: a new taint, or an oops/BUG/WARNING in the
    kernel log during the run, is an error with the log attached (kernlog.py has the policy)."""

    def setup(self) -> None:
        ev = self.config.stash[_EVIDENCE]
        ev.finish()
        for k, v in ev.properties().items():
            _junit_suite_property(self.config, k, v)
        rep = self.config.pluginmanager.get_plugin("tsm-ktap")
        if rep is not None:
            rep.diagnostics.append(f"tsm: taint {ev.taint_before} -> {ev.taint_after}, dmesg "
                                   + (f"unavailable ({ev.dmesg_unavailable})" if ev.dmesg_unavailable
                                      else f"{len(ev.lines)} new lines, {len(ev.bad)} oops/BUG/WARNING"))
            rep.diagnostics.extend(f"dmesg: {line}" for line in ev.lines[-EVIDENCE_LINES:])
        problem = ev.problem()
        if problem:
            raise HarnessError(f"kernel log: {problem} during the run\n" + "\n".join(ev.lines[-EVIDENCE_LINES:]))

    def runtest(self) -> None:
        pass

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, 0, "environment.kernel_log: no oops, WARNING or new taint during the run"


class Completion:
    """Every planned check gets a result: one that never ran (an interrupt, -x, --maxfail) is
    reported as skipped ``not-run: <why>`` through the same hook as a real result, so JUnit, KTAP,
    the terminal counts and the per-area table agree.  The kernel-log item still runs after -x
    and an interrupt (it reads the kernel log and touches no tree): it is the run's evidence of an oops."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, str]] = {}  # nodeid -> {phase: outcome} reported
        self.began: set[str] = set()  # items pytest started (the one an interrupt cut short is here)
        self.interrupted = False

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.phases.setdefault(report.nodeid, {})[report.when or ""] = report.outcome

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.interrupted = True

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.began.add(nodeid)

    def why(self, session: pytest.Session) -> str:
        """Why planned checks did not run, in the words of the option that stopped the run."""
        if self.interrupted or session.exitstatus == pytest.ExitCode.INTERRUPTED:
            return "run interrupted"
        maxfail = session.config.getoption("maxfail", 0)
        if session.shouldfail and maxfail == 1:
            return "-x stopped the run after the first failure"
        if session.shouldfail:
            return f"--maxfail={maxfail} stopped the run"
        return f"the run stopped early ({session.shouldstop})" if session.shouldstop else "the run stopped early"

    @staticmethod
    def _report(hook: Any, item: pytest.Item, when: Literal["setup", "call", "teardown"],
                outcome: Literal["passed", "failed", "skipped"] = "passed", longrepr: Any = None,
                why: str | None = None) -> None:
        """One phase's report through pytest's own hook (JUnit, KTAP and the terminal all see it);
        ``why``: the run stopped before this check (its skip is NOT_RUN, with the JUnit property)."""
        props = [(NOT_RUN_PROPERTY, why)] if why is not None else []
        report = pytest.TestReport(item.nodeid, item.location, {}, outcome, longrepr, when, user_properties=props)
        v = report_verdict(report)
        if why is not None and v is not None and v.outcome is Outcome.SKIP:
            v = Verdict(Outcome.NOT_RUN, v.reason)
        attach(report, v)
        hook.pytest_runtest_logreport(report=report)

    def _kernel_log(self, item: KernelLogItem, hook: Any) -> None:
        """Run the kernel-log item outside pytest's runtest protocol (after an interrupt pytest has
        already stopped its capturing, which that protocol needs), reporting it the same way."""
        outcome: Literal["passed", "failed"]
        longrepr: str | None
        try:
            item.setup()
            outcome, longrepr = "passed", None
        except HarnessError as e:
            outcome, longrepr = "failed", str(e)
        hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        self._report(hook, item, "setup", outcome, longrepr)
        if outcome == "passed":
            self._report(hook, item, "call")
        self._report(hook, item, "teardown")
        hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    @pytest.hookimpl(tryfirst=True)  # before --junitxml and KTAP write their files
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if session.config.option.collectonly:  # nothing was meant to run
            return
        why, hook = self.why(session), session.config.hook
        for item in session.items:
            done = self.phases.get(item.nodeid, {})
            if "teardown" in done:
                continue
            if isinstance(item, KernelLogItem) and not done:  # reads /dev/kmsg only: cheap even now
                self._kernel_log(item, hook)
                continue
            began = item.nodeid in self.began
            why_here = "run interrupted while this check ran" if began and self.interrupted else why
            skipped = (str(item.path), (item.location[1] or 0) + 1, f"not-run: {why_here}")
            if not done:
                hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
                self._report(hook, item, "setup", "skipped", skipped, why)
            elif done.get("setup") == "passed" and "call" not in done:  # cut short between setup and its verdict
                self._report(hook, item, "call", "skipped", skipped, why)
            self._report(hook, item, "teardown", why=why)
            hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(_KEY, None)
    if state is None:
        return
    # Last line of defence: nothing with this run's prefix may stay behind (workers joined first).
    from .cleanup import sweep
    sweep(state.tree, state.session.prefix, removed=state.swept)
