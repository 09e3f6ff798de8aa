"""pytest plugin (entry point ``pytest11``): collects profile x applicable checks as test items.

Inactive unless a ``--tsm-*`` option or a ``tsm_*`` ini key is given, so installing the package
changes nothing for other projects.  Collection: one collector per profile, one per check area,
one item per check, with stable ids; classname in JUnit is ``tsm.<profile>.<area>``.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterator

import pytest

from . import DEFAULT_ROOT, __version__
from .checks.base import Check, all_checks
from .kernlog import EVIDENCE_LINES
from .outcome import Outcome, TsmFailure
from .report_text import render_failure
from .runstate import STATE_PLUGIN, SetupError, TsmState, build_state

_OPTS = ("tsm_root", "tsm_emulate", "tsm_profile", "tsm_check")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("tsm", "configfs-tsm conformance")
    g.addoption("--tsm-root", help=f"live configfs-tsm report directory (default {DEFAULT_ROOT})")
    g.addoption("--tsm-any-filesystem", action="store_true",
                help="accept a --tsm-root report group on a filesystem that is neither configfs nor an `emulate` "
                     "mount (another implementation of the ABI; tsm-conformance run --any-filesystem)")
    g.addoption("--tsm-emulate", metavar="SPEC", help="run against the built-in emulator, e.g. sev_guest@6.16")
    g.addoption("--tsm-profile", metavar="NAME|PATH", help="profile to hold the tree to (default: by provider)")
    g.addoption("--tsm-check", metavar="GLOB", action="append",
                help="only checks whose id matches GLOB (repeatable: any of them)")
    g.addoption("--tsm-module", metavar="KO", help="tsm_test module file for the provider-lifecycle checks")
    g.addoption("--tsm-exclusive", action="store_true", help="collect nothing but tsm checks")
    g.addoption("--tsm-trust-anchor", action="append", metavar="PEM|emulator",
                help="trust anchor for format.signature.* (repeatable; `emulator`: the emulator's roots)")
    g.addoption("--tsm-seq-dir", metavar="DIR", help="write each failure's operations there as a .tsmseq")
    g.addoption("--tsm-ktap", metavar="PATH|-", help="write KTAP v1 results there (- for stdout)")
    g.addoption("--tsm-progress", action="store_true", help="one line per finished check area on stderr")
    g.addoption("--tsm-hypothesis-seed", type=int, metavar="N",
                help="seed of model.state_machine.* (default: random; the seed in use is logged)")
    parser.addini("tsm_hypothesis_seed", "default for --tsm-hypothesis-seed")
    parser.addini("tsm_any_filesystem", "default for --tsm-any-filesystem", type="bool", default=False)
    for name in _OPTS:
        parser.addini(name, f"default for --{name.replace('_', '-')}")


def _opt(config: pytest.Config, name: str) -> Any:
    return config.getoption(name) or config.getini(name) or None


def _active(config: pytest.Config) -> bool:
    """Only a --tsm-* option, a tsm_* ini key or the CLI's prepared state switch the plugin on."""
    return bool(config.pluginmanager.get_plugin(STATE_PLUGIN)) or any(_opt(config, n) for n in _OPTS) \
        or bool(config.getoption("tsm_exclusive")) or bool(config.getoption("tsm_module"))


_KEY = pytest.StashKey[TsmState]()
_EVIDENCE = pytest.StashKey[Any]()


