"""KTAP output, per-area progress and the per-area summary of a run (a pytest plugin object).

KTAP v1 as Documentation/dev-tools/ktap.rst defines it, shaped like a kselftest run:

    KTAP version 1
    1..A                               one top-level test per check area, in collection order
      KTAP version 1                   each area is a subtest, indented two spaces
      1..n
      # <failure text, one diagnostic line each>
      not ok 1 inblob.oversize.efbig
      ok 2 inblob.pwrite.zero_fills_gap # SKIP unsupported: ...
      ok 3 ... # XFAIL <tracker> <reason>
      not ok 4 ... # ERROR <why it could not run>
      not ok 5 ... # TIMEOUT hung: <operation> ...    (an operation past --op-timeout)
    not ok 1 inblob
    # Totals: pass:P fail:F xfail:X xpass:XP skip:S error:E

Descriptions are check ids (never containing ``#``).  Lines are written as results arrive (the
plan is known after collection), so a kselftest runner's timeout still leaves a parsable prefix.
Each line, its directive and its Totals column come from the report's typed verdict
(outcome.Verdict, attached by the plugin: plugin.pytest_runtest_makereport) through
``outcome.FACES``, the table JUnit and the exit status follow too: failures = fail + xpass,
errors = error, skipped = skip + xfail.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

import pytest

from .outcome import COLUMNS, FACES, Outcome, Verdict

#: the report attribute holding its verdict (None: the phase decides nothing, e.g. a passed setup),
#: as [outcome value, reason]: plain data, as reports are serialized (pytest-xdist)
VERDICT = "tsm_verdict"
#: the JUnit testcase property of a check a stopped run never reached: why it stopped
NOT_RUN_PROPERTY = FACES[Outcome.NOT_RUN].junit_property


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("#", "(hash)")


def _skip_reason(report: Any) -> str:
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        r = str(lr[2])
        return r[len("Skipped: "):] if r.startswith("Skipped: ") else r
    return str(lr or "")


def _cause(report: Any) -> str:
    """An error's one-line cause: the exception message (``reprcrash``), not the first line of
    pytest's traceback text (which may be a source line or a repr header)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    msg = getattr(crash, "message", None)
    if msg:
        return str(msg).splitlines()[0]
    text = str(report.longrepr or "").strip()
    return text.splitlines()[0] if text else ""


def report_verdict(report: Any, raised: bool = True) -> Verdict | None:
    """The verdict a phase's report decides, from what pytest put in it (any test item; the plugin
    refines a check's with its result); None for a phase that decides nothing (a passed setup or
    teardown).  ``raised``: whether the phase raised (pytest's strict XPASS is a failed call that
    did not)."""
    if report.when == "setup":
        if report.failed:
            return Verdict(Outcome.ERROR, _cause(report))
        return Verdict(Outcome.SKIP, _skip_reason(report)) if report.skipped else None
    if report.when == "teardown":
        return Verdict(Outcome.ERROR, "teardown failed") if report.failed else None
    wasxfail = getattr(report, "wasxfail", None)  # pytest's: set on xfail and non-strict xpass reports
    if report.skipped:
        return Verdict(Outcome.SKIP, _skip_reason(report)) if wasxfail is None else Verdict(Outcome.XFAIL, wasxfail)
    if report.failed:
        return Verdict(Outcome.FAIL if raised else Outcome.XPASS)
    return Verdict(Outcome.PASS) if wasxfail is None else Verdict(Outcome.XPASS_NONSTRICT, wasxfail)


def attach(report: Any, verdict: Verdict | None) -> None:
    """Give ``report`` its verdict (plugin.pytest_runtest_makereport, plugin.Completion)."""
    setattr(report, VERDICT, None if verdict is None else [verdict.outcome.value, verdict.reason])


def verdict_of(report: Any) -> Verdict | None:
    """The verdict attached to ``report``, or for a report made elsewhere (another plugin's), the
    one its pytest outcome gives."""
    v = report.__dict__.get(VERDICT, ...)
    if v is ...:
        return report_verdict(report)
    return None if v is None else Verdict(Outcome(v[0]), v[1])


