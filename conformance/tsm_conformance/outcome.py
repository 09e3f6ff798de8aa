"""Outcome taxonomy, how each outcome shows (``FACES``), and the exceptions checks raise.
Formatting lives in report_text.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple


class Outcome(Enum):
    """What became of one check (or, under pytest, of one test item)."""

    PASS = "pass"
    FAIL = "fail"  # an ABI violation (TsmFailure)
    TIMEOUT = "timeout"  # a failure whose observation is that an operation never returned in time
    ERROR = "error"  # the check could not run (harness, environment, a tree that went away)
    SKIP_NA = "skip-not-applicable"  # the profile says the check does not apply
    SKIP_UNSUPPORTED = "skip-unsupported"  # the target cannot exercise it
    NOT_RUN = "not-run"  # never started (or stopped): a hang, a budget, an interrupt, -x
    SKIP = "skip"  # a plain pytest skip of a test that is not a check (the plugin beside other tests)
    XFAIL = "xfail"  # failed, and the profile expects it to (expected_failures)
    KNOWN = "known"  # failed, and a --baseline entry says it is a known failure here (not counted against the run)
    XPASS = "xpass"  # passed although expected to fail; strict, as the suite's expectations are: a failure
    XPASS_NONSTRICT = "xpass-nonstrict"  # the same under a non-strict xfail mark (not a check's)

    def expected_to_fail(self) -> Outcome:
        """This outcome when the profile lists the check as an expected failure (strict)."""
        if self in (Outcome.FAIL, Outcome.TIMEOUT):
            return Outcome.XFAIL
        return Outcome.XPASS if self is Outcome.PASS else self


class Verdict(NamedTuple):
    """An outcome with the one line that goes with it (the skip or xfail reason, the error's
    cause, the operation that hung); the plugin attaches one to each pytest report that decides
    an outcome (plugin.verdict_of)."""

    outcome: Outcome
    reason: str = ""


@dataclass(frozen=True)
class Face:
    """How one outcome shows, everywhere: the one table KTAP, the per-area table, pytest (hence
    JUnit) and the exit status are derived from."""

    column: str  # the KTAP "# Totals:" and per-area table column (COLUMNS)
    ok: bool  # KTAP "ok"; "not ok" lines carry the failure text as diagnostics
    directive: str  # KTAP directive word ("" for none); its text is the verdict's reason
    pytest: str  # how a check reports it to pytest, hence its JUnit element: passed, failed, error, skipped
    fails_run: bool  # exit status 1
    ran: bool  # an applicable check ran (with none, and no failure: exit 4, nothing applicable ran)
    junit_property: str = ""  # a JUnit testcase property holding why (a check a stopped run never reached)


#: Totals and per-area table columns, in order.  ``fail`` includes TIMEOUT and XPASS(strict), which
#: kselftest counts as failures, as JUnit does: JUnit failures = fail + xpass, errors = error,
#: skipped = skip + xfail.
COLUMNS = ("pass", "fail", "xfail", "xpass", "skip", "error")

_SKIPPED = Face("skip", True, "SKIP", "skipped", fails_run=False, ran=False)
FACES: dict[Outcome, Face] = {
    Outcome.PASS: Face("pass", True, "", "passed", fails_run=False, ran=True),
    Outcome.FAIL: Face("fail", False, "", "failed", fails_run=True, ran=True),
    Outcome.TIMEOUT: Face("fail", False, "TIMEOUT", "failed", fails_run=True, ran=True),
    Outcome.ERROR: Face("error", False, "ERROR", "error", fails_run=True, ran=False),
    Outcome.SKIP_NA: _SKIPPED,
    Outcome.SKIP_UNSUPPORTED: _SKIPPED,
    Outcome.SKIP: _SKIPPED,
    Outcome.NOT_RUN: Face("skip", True, "SKIP", "skipped", fails_run=False, ran=False, junit_property="tsm.not_run"),
    Outcome.XFAIL: Face("xfail", True, "XFAIL", "skipped", fails_run=False, ran=True),
    # a baseline's known failure: JUnit skipped and KTAP "# SKIP known: <reason>", the failure kept
    # as evidence (the testcase property), the run not failed
    Outcome.KNOWN: Face("skip", True, "SKIP", "skipped", fails_run=False, ran=True, junit_property="tsm.known"),
    # pytest's xfail machinery turns a check's pass into these (the plugin marks expected failures strict)
    Outcome.XPASS: Face("fail", False, "", "failed", fails_run=True, ran=True),
    # pytest reports a non-strict XPASS as passed, so JUnit counts it as a pass where KTAP says not ok
    Outcome.XPASS_NONSTRICT: Face("xpass", False, "", "passed", fails_run=True, ran=True),
}


def run_result(checks: Iterable[Outcome], evidence: Iterable[Outcome] = ()) -> str:
    """"fail" (exit 1), "nothing-ran" (exit 4) or "ok" (exit 0) for the outcomes of a run's
    checks; ``evidence`` (the kernel-log item) can fail a run but is no applicable check that ran."""
    checks = list(checks)
    if any(FACES[o].fails_run for o in [*checks, *evidence]):
        return "fail"
    return "ok" if any(FACES[o].ran for o in checks) else "nothing-ran"


@dataclass
class TsmFailure(Exception):
    """An ABI violation: what the profile expects versus what the tree did."""

    check_id: str
    rule: str
    expected: str
    observed: str
    profile_ref: str  # "file:line keypath"
    ops: list[str] = field(default_factory=list)
    target: str = ""
    kernel: str = ""
    sequence: object = None  # seq.Sequence of the operations up to the failure
    sequence_path: str = ""  # where it was written, if it was

    def __str__(self) -> str:
        return f"{self.check_id}: {self.rule}"

    @property
    def timed_out(self) -> bool:
        """A deadline verdict (Outcome.TIMEOUT): an operation or a wait never returned in time.  The
        runner's watchdog says so, and a check with its own deadline (concurrency's join) states it
        the same way, as an observation beginning "hung"."""
        return self.observed.startswith("hung")


class NotApplicable(Exception):
    """The profile says the check does not apply (attribute not shown by this provider, ...)."""


class Unsupported(Exception):
    """The target cannot exercise the check (e.g. a 64-bit generation counter cannot wrap)."""


class NotRun(Unsupported):
    """The run stopped this check before its verdict (a report budget used up during it)."""


class TsmError(Exception):
    """The harness, environment or target setup broke; never a pass or a skip."""
