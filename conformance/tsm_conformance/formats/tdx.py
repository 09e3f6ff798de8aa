"""Intel TDX quote, versions 4 and 5 (ECDSA-256-with-P-256 attestation key).

The only module that knows the quote layout.  Sources (facts, not code):

* Intel "TDX DCAP Quoting Library API", appendix A.3 (v4) and A.4 (v5): header, TD quote body,
  quote signature data, certification data types 5 (PCK chain) and 6 (QE report certification
  data).
* google/go-tdx-guest abi/abi.go@1020a38 (offsets: body 0x30..0x278, signed-data size at 0x278;
  v5 body descriptor; body sizes 584 / 648).
* Phala-Network/dcap-qvl src/quote.rs@01b0e75 (header field order qe_svn then pce_svn; the v5
  signed region includes the 6-byte body descriptor).
* SGX SDK sgx_report_body_t (the 384-byte QE report: report_data at +320).

Layout (little-endian)::

    v4: header(48) | TD report 1.0 (584)            | sig_data_len u32 | sig_data | trailing
    v5: header(48) | type u16 | size u32 | TD report | sig_data_len u32 | sig_data | trailing
    sig_data: signature(64, r||s big-endian) | attestation_key(64, x||y) |
              cert_type u16 | cert_size u32 | cert_data
    cert_data (type 6): qe_report(384) | qe_report_signature(64) | auth_size u16 | auth_data |
              cert_type u16 (5) | cert_size u32 | PCK chain PEM (leaf, intermediate, root)

Choices (documented because other layers depend on them):

* The header's bytes 8..12 are `qe_svn` then `pce_svn` (Intel's field order; TDX v4 marks them
  reserved; go-tdx-guest names them the other way round).
* `tee_type` is **not** checked here: the body layout does not depend on it in practice (the
  kernel's tdx_guest always returns a TD body), so a quote with a wrong `tee_type` parses and the
  value stays visible for a check (and `verify.tdx` reports it as a failing step).  `sniff`
  ignores it too, so such a quote still routes here.  Versions other than 4/5, attestation key
  types other than 2, and v5 body types other than 2/3 are rejected: their layout is not known.
* The body's RTMRs are four fields `rtmr0`..`rtmr3` (TDREPORT names); `TdReport.rtmrs` gives the
  tuple.
* Lengths are strict inside the signed structure: each length must fit its container and must
  fill it exactly (left-over bytes inside the signature data are a ParseError, as in go-tdx-guest).
  Bytes after the signature data are common in captured quotes (zero padding from the QGS buffer):
  they are counted in `trailing_bytes`, not rejected.
* Certification data of a type other than 6 (or a nested type other than 5) is kept raw in
  `CertificationData.unparsed`; the verifier fails the steps that need it.
* The PCK chain is kept as PEM text blocks (`pck_chain`, leaf first); trailing NULs are dropped;
  anything but whitespace outside the BEGIN/END CERTIFICATE blocks is a ParseError.  The base64
  inside the blocks is not decoded here (the verifier loads the certificates).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .base import ParseError, Reader

FMT = "tdx"

HEADER_SIZE = 48
TD_REPORT10_SIZE = 584
TD_REPORT15_SIZE = 648
SGX_REPORT_BODY_SIZE = 384
SIGNATURE_SIZE = 64
ATTESTATION_KEY_SIZE = 64

TEE_TYPE_TDX = 0x81
TEE_TYPE_SGX = 0x00
ATTESTATION_KEY_ECDSA_P256 = 2
BODY_TYPE_TD10 = 2
BODY_TYPE_TD15 = 3
CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6
#: Intel's QE vendor id 939a7233-f79c-4ca9-940a-0db3957f0607, as it appears in the quote.
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

_BODY_SIZES = {BODY_TYPE_TD10: TD_REPORT10_SIZE, BODY_TYPE_TD15: TD_REPORT15_SIZE}
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


@dataclass(frozen=True)
class Header:
    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True)
class TdReport:
    """TD quote body: TD report 1.0 (584 bytes), or 1.5 (648) with the last two fields set."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn_2: bytes | None = None
    mr_servicetd: bytes | None = None

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)


@dataclass(frozen=True)
class SgxReportBody:
    """sgx_report_body_t (384 bytes): the QE report.  `raw` is the signed encoding."""

    cpu_svn: bytes
    misc_select: int
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes
    _raw: bytes = b""

    @property
    def raw(self) -> bytes:
        return self._raw


@dataclass(frozen=True)
class CertificationData:
    """The quote's certification data.  For type 6 the QE report fields are set; `pck_chain` holds
    the nested type-5 chain as PEM blocks (leaf first).  Data of any other (nested) type is kept in
    `unparsed`."""

    type: int
    qe_report: SgxReportBody | None = None
    qe_report_signature: bytes | None = None
    qe_auth_data: bytes | None = None
    pck_chain_type: int | None = None
    pck_chain: tuple[str, ...] = ()
    unparsed: bytes | None = None


