"""Parser target: Intel TDX quote v4/v5 (tdx_guest outblob);
any exception other than ParseError is a crash (see tsm_fuzz.parsers)."""

from __future__ import annotations

from .. import parsers

NAME = "parse_tdx"
DESCRIPTION = "parser of Intel TDX quote v4/v5 (tdx_guest outblob): only ParseError on any input"
FORMAT = "tdx"
INSTRUMENT = ("tsm_conformance.formats.tdx", "tsm_conformance.formats.base")
make = parsers.make(FORMAT, NAME)


def unavailable() -> str | None:
    return parsers.unavailable(FORMAT)
