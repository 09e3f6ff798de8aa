"""One entry point over the per-format verifiers (for the checks and `inspect`)."""

from __future__ import annotations

from typing import Any

from .base import TrustAnchors, Verification

#: The step that checks the report's own signature (by the key it names), per format.
SIGNATURE_STEP = {"snp": "report.signature", "tdx": "quote.signature", "cca": "realm.signature"}

def verify(fmt: str, parsed: Any, anchors: TrustAnchors, certs: Any = None) -> Verification:
    """Verify a parsed report of format `fmt`; `certs` is the parsed SNP certificate table."""
    if fmt == "snp":
        from .snp import verify_report
        return verify_report(parsed, certs, anchors)
    if fmt == "tdx":
        from .tdx import verify_quote
        return verify_quote(parsed, anchors)
    if fmt == "cca":
        from .cca import verify_token
        return verify_token(parsed, anchors)
    raise KeyError(f"no verifier for format {fmt!r}")
