"""The emulator's SEV-SNP encoding: signed ATTESTATION_REPORTs, the GHCB certificate table and the
SVSM services manifest.

Written again from the specifications, on purpose not shared with `formats/snp.py` (N-version:
the parser and this builder agree only if both match the spec):
  * AMD 56860 (SNP firmware ABI), ATTESTATION_REPORT: 0x4A0 bytes, little-endian; version 2,
    3/4 (CPUID family/model/stepping at 0x188..0x18A) and 5 (mitigation vectors at 0x1F8/0x200);
    ECDSA P-384 SHA-384 signature over the first 0x2A0 bytes, R and S as 72-byte little-endian
    fields at 0x2A0 and 0x2E8.
  * AMD 56421 (GHCB), extended guest request: certificate table of {GUID (RFC 4122 byte order),
    offset, length} ended by a zero entry; offsets from the table start.
  * AMD 58019 (SVSM) §7: services manifest {GUID, total size, count} + {GUID, offset, size} per
    service, GUIDs mixed-endian; REPORT_DATA = SHA-512(nonce || manifest), report at VMPL 0.

Key hierarchy (emulator/pki.py, deterministic, all EC P-384): ARK (self-signed) -> ASK -> VCEK and
VLEK.  Real AMD roots are RSA-4096/PSS; EC keeps the emulator fast and still exercises a
generic chain verifier.  Certificates are built once per process (about 3 ms); after that a
report costs one deterministic ECDSA P-384 signature, measured at about 0.25 ms.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .. import pki

SIZE = 0x4A0
BODY = 0x2A0
VERSIONS = (2, 3, 4, 5)
ALGO_ECDSA_P384_SHA384 = 1
POLICY = (1 << 17) | (1 << 16)  # bit 17 must be one; SMT allowed
PLATFORM_INFO = 1               # SMT enabled
SIGNING_KEY = {"vcek": 0, "vlek": 1}
TCB_MILAN = dict(bootloader=3, tee=0, snp=8, microcode=115)
TCB_TURIN = dict(fmc=1, bootloader=1, tee=1, snp=3, microcode=0x44)
CPUID = {"milan": (0x19, 0x01, 0x01), "turin": (0x1A, 0x02, 0x00)}
FIRMWARE = (1, 55, 21)  # major, minor, build

CERT_GUIDS = {
    "vcek": "63da758d-e664-4564-adc5-f4b93be8accd",
    "vlek": "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
    "ask": "4ab7b379-bbac-4fe4-a02f-05aef327c782",
    "ark": "c0b406a4-a803-4952-9743-3fb6014cd0ae",
}
SVSM_MANIFEST_GUID = "63849ebb-3d92-4670-a1ff-58f9c94b87bb"
SVSM_VTPM_GUID = "c476f1eb-0123-45a5-9641-b4e7dde5bfe3"
#: Stand-in for the vTPM service manifest (58019 §8: the vTPM's endorsement key).
VTPM_MANIFEST = hashlib.sha384(b"emulated SVSM vTPM endorsement key").digest()


# ---- keys and certificates -------------------------------------------------------------------

@functools.cache
def _certs() -> dict[str, x509.Certificate]:
    key = {n: pki.ec_key(f"snp-{n}") for n in ("ark", "ask", "vcek", "vlek")}
    ark_name, ask_name = pki.name("ARK-Emulated"), pki.name("SEV-Emulated")
    ark = pki.certificate(ark_name, key["ark"], ark_name, key["ark"], ca=True, serial=0x10000)
    ask = pki.certificate(ask_name, key["ask"], ark_name, key["ark"], ca=True, serial=0x10001)
    return {
        "ark": ark, "ask": ask,
        "vcek": pki.certificate(pki.name("SEV-VCEK"), key["vcek"], ask_name, key["ask"], ca=False, serial=1),
        "vlek": pki.certificate(pki.name("SEV-VLEK"), key["vlek"], ask_name, key["ask"], ca=False, serial=2),
    }


@functools.cache
def _der(name: str) -> bytes:
    return pki.der(_certs()[name])


def anchor_pem() -> bytes:
    """The emulated ARK certificate, PEM: the trust anchor for every emulated SNP report."""
    return pki.pem(_certs()["ark"])


def certificate_pem(name: str) -> bytes:
    return pki.pem(_certs()[name])


# ---- the certificate table -------------------------------------------------------------------

@functools.cache
def cert_table(*, key: str = "vcek", include_chain: bool = True) -> bytes:
    """The auxblob: the signing key's certificate (and the ASK and ARK), GHCB table layout."""
    if key not in SIGNING_KEY:
        raise ValueError(f"key={key!r}: use vcek or vlek")
    names = [key] + (["ask", "ark"] if include_chain else [])
    cursor = 24 * (len(names) + 1)
    head, body = b"", b""
    for n in names:
        blob = _der(n)
        head += uuid.UUID(CERT_GUIDS[n]).bytes + struct.pack("<II", cursor + len(body), len(blob))
        body += blob
    return head + bytes(24) + body


# ---- the report ------------------------------------------------------------------------------

def _tcb(product: str) -> bytes:
    if product == "turin":
        t = TCB_TURIN
        return bytes([t["fmc"], t["bootloader"], t["tee"], t["snp"], 0, 0, 0, t["microcode"]])
    t = TCB_MILAN
    return bytes([t["bootloader"], t["tee"], 0, 0, 0, 0, t["snp"], t["microcode"]])


