"""The report-item name prefixes this project creates, in one place.

Every tool that makes report items on a tree names them ``<prefix><pid>-<n>`` (or
``<prefix><tag>-<n>``), so a run killed with SIGKILL leaves only names `tsm-conformance clean`
recognises, and ``clean`` never touches anything else.
"""

from __future__ import annotations

import re

#: prefix -> who makes it.  Tests that use other prefixes (tsmt-, tsmfzt-) only touch in-process
#: emulated trees, which vanish with their process.
PREFIXES: dict[str, str] = {
    "tsmct-": "tsm-conformance run (checks, probe)",
    "tsmfz-": "tsm-conformance fuzz",
    "tsmrp-": "tsm-conformance replay",
    "tsmdf-": "tsm-conformance vm --differential",
    "tsmbf-": "benchmarks/fuzz.py",
    "tsmbn-": "benchmarks/full_run.py",
}

_WITH_PID = ("tsmct-", "tsmfz-", "tsmrp-")  # <prefix><pid>-<n...>; the others: <prefix><tag or n...>
# a bare "tsmct-x" is not ours (someone else's name: clean keeps it)
_OURS = re.compile(r"^(?:(?:%s)\d+-.|(?:%s)[A-Za-z0-9_.-]+$)" % (
    "|".join(re.escape(p) for p in _WITH_PID), "|".join(re.escape(p) for p in PREFIXES if p not in _WITH_PID)))
_PID = re.compile(r"^(?:tsmct|tsmfz|tsmrp)-(\d+)-")  # tsmdf-, tsmbf-, tsmbn- carry no pid


def ours(name: str) -> bool:
    """True for a name one of our tools made."""
    return _OURS.match(name) is not None


def owner_pid(name: str) -> int | None:
    """The pid in ``<prefix><pid>-<n>``, if the name carries one."""
    m = _PID.match(name)
    return int(m.group(1)) if m else None
