"""The length a report declares for itself, per report layout (for reads that must be one whole
report: a read of another length was truncated or padded, e.g. by the size-then-fill race).

The tsm_test layout is the profile's (profiles/tsm_test.yaml: u32 total length at 0x08); the
report formats' own layouts are known in one place, ``formats/`` (which never imports the
emulator, so the oracle stays independent of it).  CCA tokens are self-delimiting CBOR: None.
"""

from __future__ import annotations

from ..formats import snp, tdx
from ..profile.model import Profile


def declared_length(profile: Profile, blob: bytes) -> int | None:
    """The report's own idea of its length, or None where the layout has none (or is too short
    to say: the profile's minimum length rule covers that)."""
    if profile.provider == "tsm_test":
        return int.from_bytes(blob[0x08:0x0C], "little") if len(blob) >= 0x0C else None
    if profile.report_format == "snp":
        return snp.REPORT_SIZE
    if profile.report_format == "tdx":
        return tdx.declared_length(blob)
    return None