def _fill_body(r: bytearray, *, version: int, vmpl: int, report_data: bytes, measurement: bytes,
               host_data: bytes, key: str, counter: int, product: str) -> None:
    tcb = _tcb(product)
    struct.pack_into("<IIQ", r, 0x00, version, 0, POLICY)
    struct.pack_into("<II", r, 0x30, vmpl, ALGO_ECDSA_P384_SHA384)
    r[0x38:0x40] = tcb                                   # current_tcb
    struct.pack_into("<QI", r, 0x40, PLATFORM_INFO, SIGNING_KEY[key] << 2)
    r[0x50:0x90] = report_data
    r[0x90:0xC0] = measurement
    r[0xC0:0xE0] = host_data
    # id_key_digest, author_key_digest: zero (no ID block)
    r[0x140:0x160] = hashlib.sha256(b"emulated report id %d" % counter).digest()
    r[0x160:0x180] = b"\xff" * 32                        # report_id_ma: no migration agent
    r[0x180:0x188] = tcb                                 # reported_tcb
    if version >= 3:
        r[0x188:0x18B] = bytes(CPUID[product])
    chip = hashlib.sha512(b"emulated chip").digest()
    r[0x1A0:0x1E0] = chip[:8] + bytes(56) if product == "turin" else chip
    r[0x1E0:0x1E8] = tcb                                 # committed_tcb
    major, minor, build = FIRMWARE
    r[0x1E8:0x1EB] = bytes([build, minor, major])        # current version
    r[0x1EC:0x1EF] = bytes([build, minor, major])        # committed version
    r[0x1F0:0x1F8] = tcb                                 # launch_tcb
    if version >= 5:
        struct.pack_into("<QQ", r, 0x1F8, 0, 0)          # launch/current mitigation vectors


def _sign(r: bytearray, key: str) -> None:
    der_sig = pki.sign(pki.ec_key(f"snp-{key}"), bytes(r[:BODY]), hashes.SHA384())
    sig_r, sig_s = decode_dss_signature(der_sig)
    r[0x2A0:0x2E8] = sig_r.to_bytes(72, "little")
    r[0x2E8:0x330] = sig_s.to_bytes(72, "little")


def build_report(*, report_data: bytes, vmpl: int, version: int = 2, counter: int = 0,
                 measurement: bytes | None = None, host_data: bytes | None = None,
                 key: str = "vcek", product: str = "milan", corrupt_signature: bool = False) -> bytes:
    """A signed ATTESTATION_REPORT.  `report_data` is padded to 64 bytes; `counter` varies
    REPORT_ID so every report differs; `product` "milan" or "turin" picks the TCB layout;
    `corrupt_signature` flips one bit of R after signing."""
    if version not in VERSIONS:
        raise ValueError(f"version {version}: emulated versions are {VERSIONS}")
    if key not in SIGNING_KEY or product not in CPUID:
        raise ValueError(f"key={key!r} product={product!r}")
    if len(report_data) > 64:
        raise ValueError("report_data is at most 64 bytes")
    r = bytearray(SIZE)
    _fill_body(r, version=version, vmpl=vmpl, report_data=bytes(report_data).ljust(64, b"\0"),
               measurement=_fixed(measurement, 48, b"emulated launch measurement"),
               host_data=_fixed(host_data, 32, None), key=key, counter=counter, product=product)
    _sign(r, key)
    if corrupt_signature:
        r[BODY] ^= 1
    return bytes(r)


def _fixed(value: bytes | None, n: int, default_seed: bytes | None) -> bytes:
    if value is None:
        return hashlib.sha384(default_seed).digest()[:n] if default_seed else bytes(n)
    if len(value) != n:
        raise ValueError(f"field must be {n} bytes, got {len(value)}")
    return bytes(value)


# ---- SVSM ------------------------------------------------------------------------------------

def _guid_le(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


def svsm_manifest(service_guid: bytes | None, manifest_version: int) -> bytes:
    """The manifestblob.  `service_guid` is the 16 bytes the kernel passes (Linux guid_t, i.e.
    mixed-endian); None or the null GUID means SVSM_ATTEST_SERVICES (the services manifest),
    the vTPM GUID means SVSM_ATTEST_SINGLE_SERVICE (the vTPM's own manifest).  Any other GUID, or
    a single-service manifest version other than 0, is refused with ValueError (the SVSM fails the
    call; the kernel turns that into EINVAL)."""
    if service_guid is None or not any(service_guid):
        entries = [(_guid_le(SVSM_VTPM_GUID), VTPM_MANIFEST)]
        head_len = 24 * (1 + len(entries))
        total = head_len + sum(len(d) for _, d in entries)
        out = _guid_le(SVSM_MANIFEST_GUID) + struct.pack("<II", total, len(entries))
        cursor = head_len
        for g, d in entries:
            out += g + struct.pack("<II", cursor, len(d))
            cursor += len(d)
        return out + b"".join(d for _, d in entries)
    if bytes(service_guid) != _guid_le(SVSM_VTPM_GUID):
        raise ValueError(f"SVSM has no service {uuid.UUID(bytes_le=bytes(service_guid))}")
    if manifest_version != 0:
        raise ValueError(f"vTPM manifest version {manifest_version} unsupported (only 0)")
    return VTPM_MANIFEST


def svsm_report_data(nonce: bytes, manifest: bytes) -> bytes:
    """REPORT_DATA of an SVSM report: SHA-512(nonce || manifest)."""
    return hashlib.sha512(bytes(nonce) + bytes(manifest)).digest()


def build_svsm(*, nonce: bytes, service_guid: bytes | None, manifest_version: int, counter: int = 0,
               version: int = 2, key: str = "vcek") -> tuple[bytes, bytes]:
    """(outblob, manifestblob) of an SVSM attestation: the SVSM asks for a VMPL0 report."""
    manifest = svsm_manifest(service_guid, manifest_version)
    report = build_report(report_data=svsm_report_data(nonce, manifest), vmpl=0, version=version,
                          counter=counter, key=key)
    return report, manifest
