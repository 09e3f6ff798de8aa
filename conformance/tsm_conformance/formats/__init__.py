"""Attestation report formats: one parser module per format, each the only place that knows its
layout.  Parsers raise `ParseError` for malformed input and never any other exception.

They never import the emulator: the emulator's report builders (`emulator/reports/`) are a second,
independent encoding of the same specifications, so a round trip between them tests both.
"""
