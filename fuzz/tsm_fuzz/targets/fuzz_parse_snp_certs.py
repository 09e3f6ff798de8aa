"""Parser target: SEV-SNP GHCB certificate table (sev_guest auxblob);
any exception other than ParseError is a crash (see tsm_fuzz.parsers)."""

from __future__ import annotations

from .. import parsers

NAME = "parse_snp_certs"
DESCRIPTION = "parser of SEV-SNP GHCB certificate table (sev_guest auxblob): only ParseError on any input"
FORMAT = "snp-certs"
INSTRUMENT = ("tsm_conformance.formats.snp_certs", "tsm_conformance.formats.base")
make = parsers.make(FORMAT, NAME)


def unavailable() -> str | None:
    return parsers.unavailable(FORMAT)