@dataclass(frozen=True)
class SignatureData:
    signature: bytes  # r || s, 32 bytes each, big-endian
    attestation_key: bytes  # x || y of the P-256 point, big-endian
    certification_data: CertificationData


@dataclass(frozen=True)
class TdxQuote:
    header: Header
    body_type: int | None  # v5 body descriptor type; None for v4
    body: TdReport
    signature_data_len: int
    signature_data: SignatureData
    trailing_bytes: int  # bytes after the signature data (accepted, counted)
    _signed: bytes = b""

    @property
    def signed_bytes(self) -> bytes:
        """What the attestation key signs: header and body (v5: with the body descriptor)."""
        return self._signed


def sniff(data: bytes) -> bool:
    """A version 4/5 quote header with an ECDSA-P256 attestation key (tee_type not required)."""
    if len(data) < HEADER_SIZE:
        return False
    version, key_type = struct.unpack_from("<HH", data, 0)
    return version in (4, 5) and key_type == ATTESTATION_KEY_ECDSA_P256


def declared_length(data: bytes) -> int | None:
    """The length the quote declares for itself (header, body, u32 size, signature data), from
    as few bytes as that takes; None when too short or not a v4/v5 layout to say."""
    if len(data) < HEADER_SIZE:
        return None
    version = int.from_bytes(data[0:2], "little")
    if version == 4:
        at = HEADER_SIZE + TD_REPORT10_SIZE
    elif version == 5 and len(data) >= HEADER_SIZE + 6:
        at = HEADER_SIZE + 6 + int.from_bytes(data[HEADER_SIZE + 2:HEADER_SIZE + 6], "little")
    else:
        return None
    if len(data) < at + 4:
        return None
    return at + 4 + int.from_bytes(data[at:at + 4], "little")


def parse_quote(data: bytes) -> TdxQuote:
    """Parse a TDX quote v4/v5; ParseError (with the offset) for anything malformed."""
    r = Reader(FMT, data)
    header = _header(r)
    off = HEADER_SIZE
    body_type: int | None = None
    body_size = TD_REPORT10_SIZE
    if header.version == 5:
        body_type, body_size = _body_descriptor(r, off)
        off += 6
    body = _td_report(r, off, body_size)
    off += body_size
    signed = r.data[:off]
    sig_len = r.u32(off, "signature data length")
    off += 4
    r.need(off, sig_len, "signature data (length from offset %#x)" % (off - 4))
    sig = _signature_data(r, off, sig_len)
    end = off + sig_len
    return TdxQuote(header, body_type, body, sig_len, sig, len(r.data) - end, signed)


def _header(r: Reader) -> Header:
    r.need(0, HEADER_SIZE, "quote header")
    version = r.u16(0, "version")
    if version not in (4, 5):
        raise r.error(f"quote version {version} is not 4 or 5", 0)
    key_type = r.u16(2, "attestation_key_type")
    if key_type != ATTESTATION_KEY_ECDSA_P256:
        raise r.error(f"attestation key type {key_type} unsupported (2 = ECDSA-256-with-P-256)", 2)
    return Header(version, key_type, r.u32(4, "tee_type"), r.u16(8, "qe_svn"), r.u16(10, "pce_svn"),
                  r.bytes(12, 16, "qe_vendor_id"), r.bytes(28, 20, "user_data"))


def _body_descriptor(r: Reader, off: int) -> tuple[int, int]:
    body_type = r.u16(off, "body type")
    size = r.u32(off + 2, "body size")
    if body_type not in _BODY_SIZES:
        raise r.error(f"body type {body_type} is not a TD report (2 = TD 1.0, 3 = TD 1.5)", off)
    if size != _BODY_SIZES[body_type]:
        raise r.error(f"body size {size} does not match body type {body_type} "
                      f"({_BODY_SIZES[body_type]} bytes)", off + 2)
    return body_type, size


# (name, size) in order; TD report 1.0, then the two 1.5 additions.
_TD10_FIELDS = (("tee_tcb_svn", 16), ("mr_seam", 48), ("mr_signer_seam", 48),
                ("seam_attributes", 8), ("td_attributes", 8), ("xfam", 8), ("mr_td", 48),
                ("mr_config_id", 48), ("mr_owner", 48), ("mr_owner_config", 48), ("rtmr0", 48),
                ("rtmr1", 48), ("rtmr2", 48), ("rtmr3", 48), ("report_data", 64))
_TD15_EXTRA = (("tee_tcb_svn_2", 16), ("mr_servicetd", 48))


def _td_report(r: Reader, off: int, size: int) -> TdReport:
    r.need(off, size, "TD quote body")
    fields = _TD10_FIELDS + (_TD15_EXTRA if size == TD_REPORT15_SIZE else ())
    values: dict[str, bytes] = {}
    for name, n in fields:
        values[name] = r.bytes(off, n, name)
        off += n
    return TdReport(**values)


