"""Parser target: AMD SEV-SNP ATTESTATION_REPORT (sev_guest outblob);
any exception other than ParseError is a crash (see tsm_fuzz.parsers)."""

from __future__ import annotations

from .. import parsers

NAME = "parse_snp"
DESCRIPTION = "parser of AMD SEV-SNP ATTESTATION_REPORT (sev_guest outblob): only ParseError on any input"
FORMAT = "snp"
INSTRUMENT = ("tsm_conformance.formats.snp", "tsm_conformance.formats.base")
make = parsers.make(FORMAT, NAME)


def unavailable() -> str | None:
    return parsers.unavailable(FORMAT)
