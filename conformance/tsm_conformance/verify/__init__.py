"""Signature and chain verification of parsed reports (with `cryptography`).

Results are per step: `pass`, `fail`, or `unsupported` (no trust anchor given, or the report
does not carry what the step needs).  Without anchors a trust step is never `pass`.
"""
