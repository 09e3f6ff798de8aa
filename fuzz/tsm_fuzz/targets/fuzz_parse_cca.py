"""Parser target: Arm CCA attestation token (arm_cca_guest outblob);
any exception other than ParseError is a crash (see tsm_fuzz.parsers)."""

from __future__ import annotations

from .. import parsers

NAME = "parse_cca"
DESCRIPTION = "parser of Arm CCA attestation token (arm_cca_guest outblob): only ParseError on any input"
FORMAT = "cca"
INSTRUMENT = ("tsm_conformance.formats.cca", "tsm_conformance.formats.base")
make = parsers.make(FORMAT, NAME)


def unavailable() -> str | None:
    return parsers.unavailable(FORMAT)