def parse_sgx_report_body(data: bytes, base: int = 0) -> SgxReportBody:
    """The 384-byte SGX enclave report body (the QE report).  `base` is its offset, for errors."""
    r = Reader(FMT, data, base)
    r.need(0, SGX_REPORT_BODY_SIZE, "SGX report body")
    return SgxReportBody(
        cpu_svn=r.bytes(0, 16, "cpu_svn"), misc_select=r.u32(16, "misc_select"),
        isv_ext_prod_id=r.bytes(32, 16, "isv_ext_prod_id"), attributes=r.bytes(48, 16, "attributes"),
        mr_enclave=r.bytes(64, 32, "mr_enclave"), mr_signer=r.bytes(128, 32, "mr_signer"),
        config_id=r.bytes(192, 64, "config_id"), isv_prod_id=r.u16(256, "isv_prod_id"),
        isv_svn=r.u16(258, "isv_svn"), config_svn=r.u16(260, "config_svn"),
        isv_family_id=r.bytes(304, 16, "isv_family_id"), report_data=r.bytes(320, 64, "report_data"),
        _raw=r.bytes(0, SGX_REPORT_BODY_SIZE, "SGX report body"))


def _signature_data(r: Reader, off: int, length: int) -> SignatureData:
    end = off + length
    fixed = SIGNATURE_SIZE + ATTESTATION_KEY_SIZE + 6
    if length < fixed:
        raise r.error(f"signature data length {length} is below the minimum {fixed}", off - 4)
    signature = r.bytes(off, SIGNATURE_SIZE, "signature")
    key = r.bytes(off + 64, ATTESTATION_KEY_SIZE, "attestation_key")
    cert_type, cert = _typed_blob(r, off + 128, end, "certification data")
    if cert_type == CERT_TYPE_QE_REPORT:
        cd = _qe_report_certification(r, off + 134, cert)
    else:
        cd = CertificationData(cert_type, unparsed=cert)
    return SignatureData(signature, key, cd)


def _typed_blob(r: Reader, off: int, end: int, what: str) -> tuple[int, bytes]:
    """{type u16, size u32, data}; it must end exactly at `end` (its container's end)."""
    if off + 6 > end:
        raise r.error(f"{what} header: need 6 bytes, container has {end - off}", off)
    cert_type = r.u16(off, f"{what} type")
    size = r.u32(off + 2, f"{what} size")
    if off + 6 + size > end:
        raise r.error(f"{what} size {size} overruns its container by {off + 6 + size - end} bytes",
                      off + 2)
    if off + 6 + size < end:
        raise r.error(f"{end - off - 6 - size} bytes left over after {what}", off + 6 + size)
    return cert_type, r.bytes(off + 6, size, what)


def _qe_report_certification(r: Reader, off: int, data: bytes) -> CertificationData:
    end = off + len(data)
    qe_report = parse_sgx_report_body(r.bytes(off, SGX_REPORT_BODY_SIZE, "QE report"), off)
    off += SGX_REPORT_BODY_SIZE
    if off + SIGNATURE_SIZE + 2 > end:
        raise r.error("QE report certification data too short for the QE report signature and "
                      "auth data size", off)
    qe_sig = r.bytes(off, SIGNATURE_SIZE, "QE report signature")
    off += SIGNATURE_SIZE
    auth_size = r.u16(off, "QE auth data size")
    if off + 2 + auth_size > end:
        raise r.error(f"QE auth data size {auth_size} overruns the certification data", off)
    auth = r.bytes(off + 2, auth_size, "QE auth data")
    off += 2 + auth_size
    nested_type, nested = _typed_blob(r, off, end, "PCK certification data")
    if nested_type != CERT_TYPE_PCK_CHAIN:
        return CertificationData(CERT_TYPE_QE_REPORT, qe_report, qe_sig, auth, nested_type,
                                 unparsed=nested)
    chain = _pem_chain(nested, r.base + off + 6)
    return CertificationData(CERT_TYPE_QE_REPORT, qe_report, qe_sig, auth, nested_type, chain)


def _pem_chain(data: bytes, offset: int) -> tuple[str, ...]:
    """Split the PCK chain into PEM certificate blocks (framing only)."""
    try:
        text = data.rstrip(b"\x00").decode("ascii")
    except UnicodeDecodeError as e:
        raise ParseError(FMT, f"PCK chain is not ASCII PEM ({e.reason})", offset + e.start) from None
    blocks: list[str] = []
    pos = 0
    while True:
        start = text.find(_PEM_BEGIN, pos)
        gap = text[pos:] if start < 0 else text[pos:start]
        if gap.strip():
            raise ParseError(FMT, f"PCK chain: unexpected text {gap.strip()[:20]!r} outside a "
                                  "certificate block", offset + pos)
        if start < 0:
            return tuple(blocks)
        stop = text.find(_PEM_END, start)
        if stop < 0:
            raise ParseError(FMT, "PCK chain: certificate block without END line", offset + start)
        pos = stop + len(_PEM_END)
        blocks.append(text[start:pos] + "\n")
