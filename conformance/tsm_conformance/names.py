"""The report-item name prefixes this project creates, in one place.

Every tool that makes report items on a tree names them ``<prefix><pid>-<n>`` (or
``<prefix><tag>-<n>``), so a run killed with SIGKILL leaves only names `tsm-conformance clean`
recognises, and ``clean`` never touches anything else.
"""

from __future__ import annotations

import os
import re

RUN = "tsmct-"  # tsm-conformance run: checks and the probe
FUZZ = "tsmfz-"  # tsm-conformance fuzz
REPLAY = "tsmrp-"  # tsm-conformance replay
DIFFERENTIAL = "tsmdf-"  # tsm-conformance vm --differential
BENCH_FUZZ = "tsmbf-"  # benchmarks/fuzz.py
BENCH_RUN = "tsmbn-"  # benchmarks/full_run.py, benchmarks/running.py

#: prefix -> who makes it.  Tests that use other prefixes (tsmt-, tsmfzt-) only touch in-process
#: emulated trees, which vanish with their process.
PREFIXES: dict[str, str] = {
    RUN: "tsm-conformance run (checks, probe)",
    FUZZ: "tsm-conformance fuzz",
    REPLAY: "tsm-conformance replay",
    DIFFERENTIAL: "tsm-conformance vm --differential",
    BENCH_FUZZ: "benchmarks/fuzz.py",
    BENCH_RUN: "benchmarks/full_run.py",
}

_WITH_PID = (RUN, FUZZ, REPLAY)  # <prefix><pid>-<n...>; the others: <prefix><tag or n...>
# a bare "tsmct-x" is not ours (someone else's name: clean keeps it)
_WITH_PID_ALT = "|".join(re.escape(p) for p in _WITH_PID)
_OTHERS_ALT = "|".join(re.escape(p) for p in PREFIXES if p not in _WITH_PID)
_OURS = re.compile(rf"^(?:(?:{_WITH_PID_ALT})\d+-.|(?:{_OTHERS_ALT})[A-Za-z0-9_.-]+$)")
_PID = re.compile(rf"^(?:{_WITH_PID_ALT})(\d+)-")  # the others carry no pid


def with_pid(prefix: str, pid: int | None = None) -> str:
    """``<prefix><pid>-``: the names one process makes (``pid`` defaults to this process)."""
    return f"{prefix}{os.getpid() if pid is None else pid}-"


def ours(name: str) -> bool:
    """True for a name one of our tools made."""
    return _OURS.match(name) is not None


def owner_pid(name: str) -> int | None:
    """The pid in ``<prefix><pid>-<n>``, if the name carries one."""
    m = _PID.match(name)
    return int(m.group(1)) if m else None
