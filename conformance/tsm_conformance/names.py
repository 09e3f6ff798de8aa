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

# <prefix><pid or tag>-<anything>: a bare "tsmct-x" is not ours (someone else's name, kept by clean)
_OURS = re.compile(r"^(?:%s)[A-Za-z0-9_]+-." % "|".join(re.escape(p) for p in PREFIXES))
_PID = re.compile(r"^(?:tsmct|tsmfz|tsmrp)-(\d+)-")  # tsmdf-, tsmbf- carry no pid


def ours(name: str) -> bool:
    """True for a name one of our tools made."""
    return _OURS.match(name) is not None


def owner_pid(name: str) -> int | None:
    """The pid in ``<prefix><pid>-<n>``, if the name carries one."""
    m = _PID.match(name)
    return int(m.group(1)) if m else None
