"""The emulator's TDX quote: an independent encoding of the Intel TDX ECDSA quote v4/v5.

Written from the specification (Intel "TDX DCAP Quoting Library API", appendix A.3 quote v4 and
A.4 quote v5), not from `tsm_conformance.formats.tdx`: the two encodings meet only in tests, so a
layout mistake in one shows up as a disagreement (N-version design).  Never import the parser here.

What a quote holds, as the QGS on a real host assembles it::

    header (48)          version, att key type 2, tee_type 0x81, qe_svn, pce_svn, QE vendor id,
                         user data (platform id)
    [v5: body type u16, body size u32]
    TD report (584, or 648 for the TD 1.5 body of v5)
    u32 length, then the quote signature data:
        ECDSA-P256 signature over everything above, r||s big-endian
        attestation public key x||y
        certification data type 6: QE report (SGX report body, 384), its signature by the PCK
        key, QE auth data, nested certification data type 5: PCK chain PEM (leaf, platform CA,
        root), NUL-terminated

Keys come from `emulator.pki` (deterministic), so every process builds byte-identical quotes for
the same arguments.  The certificate chain and the QE certification data are built once and
cached; a quote costs one ECDSA signature (about 0.1 ms).  The emulated "Intel SGX Root CA" is
*not* Intel's: its organisation names the emulator, and `anchor_pem()` is the only trust anchor
that verifies these quotes.

Variation between quotes: `counter` is folded into RTMR3 (the register user space extends at
run time), so two reads with the same report_data still give different quotes.
"""

from __future__ import annotations

import functools
import hashlib
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .. import pki

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
TEE_TDX = 0x81
KEY_TYPE_ECDSA_P256 = 2
QE_REPORT_CERT_DATA = 6
PCK_CERT_CHAIN = 5
TD10_BODY, TD15_BODY = 2, 3

_CURVE = "secp256r1"
_LABEL = "tdx"
# A platform id in user_data (Intel puts the QE id's first 16 bytes there, then 4 zero bytes).
_USER_DATA = hashlib.sha256(b"emulated TDX platform").digest()[:16] + bytes(4)
_QE_AUTH_DATA = bytes(range(32))  # Intel's QE ships 32 bytes 0x00..0x1f here too


def _h384(label: str) -> bytes:
    return hashlib.sha384(f"tsm-conformance emulated TDX {label}".encode()).digest()


@functools.cache
def _keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {role: pki.ec_key(f"{_LABEL} {role}", _CURVE)
            for role in ("root", "platform-ca", "pck", "attestation")}


@functools.cache
def _chain() -> tuple[bytes, bytes, bytes]:
    """(root, platform CA, PCK leaf) PEM, signed with ECDSA-SHA256 like Intel's PCK chain."""
    k = _keys()
    root_name = pki.name("Intel SGX Root CA")
    ca_name = pki.name("Intel SGX PCK Platform CA")
    sha256 = hashes.SHA256()
    root = pki.certificate(root_name, k["root"], root_name, k["root"], ca=True, serial=1,
                           hash_alg=sha256)
    ca = pki.certificate(ca_name, k["platform-ca"], root_name, k["root"], ca=True, serial=2,
                         hash_alg=sha256)
    leaf = pki.certificate(pki.name("Intel SGX PCK Certificate"), k["pck"], ca_name,
                           k["platform-ca"], ca=False, serial=3, hash_alg=sha256)
    return pki.pem(root), pki.pem(ca), pki.pem(leaf)


def anchor_pem() -> bytes:
    """The emulated Intel SGX Root CA certificate (PEM): the trust anchor for emulated quotes."""
    return _chain()[0]


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256-SHA256 as the quote carries it: r and s, 32 bytes big-endian each."""
    r, s = decode_dss_signature(pki.sign(key, data, hashes.SHA256()))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@functools.cache
def _attestation_key_xy() -> bytes:
    point = _keys()["attestation"].public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return point[1:]  # drop the 0x04 prefix: the quote stores x||y


def _qe_report() -> bytes:
    """SGX report body of the emulated TD quoting enclave (sgx_report_body_t, 384 bytes)."""
    binding = hashlib.sha256(_attestation_key_xy() + _QE_AUTH_DATA).digest() + bytes(32)
    parts = [
        bytes([3, 3, 0x19, 0x1b, 0xff, 0, 6]) + bytes(9),  # cpu_svn (16)
        struct.pack("<I", 0),                 # misc_select
        bytes(12),                            # reserved
        bytes(16),                            # isv_ext_prod_id
        struct.pack("<QQ", 0x15, 0xe7),       # attributes: flags (INIT|MODE64BIT|PROVISIONKEY), xfrm
        _h384("QE mr_enclave")[:32],          # mr_enclave
        bytes(32),                            # reserved
        _h384("QE mr_signer")[:32],           # mr_signer
        bytes(32),                            # reserved
        bytes(64),                            # config_id
        struct.pack("<HHH", 2, 8, 0),         # isv_prod_id (2 = TD QE), isv_svn, config_svn
        bytes(42),                            # reserved
        bytes(16),                            # isv_family_id
        binding,                              # report_data
    ]
    out = b"".join(parts)
    assert len(out) == 384
    return out


@functools.cache
def _certification_data() -> bytes:
    """Certification data type 6 with its header: QE report, signature, auth data, PCK chain."""
    root, ca, leaf = _chain()
    chain = leaf + ca + root + b"\x00"
    qe_report = _qe_report()
    inner = (qe_report + _raw_signature(_keys()["pck"], qe_report)
             + struct.pack("<H", len(_QE_AUTH_DATA)) + _QE_AUTH_DATA
             + struct.pack("<HI", PCK_CERT_CHAIN, len(chain)) + chain)
    return struct.pack("<HI", QE_REPORT_CERT_DATA, len(inner)) + inner


def initial_registers() -> dict[str, bytes]:
    """The TD's measurement registers as it boots (6.16+ shows them in sysfs: emulator/measurements.py)."""
    return {"mrtd": _h384("mr_td"), "mrconfigid": bytes(48), "mrowner": bytes(48), "mrownerconfig": bytes(48),
            **{f"rtmr{i}": _h384(f"rtmr{i}") for i in range(4)}}


