"""Verification of a parsed Arm CCA attestation token.

Steps (the delegated model of RMM §A7.2.3 and draft-ffm-rats-cca-token; veraison/ccatoken
``Evidence.Verify`` checks the same three things):

* ``realm.signature``: the realm token's COSE_Sign1 verifies under the RAK the realm token itself
  carries.  This is self-consistency only (anyone can make a key), so it may pass without anchors.
* ``binding``: the platform token's challenge equals the hash of the RAK claim bytes under the
  realm's public key hash algorithm: this is what ties the RAK to the platform.
* ``platform.signature``: the platform token's COSE_Sign1 verifies under a CPAK the user trusts
  (a bare public key, or an anchor certificate's key).  Without anchors: ``unsupported``.

COSE ECDSA (RFC 9053 §2.1): ES256/ES384/ES512 are alg -7/-35/-36 (SHA-256/384/512); the signature
is r || s, each big-endian and as long as the key's curve order.  Nothing here raises on bad input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..formats.base import ParseError
from ..formats.cca import CcaToken, CoseSign1, decode_rak
from .base import Status, TrustAnchors, Verification

#: COSE alg -> (name, hash)
COSE_ECDSA: dict[int, tuple[str, Callable[[], hashes.HashAlgorithm]]] = {
    -7: ("ES256", hashes.SHA256),
    -35: ("ES384", hashes.SHA384),
    -36: ("ES512", hashes.SHA512),
}
#: Hash algorithm names (IANA "Named Information Hash Algorithm" spellings used by CCA).
HASHES = {"sha-224": "sha224", "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}
_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1, "secp521r1": ec.SECP521R1}


def verify_token(token: CcaToken, anchors: TrustAnchors) -> Verification:
    v = Verification()
    _step(v, "realm.signature", lambda: _realm_signature(token))
    _step(v, "binding", lambda: _binding(token))
    _step(v, "platform.signature", lambda: _platform_signature(token, anchors))
    return v


def _step(v: Verification, name: str, run: Callable[[], tuple[Status, str]]) -> None:
    """Record one step; an unexpected exception is a failed step, never a crash of the caller."""
    try:
        status, detail = run()
    except Exception as e:  # noqa: BLE001 -- a verifier must not raise on hostile input
        status, detail = "fail", f"{type(e).__name__}: {e}"
    v.add(name, status, detail)


def rak_public_key(public_key: bytes) -> ec.EllipticCurvePublicKey:
    """The RAK claim as a cryptography key.  Raises ValueError (ParseError is one)."""
    point = decode_rak(public_key)
    curve = _CURVES[point.curve]()
    size = (curve.key_size + 7) // 8
    if len(point.x) != size or len(point.y) != size:
        raise ValueError(f"RAK coordinates are {len(point.x)}/{len(point.y)} bytes, {point.curve} needs {size}")
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + point.x + point.y)


def cose_verify(cose: CoseSign1, key: ec.EllipticCurvePublicKey) -> tuple[Status, str]:
    """(status, detail) of one COSE_Sign1 ECDSA signature check."""
    if cose.alg is None:
        return "fail", "no alg in the protected header"
    if cose.alg not in COSE_ECDSA:
        return "unsupported", f"COSE alg {cose.alg} (only ES256/ES384/ES512)"
    name, hash_alg = COSE_ECDSA[cose.alg]
    size = (key.curve.key_size + 7) // 8
    if len(cose.signature) != 2 * size:
        return "fail", f"{name} signature is {len(cose.signature)} bytes, {key.curve.name} needs {2 * size}"
    r = int.from_bytes(cose.signature[:size], "big")
    s = int.from_bytes(cose.signature[size:], "big")
    try:
        key.verify(encode_dss_signature(r, s), cose.to_be_signed(), ec.ECDSA(hash_alg()))
    except InvalidSignature:
        return "fail", f"{name} signature does not verify"
    return "pass", f"{name} with {key.curve.name}"


def _realm_signature(token: CcaToken) -> tuple[Status, str]:
    cose = token.realm._cose
    if cose is None:
        return "unsupported", "the parsed realm token carries no COSE_Sign1"
    try:
        key = rak_public_key(token.realm.public_key)
    except (ParseError, ValueError, KeyError) as e:
        return "fail", f"RAK is not a usable EC public key: {e}"
    status, detail = cose_verify(cose, key)
    return status, f"{detail} (RAK from the realm token)"


def _binding(token: CcaToken) -> tuple[Status, str]:
    alg = token.realm.public_key_hash_algo_id
    if alg not in HASHES:
        return "unsupported", f"realm public key hash algo {alg!r} is not one of {', '.join(HASHES)}"
    digest = hashlib.new(HASHES[alg], token.realm.public_key).digest()
    if digest != token.platform.challenge:
        return "fail", (f"platform challenge {token.platform.challenge.hex()} != {alg}(RAK) "
                        f"{digest.hex()}")
    return "pass", f"platform challenge = {alg}(RAK)"


def _anchor_keys(anchors: TrustAnchors) -> Iterator[ec.EllipticCurvePublicKey]:
    for k in anchors.public_keys:
        if isinstance(k, ec.EllipticCurvePublicKey):
            yield k
    for c in anchors.certificates:
        k = c.public_key()
        if isinstance(k, ec.EllipticCurvePublicKey):
            yield k


def _platform_signature(token: CcaToken, anchors: TrustAnchors) -> tuple[Status, str]:
    cose = token.platform._cose
    if cose is None:
        return "unsupported", "the parsed platform token carries no COSE_Sign1"
    if not anchors:
        return "unsupported", "no trust anchor (give the CPAK public key)"
    keys = list(_anchor_keys(anchors))
    if not keys:
        return "unsupported", "no EC key among the trust anchors"
    last = ""
    for i, key in enumerate(keys):
        status, detail = cose_verify(cose, key)
        if status == "pass":
            return "pass", f"{detail} (anchor key {i})"
        if status == "unsupported":
            return status, detail
        last = detail
    return "fail", f"no anchor key verifies it ({len(keys)} tried; last: {last})"
