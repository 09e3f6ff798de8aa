"""The emulator's key material: deterministic, so every process (the suite, a FUSE mount, a fuzz
worker) derives the same keys and certificates, and the emulator's trust anchors are stable.

Keys are EC keys derived from a label; signatures use RFC 6979 deterministic ECDSA.  Nothing here
is secret: these keys exist only to sign emulated reports.
"""

from __future__ import annotations

import datetime
import functools
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2049, 12, 31, tzinfo=datetime.UTC)

_ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
                     "581a0db248b0a77aecec196accc52973", 16),
}


@functools.cache
def ec_key(label: str, curve_name: str = "secp384r1") -> ec.EllipticCurvePrivateKey:
    """The private key named `label` on `curve_name` ("secp256r1" or "secp384r1")."""
    curve = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1()}[curve_name]
    digest = hashlib.sha512(f"tsm-conformance emulator key {label}".encode()).digest()
    value = int.from_bytes(digest, "big") % (_ORDERS[curve_name] - 1) + 1
    return ec.derive_private_key(value, curve)


def ecdsa(hash_alg: hashes.HashAlgorithm) -> ec.ECDSA:
    return ec.ECDSA(hash_alg, deterministic_signing=True)


_SIGNED: dict[tuple[ec.EllipticCurvePrivateKey, str, bytes], bytes] = {}
SIGNED_KEPT = 4096  # signatures kept: a fuzz target's rebooted tree signs the same reports again


def sign(key: ec.EllipticCurvePrivateKey, data: bytes, hash_alg: hashes.HashAlgorithm) -> bytes:
    """DER ECDSA signature, deterministic: the same message signs the same, so a signature made
    before is the one signing again would make (signing costs more than a whole short fuzz input)."""
    k = (key, hash_alg.name, bytes(data))
    sig = _SIGNED.get(k)
    if sig is None:
        if len(_SIGNED) >= SIGNED_KEPT:
            _SIGNED.clear()
        sig = _SIGNED[k] = key.sign(data, ecdsa(hash_alg))
    return sig


def name(common_name: str, org: str = "tsm-conformance emulator") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, serial: int,
                hash_alg: hashes.SHA256 | hashes.SHA384 | None = None) -> x509.Certificate:
    """An X.509 v3 certificate for `key`, signed by `issuer_key` (deterministically)."""
    hash_alg = hash_alg or hashes.SHA384()
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key, hash_alg, ecdsa_deterministic=True)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