def _td_report(report_data: bytes, counter: int, v15: bool, registers: dict[str, bytes] | None = None) -> bytes:
    if registers is None:  # before 6.16 nothing extends from userspace: rtmr3 stands for the OS's own extends
        registers = initial_registers()
        registers["rtmr3"] = hashlib.sha384(_h384("rtmr3") + counter.to_bytes(8, "little")).digest()
    r = registers
    parts = [
        bytes([7, 1, 3]) + bytes(13),         # tee_tcb_svn (16)
        _h384("mr_seam"),                     # mr_seam (48)
        bytes(48),                            # mr_signer_seam: zero for Intel's TDX module
        bytes(8),                             # seam_attributes
        bytes(8),                             # td_attributes (no DEBUG)
        struct.pack("<Q", 0x61ae7),           # xfam
        r["mrtd"],                            # mr_td
        r["mrconfigid"], r["mrowner"], r["mrownerconfig"],
        r["rtmr0"], r["rtmr1"], r["rtmr2"], r["rtmr3"],
        report_data,                          # report_data (64)
    ]
    if v15:
        parts += [bytes([7, 1, 3]) + bytes(13), bytes(48)]  # tee_tcb_svn_2, mr_servicetd
    out = b"".join(parts)
    assert len(out) == (648 if v15 else 584)
    return out


def build_quote(*, report_data: bytes, counter: int = 0, version: int = 4, tee_type: int = TEE_TDX,
                body_type: int | None = None, trailing: int = 0, corrupt_signature: bool = False,
                registers: dict[str, bytes] | None = None) -> bytes:
    """A signed TDX quote binding `report_data` (at most 64 bytes, zero-padded).

    version 5 adds the body descriptor; `body_type` 3 (default for v5) is the TD 1.5 body, 2 the
    TD 1.0 body.  Any other version number is written into a v4 layout (for faults).  `tee_type`
    is written as given.  `trailing` zero bytes follow the signed quote, as a QGS buffer may.
    `corrupt_signature` flips one bit of the attestation key's signature.  `registers`: the TD's
    measurement registers (mrtd, mrconfigid, mrowner, mrownerconfig, rtmr0..3) as the TDX module
    reports them; by default the boot values, with rtmr3 changing per quote.
    """
    if len(report_data) > 64:
        raise ValueError(f"report_data is {len(report_data)} bytes; at most 64")
    report_data = bytes(report_data).ljust(64, b"\x00")
    # Each quote is signed anew on real hardware (a new ECDSA k); the emulator signs
    # deterministically, so a quote is told apart by its counter: in rtmr3 before 6.16 (nothing
    # else extends it), in the QGS's part of the header's user data once the RTMRs are the TD's own
    user = _USER_DATA if registers is None else _USER_DATA[:16] + counter.to_bytes(4, "little")
    header = struct.pack("<HHIHH16s20s", version, KEY_TYPE_ECDSA_P256, tee_type, 0, 0,
                         INTEL_QE_VENDOR_ID, user)
    if version == 5:
        body_type = TD15_BODY if body_type is None else body_type
        body = _td_report(report_data, counter, body_type == TD15_BODY, registers)
        signed = header + struct.pack("<HI", body_type, len(body)) + body
    else:
        signed = header + _td_report(report_data, counter, False, registers)
    signature = _raw_signature(_keys()["attestation"], signed)
    if corrupt_signature:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    sig_data = signature + _attestation_key_xy() + _certification_data()
    return signed + struct.pack("<I", len(sig_data)) + sig_data + bytes(trailing)
