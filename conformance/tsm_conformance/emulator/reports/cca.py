"""The emulator's Arm CCA attestation token, encoded independently of `formats/cca.py`.

Written from the specifications, like the rest of the emulator (deliberately not sharing code with
the parser, so a round trip tests both):

* RMM specification (DEN0137) §A7.2.3: a collection of the CCA platform token (label 44234) and
  the Realm token (label 44241), each a tagged COSE_Sign1 (RFC 9052, tag 18).  Legacy form
  ``#6.399({44234: bstr, 44241: bstr})`` as TF-RMM ``attest_cca_token_create`` writes it; CMW form
  ``#6.907({44234: [263, bstr], 44241: [263, bstr]})`` (263 = application/eat+cwt) as RMM 2.0 and
  draft-ffm-rats-cca-token-02+ define it.
* Realm claims in the order TF-RMM ``attest_realm_token_create`` writes them: challenge (10),
  personalization value (44235), public key (44237), hash algo (44236), public key hash algo
  (44240), profile (265), RIM (44238), REM (44239, four entries).  The RAK is a COSE_Key
  {kty 1: EC2 2, crv -1: P-384 2, x -2, y -3} (TF-RMM ``attestation_key.c``, t_cose_key_encode);
  the platform challenge is SHA-256 of those COSE_Key bytes.  Both tokens are signed ES384
  (COSE alg -35): the COSE signature is r || s, 48 bytes each.
* Platform claims (draft-ffm-rats-cca-token, the "cca_platform#1.0.0" profile): profile 265,
  challenge 10, implementation id 2396 (32 bytes), instance id 256 (33 bytes, first byte 0x01),
  config 2401, lifecycle 2395 (0x3000: "secured"), sw components 2399 (maps with type 1, value 2,
  signer id 5, hash algo 6), verification service 2400, hash algo 2402.

Keys come from `emulator/pki.py` (deterministic), so every process builds the same bytes.  The
real RMM signs with randomized ECDSA, so each generation's token differs; pki signs
deterministically, so instead the RAK rotates with `counter` through a pool of `RAK_POOL` keys
(the platform token binds whichever RAK signed).  The platform token depends only on the RAK, so it
is built once per pool entry and cached; a token then costs one ES384 signature (about 1 ms).
"""

from __future__ import annotations

import functools
import hashlib

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .. import pki

CURVE = "secp384r1"
COORD = 48  # P-384 coordinate / signature half size
ES384 = -35
RAK_POOL = 64

PLATFORM_PROFILE = "tag:arm.com,2023:cca_platform#1.0.0"
REALM_PROFILE = "tag:arm.com,2023:realm#1.0.0"
VERIFICATION_SERVICE = "https://veraison.example/.well-known/veraison/verification"

#: The emulated platform's firmware: (measurement type, version) -> measurement/signer derived below.
SW_COMPONENTS = (("RSE_BL1_2", "1.0.0"), ("RSE_BL2", "1.0.0"), ("RSE_S", "1.0.0"),
                 ("AP_BL1", "2.10.0"), ("AP_BL2", "2.10.0"), ("AP_BL31", "2.10.0"), ("RMM", "0.9.0"))


def _fixed(label: str, n: int) -> bytes:
    """Stable stand-in bytes for an identity or measurement."""
    return hashlib.sha512(f"tsm-conformance emulated cca {label}".encode()).digest()[:n]


def cpak() -> ec.EllipticCurvePrivateKey:
    return pki.ec_key("cca-cpak", CURVE)


def rak(counter: int) -> ec.EllipticCurvePrivateKey:
    return pki.ec_key(f"cca-rak-{counter % RAK_POOL}", CURVE)


def anchor_pem() -> bytes:
    """The CPAK public key (SubjectPublicKeyInfo PEM): the trust anchor for emulated tokens."""
    return cpak().public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _sign1(key: ec.EllipticCurvePrivateKey, payload: bytes, corrupt: bool = False) -> bytes:
    """A tagged COSE_Sign1 over `payload`, ES384, empty unprotected header (`corrupt`: one bit of
    the signature flipped, for the report-signature-corrupt fault)."""
    protected = cbor2.dumps({1: ES384})
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(pki.sign(key, to_sign, hashes.SHA384()))
    signature = r.to_bytes(COORD, "big") + s.to_bytes(COORD, "big")
    if corrupt:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


@functools.lru_cache(maxsize=RAK_POOL)
def _rak_cose_key(index: int) -> bytes:
    nums = rak(index).public_key().public_numbers()
    return cbor2.dumps({1: 2, -1: 2, -2: nums.x.to_bytes(COORD, "big"), -3: nums.y.to_bytes(COORD, "big")})


@functools.lru_cache(maxsize=RAK_POOL)
def _platform_token(index: int) -> bytes:
    """The CPAK-signed platform token binding RAK number `index` (cached: it ignores the challenge)."""
    components = [{1: name, 2: _fixed(f"measurement {name}", 32), 4: version,
                   5: _fixed("signer", 32), 6: "sha-256"} for name, version in SW_COMPONENTS]
    claims = {
        265: PLATFORM_PROFILE,
        10: hashlib.sha256(_rak_cose_key(index)).digest(),
        2396: _fixed("implementation", 32),
        256: b"\x01" + _fixed("instance", 32),
        2401: _fixed("config", 4),
        2395: 0x3000,
        2399: components,
        2400: VERIFICATION_SERVICE,
        2402: "sha-256",
    }
    return _sign1(cpak(), cbor2.dumps(claims))


def _realm_token(index: int, challenge: bytes, personalization_value: bytes, corrupt: bool = False) -> bytes:
    claims = {
        10: challenge,
        44235: personalization_value,
        44237: _rak_cose_key(index),
        44236: "sha-256",
        44240: "sha-256",
        265: REALM_PROFILE,
        44238: _fixed("rim", 32),
        44239: [bytes(32)] * 4,  # no RSI_MEASUREMENT_EXTEND yet
    }
    return _sign1(rak(index), cbor2.dumps(claims), corrupt)


def build_token(*, challenge: bytes, counter: int = 0, cmw: bool = False,
                personalization_value: bytes = bytes(64), corrupt_signature: bool = False) -> bytes:
    """The token for an (already zero-padded, 64-byte) challenge; `cmw` selects tag 907 over 399;
    `corrupt_signature` flips one bit of the realm token's signature."""
    if len(challenge) != 64 or len(personalization_value) != 64:
        raise ValueError("challenge and personalization value are 64 bytes")
    index = counter % RAK_POOL
    platform = _platform_token(index)
    realm = _realm_token(index, bytes(challenge), bytes(personalization_value), corrupt_signature)
    if cmw:
        return cbor2.dumps(cbor2.CBORTag(907, {44234: [263, platform], 44241: [263, realm]}))
    return cbor2.dumps(cbor2.CBORTag(399, {44234: platform, 44241: realm}))