def pytest_configure(config: pytest.Config) -> None:
    if not _active(config):
        return
    carrier = config.pluginmanager.get_plugin(STATE_PLUGIN)
    if carrier is not None:
        state = carrier.state
    else:
        any_fs = bool(config.getoption("tsm_any_filesystem") or config.getini("tsm_any_filesystem"))
        try:
            state = build_state(_opt(config, "tsm_root"), _opt(config, "tsm_emulate"), _opt(config, "tsm_profile"),
                                config.getoption("tsm_module"), config.getoption("tsm_trust_anchor"),
                                any_filesystem=any_fs)
        except SetupError as e:  # the opt-in under the name it has here
            raise pytest.UsageError(str(e).replace("--any-filesystem", "--tsm-any-filesystem")) from None
    config.stash[_KEY] = state
    _check_patterns(config)  # before any output: a typo is a usage error, not an empty KTAP plan
    seq_dir = config.getoption("tsm_seq_dir")
    if seq_dir and carrier is None and seq_dir_problem(seq_dir):  # the CLI checked a given one itself
        raise pytest.UsageError(seq_dir_problem(seq_dir))
    ktap = config.getoption("tsm_ktap")
    from .ktap import KtapReporter, open_stream
    import sys
    try:
        stream = open_stream(ktap) if ktap else None
    except OSError as e:
        raise pytest.UsageError(f"--tsm-ktap {ktap}: {e.strerror}") from None
    reporter = KtapReporter(stream, sys.stderr if config.getoption("tsm_progress") else None, key=ktap or "")
    config.pluginmanager.register(reporter, "tsm-ktap")
    config.pluginmanager.register(Completion(), "tsm-completion")
    reporter.diagnostics.append(f"tsm: {state.facts.target}, provider {state.facts.provider}, profile "
                                f"{state.profile.name}, kernel {state.facts.kernel_release}")
    if state.tree.kind in ("live", "fuse", "foreign"):  # the kernel under the tree: taint and dmesg across the run
        from .kernlog import KernelEvidence
        ev = KernelEvidence()
        ev.start()
        config.stash[_EVIDENCE] = ev
    seed = config.getoption("tsm_hypothesis_seed")
    seed = seed if seed is not None else (config.getini("tsm_hypothesis_seed") or None)
    if seed is not None:
        from .checks import statemachine
        statemachine.SEED = int(seed)


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash.get(_KEY, None)
    if state is None:
        return
    try:
        from _pytest.junitxml import xml_key  # the suite properties of --junitxml
        xml = session.config.stash.get(xml_key, None)
    except ImportError:  # pragma: no cover - older/newer pytest layout
        xml = None
    if xml is not None:
        for k, v in properties(state).items():
            xml.add_global_property(k, v)


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


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(_KEY, None)
    if state is None:
        return None
    return [f"tsm: {state.facts.target}, provider {state.facts.provider}, profile {state.profile.name} "
            f"({state.profile.path}), kernel {state.facts.kernel_release}"]


def pytest_ignore_collect(collection_path: Any, config: pytest.Config) -> bool | None:
    return True if config.getoption("tsm_exclusive") else None


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


class ProfileCollector(pytest.Collector):
    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
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
    text = format_tsmseq(f.sequence)  # type: ignore[arg-type]
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{f.check_id}-{hashlib.sha1(text.encode()).hexdigest()[:8]}.tsmseq")
    with open(path, "w") as fh:
        fh.write(text)
    return path


class HarnessError(Exception):
    """The check could not run (broken target or harness): reported as a pytest error."""


class CheckItem(pytest.Item):
    def __init__(self, *, check: Check, state: TsmState, **kw: Any) -> None:
        super().__init__(**kw)
        self.check, self.state = check, state
        self.result = None

    def setup(self) -> None:
        # The check runs here so that a broken harness surfaces as an error, not a failure.
        self.result = self.state.session.execute(self.check)
        if self.result.outcome == Outcome.ERROR:
            raise HarnessError(f"{self.check.id}: could not run: {self.result.reason}")

    def runtest(self) -> None:
        r = self.result
        assert r is not None
        if r.outcome in (Outcome.SKIP_NA, Outcome.SKIP_UNSUPPORTED):
            # report the check, not this line, as the skip's location
            raise pytest.skip.Exception(r.reason, _use_item_location=True)
        if r.outcome == Outcome.FAIL:
            assert r.failure is not None
            out = self.config.getoption("tsm_seq_dir")
            if out and r.failure.sequence is not None:
                try:
                    r.failure.sequence_path = write_sequence(out, r.failure)
                except OSError as e:  # the failure itself must still be reported in full
                    r.failure.ops = [*r.failure.ops, f"# could not write its .tsmseq to {out}: {e.strerror}"]
            raise r.failure

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, TsmFailure):
            return render_failure(excinfo.value)
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, 0, f"{self.check.id}: {self.check.rule}"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(_KEY, None)
    if state is None:
        return
    from pathlib import Path
    col = ProfileCollector.from_parent(session, name=f"tsm/{state.profile.name}",
                                       nodeid=f"tsm/{state.profile.name}", path=Path(state.profile.path))
    for node in col.collect():
        items.extend(node.collect())  # type: ignore[union-attr]
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
        try:
            from _pytest.junitxml import xml_key
            xml = self.config.stash.get(xml_key, None)
        except ImportError:  # pragma: no cover
            xml = None
        for k, v in ev.properties().items():
            if xml is not None:
                xml.add_global_property(k, v)
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
    def _report(hook: Any, item: pytest.Item, when: str, outcome: str = "passed", longrepr: Any = None,
                why: str | None = None) -> None:
        """One phase's report through pytest's own hook (JUnit, KTAP and the terminal all see it)."""
        from _pytest.reports import TestReport
        props = [("tsm.not_run", why)] if why is not None else []
        hook.pytest_runtest_logreport(report=TestReport(item.nodeid, item.location, {}, outcome, longrepr, when,
                                                        user_properties=props))

    def _kernel_log(self, item: "KernelLogItem", hook: Any) -> None:
        """Run the kernel-log item outside pytest's runtest protocol (after an interrupt pytest has
        already stopped its capturing, which that protocol needs), reporting it the same way."""
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
