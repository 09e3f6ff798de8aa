"""Parser target: SVSM services manifest (sev_guest-svsm manifestblob);
any exception other than ParseError is a crash (see tsm_fuzz.parsers)."""

from __future__ import annotations

from .. import parsers

NAME = "parse_svsm"
DESCRIPTION = "parser of SVSM services manifest (sev_guest-svsm manifestblob): only ParseError on any input"
FORMAT = "svsm-manifest"
INSTRUMENT = ("tsm_conformance.formats.svsm", "tsm_conformance.formats.base")
make = parsers.make(FORMAT, NAME)


def unavailable() -> str | None:
    return parsers.unavailable(FORMAT)
