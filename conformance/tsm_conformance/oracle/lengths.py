"""The length a report declares for itself, per report layout (for reads that must be one whole
report: a read of another length was truncated or padded, e.g. by the size-then-fill race).

Sources: the tsm_test layout in profiles/tsm_test.yaml (u32 total length at 0x08); the SEV-SNP
ATTESTATION_REPORT is 0x4A0 bytes in every version (abi.md §5.1); a TDX quote ends with its signed
data, whose u32 size follows the body (v4: at 0x278, abi.md §5.2; v5: after the typed body).  CCA
tokens are self-delimiting CBOR: not decoded here (None).
"""

from __future__ import annotations

from ..profile.model import Profile


def declared_length(profile: Profile, blob: bytes) -> int | None:
    """The report's own idea of its length, or None where the layout has none (or is too short
    to say: the profile's minimum length rule covers that)."""
    u32 = lambda off: int.from_bytes(blob[off:off + 4], "little") if len(blob) >= off + 4 else None  # noqa: E731
    if profile.provider == "tsm_test":
        return u32(0x08)
    if profile.report_format == "snp":
        return 0x4A0
    if profile.report_format == "tdx" and len(blob) >= 2:
        version = int.from_bytes(blob[0:2], "little")
        if version == 4:
            n = u32(0x278)
            return None if n is None else 0x27C + n
        if version == 5:
            body = u32(0x32)
            n = None if body is None else u32(0x36 + body)
            return None if n is None or body is None else 0x36 + body + 4 + n
    return None
