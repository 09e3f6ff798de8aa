"""Outcome taxonomy and the exceptions checks raise.  Formatting lives in report_text.py."""

from __future__ import annotations

from dataclasses import dataclass, field


class Outcome:
    PASS = "pass"
    FAIL = "fail"
    SKIP_NA = "skip-not-applicable"
    SKIP_UNSUPPORTED = "skip-unsupported"
    XFAIL = "xfail"
    XPASS = "xpass"
    ERROR = "error"


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


class NotApplicable(Exception):
    """The profile says the check does not apply (attribute not shown by this provider, ...)."""


class Unsupported(Exception):
    """The target cannot exercise the check (e.g. a 64-bit generation counter cannot wrap)."""


class TsmError(Exception):
    """The harness, environment or target setup broke; never a pass or a skip."""