class KtapReporter:
    """Registered by the plugin when --tsm-ktap or --tsm-progress is given (the CLI does both)."""

    def __init__(self, out: IO[str] | None, progress: IO[str] | None = None, summary: bool = True,
                 key: str = "") -> None:
        self.key = key  # --ktap's value: STARTED records that this destination got its header
        self.write_error = ""  # why KTAP output stopped (reported once, at the end)
        self.out, self.progress, self.summary = out, progress, summary
        self.areas: list[str] = []
        self.items: dict[str, list[str]] = {}  # area -> nodeids in order
        self.area_of: dict[str, str] = {}
        self.name_of: dict[str, str] = {}
        self.result: dict[str, tuple[Verdict, str]] = {}  # nodeid -> its verdict, failure text
        self.counts: dict[str, dict[str, int]] = {}
        self.started: set[str] = set()
        self.finished: set[str] = set()
        self.t_area: dict[str, float] = {}
        self.not_run = 0  # planned checks that never ran (an interrupted or -x run)
        self.stop_why = ""  # ... and why
        self.terminal: Any = None  # pytest's terminal reporter (progress lines share its screen)
        self.tw: Any = None  # ... and its terminal writer (Config.get_terminal_writer)
        self.diagnostics: list[str] = []  # run-level lines (target, kernel, taint, dmesg) before Totals

    # ------------------------------------------------------------ output
    def _w(self, line: str, depth: int = 0) -> None:
        if self.out is not None:
            try:
                self.out.write("  " * depth + line + "\n")
                self.out.flush()
            except OSError as e:  # a full disk must not turn the run into a traceback: say so at the end
                self.out, self.write_error = None, e.strerror or str(e)

    def diag(self, text: str, depth: int = 0) -> None:
        for ln in str(text).splitlines():
            self._w(f"# {ln}".rstrip(), depth)

    # ------------------------------------------------------------ hooks
    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.config.option.collectonly:  # nothing will run: no KTAP, no table
            self.out, self.summary, self.progress = None, False, None
            return
        for item in session.items:
            area = item.parent.name if item.parent is not None else "tsm"
            if area not in self.items:
                self.areas.append(area)
                self.items[area] = []
            self.items[area].append(item.nodeid)
            self.area_of[item.nodeid] = area
            self.name_of[item.nodeid] = item.name
        self._w("KTAP version 1")
        STARTED.add(self.key)
        self._w(f"1..{len(self.areas)}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nid = report.nodeid
        if nid not in self.area_of:
            return
        area = self.area_of[nid]
        if area not in self.started:
            self.started.add(area)
            self.t_area[area] = time.monotonic()
            self._w("KTAP version 1", 1)
            self._w(f"1..{len(self.items[area])}", 1)
        why = dict(report.user_properties).get(NOT_RUN_PROPERTY) if report.when == "setup" else None
        if why is not None:  # plugin.Completion: a planned check the run never reached
            self.not_run += 1
            self.stop_why = str(why)
        v = verdict_of(report)
        if v is not None and (nid not in self.result or v.outcome is Outcome.ERROR):
            text = str(report.longrepr or "")
            self.result[nid] = v, text or (f"XPASS {v.reason}" if v.outcome is Outcome.XPASS_NONSTRICT else "")
        if report.when == "teardown":
            self._emit(nid)

    def _emit(self, nid: str) -> None:
        area = self.area_of[nid]
        v, text = self.result.setdefault(nid, (Verdict(Outcome.ERROR, "no result"), ""))
        face = FACES[v.outcome]
        n = self.items[area].index(nid) + 1
        if text and not face.ok:
            self.diag(text, 1)
        directive = f" # {face.directive} {_one_line(v.reason)}" if face.directive else ""
        self._w(f"{'ok' if face.ok else 'not ok'} {n} {self.name_of[nid]}{directive}", 1)
        self.counts.setdefault(area, dict.fromkeys(COLUMNS, 0))[face.column] += 1
        self.finished.add(nid)
        if all(x in self.finished for x in self.items[area]):
            self._end_area(area)

    def _end_area(self, area: str) -> None:
        c = self.counts.get(area, dict.fromkeys(COLUMNS, 0))
        i = self.areas.index(area) + 1
        bad = c["fail"] + c["xpass"] + c["error"]
        if bad:
            self._w(f"not ok {i} {area}")
        elif c["skip"] == sum(c.values()):
            self._w(f"ok {i} {area} # SKIP every check skipped")
        else:
            self._w(f"ok {i} {area}")
        if self.progress is not None:
            took = time.monotonic() - self.t_area.get(area, time.monotonic())
            parts = ", ".join(f"{v} {k}" for k, v in c.items() if v)
            self._progress_line(f"tsm: [{i}/{len(self.areas)}] {area}: {parts} ({took:.1f} s)")

    def _progress_line(self, line: str) -> None:
        """On its own line: where pytest's dots share the screen with it (pytest writes to the same
        stream, or to the same terminal), through pytest's terminal writer, which ends its line first."""
        tr, tw = self.terminal, self.tw
        # The writer's stream has no public name (TerminalWriter keeps it as _file): without it,
        # the line goes to the progress stream as it is.
        tw_file = getattr(tw, "_file", None)
        if tr is not None and tw_file is not None and _same_screen(tw_file, self.progress):
            if tw.width_of_current_line:  # -q dots: pytest has no newline pending
                tw.line()
            tr.write_line(line)
            return
        assert self.progress is not None
        self.progress.write(line + "\n")
        self.progress.flush()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.terminal = session.config.pluginmanager.get_plugin("terminalreporter")
        self.tw = session.config.get_terminal_writer() if self.terminal is not None else None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.out is not None and self.key not in STARTED:  # stopped before collection ended: no plan
            for line in _bail_out_lines("run interrupted before the checks were collected"):
                self._w(line)
            STARTED.add(self.key)
            self.out = None  # nothing may follow a bail-out
            return
        # The plan promised every item: one without a result still gets its line.
        for area in self.areas:
            todo = [nid for nid in self.items[area] if nid not in self.finished]
            if not todo:
                continue
            if area not in self.started:
                self.started.add(area)
                self._w("KTAP version 1", 1)
                self._w(f"1..{len(self.items[area])}", 1)
            for nid in todo:  # plugin.Completion reports every planned check: this is "ERROR no result"
                self._emit(nid)
        t = self.totals()
        for d in self.diagnostics:
            self.diag(d)
        if self.not_run:
            self._w(f"# {self.stop_why}: the {self.not_run} checks not run are reported as SKIP not-run")
        self._w("# Totals: " + " ".join(f"{k}:{t[k]}" for k in COLUMNS))

    def outcomes(self) -> dict[str, Outcome]:
        """Each item's outcome (nodeid -> Outcome), as KTAP and the table count it (cli: the exit status)."""
        return {nid: v.outcome for nid, (v, _) in self.result.items()}

    def totals(self) -> dict[str, int]:
        t = dict.fromkeys(COLUMNS, 0)
        for c in self.counts.values():
            for k, v in c.items():
                t[k] += v
        return t

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """The per-area table, after pytest's own final line (so it is the last thing shown)."""
        if self.write_error:
            print(f"tsm-conformance: KTAP output to {self.key} stopped: {self.write_error}", file=sys.stderr)
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if not self.summary or not self.counts or tr is None:
            return
        tr.write_sep("-", "tsm summary per area")
        tr.write_line(f"{'area':14} " + " ".join(f"{k:>5}" for k in COLUMNS))
        for area in self.areas:
            c = self.counts.get(area)
            if c:
                tr.write_line(f"{area:14} " + " ".join(f"{c[k]:5}" for k in COLUMNS))
        t = self.totals()
        tr.write_line(f"{'total':14} " + " ".join(f"{t[k]:5}" for k in COLUMNS))
        if self.not_run:
            tr.write_line(f"{self.stop_why}: {self.not_run} of the skipped checks did not run")


#: --ktap destinations whose KTAP header was written in this process (see bail_out)
STARTED: set[str] = set()
#: --ktap files this process has opened for writing (replaced): only the run that started does
OPENED: set[str] = set()


def _bail_out_lines(why: str, skip: bool = False) -> list[str]:
    """A KTAP document with no tests: an aborted run, or (``skip``) nothing to test here."""
    why = " ".join(why.replace("#", " ").split())
    # A SKIP reason becomes a result name in kernel CI databases (Linaro's KTAP parser appends it to
    # the test name): keep it short and fixed, and put the detail on a diagnostic line.
    if skip:
        return ["KTAP version 1", f"1..0 # SKIP {SKIP_ABSENT}", f"# {why}"]
    return ["KTAP version 1", "1..0", f"Bail out! {why}"]


#: the one SKIP reason of a machine with no configfs-tsm to test (kselftest's KSFT_SKIP)
SKIP_ABSENT = "no configfs-tsm"


def bail_out(path: str, why: str, skip: bool = False) -> None:
    """KTAP for a run that ended before its checks were collected (a set-up error, an interrupt
    during start-up): a parser still gets a document, with a "Bail out!" saying why (KTAP's abort
    line), or with ``skip`` a skipped empty plan (no configfs-tsm here: kselftest's KSFT_SKIP).

    KTAP on stdout always gets it; a file only when the run had started (its KTAP reporter opened
    the file): a run refused before that (bad arguments, a set-up error, an interrupt while
    probing) leaves an existing file as it was, as it leaves --junit's."""
    if path in STARTED or path != "-" and path not in OPENED:
        return
    try:
        out = open_stream(path)
        out.write("".join(line + "\n" for line in _bail_out_lines(why, skip)))
        out.flush()
        if path != "-":
            out.close()
    except OSError:
        pass
    STARTED.add(path)


def _same_screen(a: Any, b: Any) -> bool:
    """Whether two streams end up on the same screen: the same object, or one terminal."""
    if a is b or getattr(a, "_stream", None) is b or getattr(b, "_stream", None) is a:
        return True
    try:
        fa, fb = os.fstat(a.fileno()), os.fstat(b.fileno())
        return a.isatty() and b.isatty() and (fa.st_dev, fa.st_ino, fa.st_rdev) == (fb.st_dev, fb.st_ino, fb.st_rdev)
    except (AttributeError, OSError, ValueError):
        return False


def open_stream(path: str) -> IO[str]:
    """``-``: the process's real stdout (``run --format ktap`` points sys.stdout at stderr for pytest)."""
    if path == "-":
        from .pipes import pipe_safe
        return pipe_safe(sys.__stdout__ or sys.stdout)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)  # as pytest does for --junitxml
    out = open(path, "w", encoding="utf-8")  # noqa: SIM115 (the caller's stream, closed by it)
    OPENED.add(path)
    return out
