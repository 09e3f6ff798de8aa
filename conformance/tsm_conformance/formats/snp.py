"""AMD SEV-SNP ATTESTATION_REPORT (the sev_guest outblob): the one place that knows its layout.

Sources: AMD "SEV Secure Nested Paging Firmware ABI Specification" (document 56860), the
ATTESTATION_REPORT structure table (rev. 1.55: report version 2; 1.57: version 3, adding the CPUID
bytes; 1.58: version 5, adding the mitigation vectors), cross-checked against google/go-sev-guest
abi/abi.go and virtee/sev (src/firmware/guest/types/snp.rs; its newer parser treats versions 3 and
4 as one layout and version 5 as that layout plus the vectors).

Layout (little-endian; offsets in hex):

  00 version u32         04 guest_svn u32      08 policy u64         10 family_id[16]
  20 image_id[16]        30 vmpl u32           34 signature_algo u32 38 current_tcb u64
  40 platform_info u64   48 signer info u32 (bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY,
                            bits 4:2 SIGNING_KEY: 0 VCEK, 1 VLEK, 7 none)   4C reserved u32
  50 report_data[64]     90 measurement[48]    C0 host_data[32]      E0 id_key_digest[48]
  110 author_key_digest[48]  140 report_id[32] 160 report_id_ma[32]  180 reported_tcb u64
  188 cpuid_fam_id u8, 189 cpuid_mod_id u8, 18A cpuid_step u8 (version >= 3; reserved in 2)
  18B..1A0 reserved      1A0 chip_id[64]       1E0 committed_tcb u64
  1E8 current_build, 1E9 current_minor, 1EA current_major, 1EB reserved (u8 each)
  1EC committed_build, 1ED committed_minor, 1EE committed_major, 1EF reserved
  1F0 launch_tcb u64     1F8 launch_mit_vector u64, 200 current_mit_vector u64 (version >= 5)
  208..2A0 reserved      2A0 signature[512]: R (72 bytes, little-endian) at +0, S at +0x48
  4A0 end.  The signature covers [0, 0x2A0).

TCB_VERSION (8 bytes) has two layouts.  Before Turin (family 19h, Milan/Genoa): byte 0 boot
loader, 1 TEE, 2..5 reserved, 6 SNP, 7 microcode.  Turin (family 1Ah): byte 0 FMC, 1 boot loader,
2 TEE, 3 SNP, 4..6 reserved, 7 microcode (virtee/sev TcbVersion::from_turin_bytes).  A version >= 3
report names its family in cpuid_fam_id; for version 2 the parser falls back to the heuristic
virtee/sev uses (a Turin CHIP_ID fills only its first 8 bytes), and says which it chose in
`tcb_layout`.

Decisions (strict where the layout would be wrong, lenient where firmware varies):
  * the input must be exactly 0x4A0 bytes: the kernel's outblob is `report_size` bytes, and the
    structure has one size in every version.  Shorter or longer is a ParseError.
  * version 2, 3, 4 and 5 are accepted (4 is laid out as 3).  0 and 1 predate this structure;
    anything above 5 is rejected, because its fields cannot be named without a specification.
  * signature_algo, policy bits, platform_info bits and the SIGNING_KEY value are reported, not
    judged: verification (verify/snp.py) fails an unknown algorithm.
  * reserved bytes are not rejected (firmware has filled formerly reserved space before);
    non-zero reserved ranges are listed in `nonzero_reserved`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .base import ParseError, Reader

FMT = "snp"
REPORT_SIZE = 0x4A0
SIGNED_LEN = 0x2A0
SIG_COMPONENT_LEN = 72
MIN_VERSION, MAX_VERSION = 2, 5
ECDSA_P384_SHA384 = 1
SIGNING_KEYS = {0: "vcek", 1: "vlek", 7: "none"}
TURIN_FAMILY = 0x1A

TcbLayout = Literal["milan-genoa", "turin"]

# Reserved ranges per version (start, end): checked only to report, never to reject.
_RESERVED_ALWAYS = ((0x4C, 0x50), (0x1EB, 0x1EC), (0x1EF, 0x1F0))


@dataclass(frozen=True)
class TcbVersion:
    """One TCB_VERSION: the SPL of each firmware component.  `fmc` exists only on Turin."""

    raw: int
    layout: TcbLayout
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None


def decode_tcb(raw: int, layout: TcbLayout) -> TcbVersion:
    b = raw.to_bytes(8, "little")
    if layout == "turin":
        return TcbVersion(raw, layout, bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7], fmc=b[0])
    return TcbVersion(raw, layout, bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])


@dataclass(frozen=True)
class SnpReport:
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: int
    signer_info: int
    author_key_en: bool
    mask_chip_key: bool
    signing_key: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: bytes  # the 72-byte field as stored: little-endian
    signature_s: bytes
    tcb_layout: TcbLayout
    tcb_layout_source: str  # "cpuid_fam_id" or "chip_id heuristic"
    nonzero_reserved: tuple[str, ...]
    _raw: bytes = field(repr=False, compare=False, default=b"")

    @property
    def signed_bytes(self) -> bytes:
        """The bytes the signature covers: [0, 0x2A0)."""
        return self._raw[:SIGNED_LEN]

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def signature_rs(self) -> tuple[int, int]:
        """R and S as integers (the fields are little-endian)."""
        return int.from_bytes(self.signature_r, "little"), int.from_bytes(self.signature_s, "little")

    @property
    def signing_key_name(self) -> str:
        return SIGNING_KEYS.get(self.signing_key, f"reserved({self.signing_key})")


RESPONSE_HEADER = 0x20  # MSG_REPORT_RSP: status u32, report_size u32, 24 reserved bytes


def unwrap(data: bytes) -> tuple[bytes, str | None]:
    """A captured report as tools save it, reduced to the ATTESTATION_REPORT: the whole firmware
    response (MSG_REPORT_RSP header, as the SNP_GET_REPORT ioctl returns it) or a report followed by
    zero padding (a page dump).  Returns (data, None) when neither applies."""
    if len(data) >= RESPONSE_HEADER + REPORT_SIZE and int.from_bytes(data[0:4], "little") == 0 \
            and int.from_bytes(data[4:8], "little") == REPORT_SIZE and not any(data[8:RESPONSE_HEADER]) \
            and not any(data[RESPONSE_HEADER + REPORT_SIZE:]):
        return data[RESPONSE_HEADER:RESPONSE_HEADER + REPORT_SIZE], \
            f"unwrapped MSG_REPORT_RSP (status 0, report_size {REPORT_SIZE:#x}, {len(data)} bytes in all)"
    if len(data) > REPORT_SIZE and not any(data[REPORT_SIZE:]) and sniff(data[:REPORT_SIZE]):
        return data[:REPORT_SIZE], f"ignored {len(data) - REPORT_SIZE} zero bytes after the report"
    return data, None


def sniff(data: bytes) -> bool:
    """Cheap: the right size and a known version word."""
    return len(data) == REPORT_SIZE and MIN_VERSION <= int.from_bytes(data[:4], "little") <= MAX_VERSION


def _tcb_layout(version: int, fam: int | None, chip_id: bytes) -> tuple[TcbLayout, str]:
    if version >= 3 and fam is not None:
        return ("turin" if fam >= TURIN_FAMILY else "milan-genoa"), "cpuid_fam_id"
    # Version 2 carries no family: a Turin CHIP_ID uses only its first 8 bytes.
    turin_like = any(chip_id[:8]) and not any(chip_id[8:])
    return ("turin" if turin_like else "milan-genoa"), "chip_id heuristic"


def _reserved_ranges(version: int) -> tuple[tuple[int, int], ...]:
    cpuid = (0x18B, 0x1A0) if version >= 3 else (0x188, 0x1A0)
    tail = (0x208, SIGNED_LEN) if version >= 5 else (0x1F8, SIGNED_LEN)
    return _RESERVED_ALWAYS + (cpuid, tail)


def _nonzero_reserved(data: bytes, version: int) -> tuple[str, ...]:
    return tuple(f"{a:#x}..{b:#x}" for a, b in _reserved_ranges(version) if any(data[a:b]))


def parse_report(data: bytes) -> SnpReport:
    r = Reader(FMT, data)
    if len(r.data) != REPORT_SIZE:
        what = "short" if len(r.data) < REPORT_SIZE else "long"
        raise ParseError(FMT, f"report is {len(r.data)} bytes ({what}); ATTESTATION_REPORT is "
                              f"{REPORT_SIZE:#x} ({REPORT_SIZE}) bytes", min(len(r.data), REPORT_SIZE))
    version = r.u32(0x00, "version")
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ParseError(FMT, f"unknown report version {version} (known: 2..5)", 0)
    has_cpuid, has_mit = version >= 3, version >= 5
    fam = r.u8(0x188, "cpuid_fam_id") if has_cpuid else None
    chip_id = r.bytes(0x1A0, 64, "chip_id")
    layout, source = _tcb_layout(version, fam, chip_id)

    def tcb(off: int, what: str) -> TcbVersion:
        return decode_tcb(r.u64(off, what), layout)

    signer = r.u32(0x48, "signer info")
    return SnpReport(
        version=version,
        guest_svn=r.u32(0x04, "guest_svn"),
        policy=r.u64(0x08, "policy"),
        family_id=r.bytes(0x10, 16, "family_id"),
        image_id=r.bytes(0x20, 16, "image_id"),
        vmpl=r.u32(0x30, "vmpl"),
        signature_algo=r.u32(0x34, "signature_algo"),
        current_tcb=tcb(0x38, "current_tcb"),
        platform_info=r.u64(0x40, "platform_info"),
        signer_info=signer,
        author_key_en=bool(signer & 1),
        mask_chip_key=bool(signer & 2),
        signing_key=(signer >> 2) & 7,
        report_data=r.bytes(0x50, 64, "report_data"),
        measurement=r.bytes(0x90, 48, "measurement"),
        host_data=r.bytes(0xC0, 32, "host_data"),
        id_key_digest=r.bytes(0xE0, 48, "id_key_digest"),
        author_key_digest=r.bytes(0x110, 48, "author_key_digest"),
        report_id=r.bytes(0x140, 32, "report_id"),
        report_id_ma=r.bytes(0x160, 32, "report_id_ma"),
        reported_tcb=tcb(0x180, "reported_tcb"),
        cpuid_fam_id=fam,
        cpuid_mod_id=r.u8(0x189, "cpuid_mod_id") if has_cpuid else None,
        cpuid_step=r.u8(0x18A, "cpuid_step") if has_cpuid else None,
        chip_id=chip_id,
        committed_tcb=tcb(0x1E0, "committed_tcb"),
        current_build=r.u8(0x1E8, "current_build"),
        current_minor=r.u8(0x1E9, "current_minor"),
        current_major=r.u8(0x1EA, "current_major"),
        committed_build=r.u8(0x1EC, "committed_build"),
        committed_minor=r.u8(0x1ED, "committed_minor"),
        committed_major=r.u8(0x1EE, "committed_major"),
        launch_tcb=tcb(0x1F0, "launch_tcb"),
        launch_mit_vector=r.u64(0x1F8, "launch_mit_vector") if has_mit else None,
        current_mit_vector=r.u64(0x200, "current_mit_vector") if has_mit else None,
        signature_r=r.bytes(SIGNED_LEN, SIG_COMPONENT_LEN, "signature R"),
        signature_s=r.bytes(SIGNED_LEN + SIG_COMPONENT_LEN, SIG_COMPONENT_LEN, "signature S"),
        tcb_layout=layout,
        tcb_layout_source=source,
        nonzero_reserved=_nonzero_reserved(r.data, version),
        _raw=r.data,
    )
