"""Arm CCA attestation token (the arm_cca_guest outblob, docs/abi.md §5.3).

The only module that knows the token layout.  Sources (facts, not code):

* Arm RMM specification (DEN0137) §A7.2.3 "Attestation token format": the token is a collection
  of a CCA platform token (label 44234) and a Realm token (label 44241), each a tagged
  COSE_Sign1.  Two top-level forms exist:

  - **legacy** (RMM 1.0, draft-ffm-rats-cca-token-00/-01, TF-RMM ``attestation_token.c``):
    ``#6.399({44234: bstr .cbor COSE_Sign1_Tagged, 44241: bstr .cbor COSE_Sign1_Tagged})``
  - **cmw** (RMM 2.0, draft-ffm-rats-cca-token-02+, draft-ietf-rats-msg-wrap collections):
    ``#6.907({44234: [263, bstr], 44241: [263, bstr], ? 44258: [601, bstr]})`` where 263 is the
    CoAP content format ``application/eat+cwt`` and 601 ``application/uccs+cbor`` (the optional,
    unsigned CCA device token).  veraison/ccatoken ``evidence.go`` and veraison/rust-ccatoken
    ``evidence.rs`` decode the same two forms.
* RFC 9052: COSE_Sign1 = ``#6.18([protected bstr, unprotected map, payload bstr, signature bstr])``;
  the signed bytes are ``["Signature1", protected, external_aad (b""), payload]``.
* Realm claims (TF-RMM ``attestation_defs_priv.h``, RMM §A7.2.3.1): challenge 10 (64 bytes),
  personalization value 44235 (64 bytes), hash algo id 44236 (text), public key (RAK) 44237,
  initial measurement (RIM) 44238, extensible measurements (REM) 44239 (array of 4), public key
  hash algo id 44240 (text), profile 265 (text, absent in the legacy profile).  The 2024 profile
  (draft-ffm-rats-cca-token-03) adds instance id 256 and MEC policy 44243.
* Platform claims (islet / tf-a-tests ``attest_defines.h``, veraison ``platform.rs``): challenge 10
  (the RAK hash), instance id 256 (33 bytes), profile 265, lifecycle 2395, implementation id 2396
  (32 bytes), sw components 2399 (array of maps: measurement type 1, value 2, version 4, signer id
  5, hash algo 6), verification service 2400, config 2401, hash algo id 2402.
* The RAK claim is a raw uncompressed EC point when the realm token has no profile claim (legacy)
  and a CBOR-encoded COSE_Key (RFC 9052 §7: kty 1, crv -1, x -2, y -3) with a profile
  (veraison ccatoken ``Verify``; TF-RMM ``attestation_key.c`` encodes it with ``t_cose_key_encode``).
  `decode_rak` accepts both, by content (a COSE_Key is a CBOR map, a raw point starts with 0x04).

Choices:

* Strict: trailing bytes after the top-level item, duplicate map keys, missing mandatory claims,
  wrong types and wrong fixed lengths are ParseErrors (the kernel passes exactly the RMM's bytes:
  ``outblob_len = token_size``).  Unknown claims are kept in ``other_claims``, not rejected.
* COSE_Sign1 may be tagged (18) or untagged (``tagged`` records which); any other tag is an error.
* The signatures are not checked here (`verify.cca` does), and the RAK is not decoded during
  parsing, so a token with a malformed RAK parses and fails verification instead.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import cbor2

from .base import ParseError

FMT = "cca"

#: Bound on input size: the largest outblob any kernel passes (7.0's TSM_REPORT_OUTBLOB_MAX).
MAX_TOKEN_SIZE = 16 << 20
#: Nesting bound for cbor2: the deepest legitimate structure (sw component map in an array in a
#: map in a COSE payload) is 4; the bound keeps hostile nesting far from Python's recursion limit.
MAX_DEPTH = 16

TAG_LEGACY = 399
TAG_CMW = 907
TAG_COSE_SIGN1 = 18
LABEL_PLATFORM = 44234
LABEL_REALM = 44241
LABEL_DEVICE = 44258
CF_EAT_CWT = 263  # CoAP content format application/eat+cwt
CF_UCCS = 601  # application/uccs+cbor (the device token)

# Realm claim keys
R_CHALLENGE = 10
R_INSTANCE_ID = 256
R_PROFILE = 265
R_PERSONALIZATION = 44235
R_HASH_ALGO = 44236
R_PUBLIC_KEY = 44237
R_RIM = 44238
R_REM = 44239
R_PUBLIC_KEY_HASH_ALGO = 44240
R_MEC_POLICY = 44243

# Platform claim keys
P_CHALLENGE = 10
P_INSTANCE_ID = 256
P_PROFILE = 265
P_LIFECYCLE = 2395
P_IMPLEMENTATION_ID = 2396
P_SW_COMPONENTS = 2399
P_VERIFICATION_SERVICE = 2400
P_CONFIG = 2401
P_HASH_ALGO = 2402

# Software component keys
SW_TYPE = 1
SW_VALUE = 2
SW_VERSION = 4
SW_SIGNER_ID = 5
SW_HASH_ALGO = 6

# COSE
COSE_ALG = 1  # header parameter
COSE_KEY_KTY, COSE_KEY_CRV, COSE_KEY_X, COSE_KEY_Y = 1, -1, -2, -3
COSE_KTY_EC2 = 2
COSE_CURVES = {1: "secp256r1", 2: "secp384r1", 3: "secp521r1"}
#: Uncompressed SEC1 point length -> curve.
RAW_POINT_CURVES = {65: "secp256r1", 97: "secp384r1", 133: "secp521r1"}

MEASUREMENT_SIZES = (32, 48, 64)


@dataclass(frozen=True)
class CoseSign1:
    """One COSE_Sign1 message, with the raw bytes its signature covers."""

    alg: int | None  # protected header parameter 1
    protected: bytes  # the serialized protected header (signed as-is)
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes
    tagged: bool

    def to_be_signed(self) -> bytes:
        """Sig_structure for COSE_Sign1 with empty external_aad (RFC 9052 §4.4)."""
        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])


@dataclass(frozen=True)
class SwComponent:
    measurement_value: bytes
    signer_id: bytes
    measurement_type: str | None = None
    version: str | None = None
    hash_algo_id: str | None = None


@dataclass(frozen=True)
class PlatformToken:
    profile: str
    challenge: bytes  # hash of the RAK claim bytes, by the realm's public_key_hash_algo_id
    implementation_id: bytes
    instance_id: bytes
    config: bytes
    lifecycle: int
    sw_components: tuple[SwComponent, ...]
    hash_algo_id: str
    verification_service: str | None
    alg: int | None
    other_claims: dict[str, Any] = field(default_factory=dict)
    _cose: CoseSign1 | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class RealmToken:
    challenge: bytes
    personalization_value: bytes
    initial_measurement: bytes  # RIM
    extensible_measurements: tuple[bytes, ...]  # REM[0..3]
    hash_algo_id: str
    public_key: bytes  # RAK: raw EC point (legacy) or CBOR COSE_Key (profiled)
    public_key_hash_algo_id: str
    profile: str | None
    alg: int | None
    instance_id: bytes | None = None  # 2024 profile
    mec_policy: Any = None  # 2024 profile ("private"/"shared" or an integer in some drafts)
    other_claims: dict[str, Any] = field(default_factory=dict)
    _cose: CoseSign1 | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class CcaToken:
    collection: str  # "legacy" (tag 399) | "cmw" (tag 907)
    platform: PlatformToken
    realm: RealmToken
    device_token: bytes | None = None  # CMW entry 44258, unsigned, kept raw
    other_entries: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EcPoint:
    """A decoded RAK: curve name (cryptography's spelling) and big-endian coordinates."""

    curve: str
    x: bytes
    y: bytes
    form: str  # "raw" | "cose_key"


# --- CBOR helpers --------------------------------------------------------------------------------

def _decode(data: bytes, what: str) -> Any:
    """One complete CBOR item; every decoder failure (and trailing bytes) becomes ParseError."""
    fp = io.BytesIO(data)
    try:
        dec = cbor2.CBORDecoder(fp, max_depth=MAX_DEPTH, allow_duplicate_keys=False)
        value = dec.decode()
    except (Exception, RecursionError, MemoryError) as e:  # cbor2 raises many types; none may leak
        raise ParseError(FMT, f"{what}: malformed CBOR ({type(e).__name__}: {e})") from None
    end = fp.tell()
    if end != len(data):
        raise ParseError(FMT, f"{what}: {len(data) - end} trailing bytes after the CBOR item", end)
    return value


# cbor2 decodes the content of a tag immutably (frozendict, tuple), elsewhere as dict and list.
_ARRAY = (list, tuple)


def _claim_name(key: Any) -> str:
    return str(key)


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-friendly copy of an unknown claim (tags become {"tag", "value"}); depth-bounded."""
    if depth > MAX_DEPTH:
        return "..."
    if isinstance(value, cbor2.CBORTag):
        return {"tag": value.tag, "value": _plain(value.value, depth + 1)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, _ARRAY):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (bytes, str, int, float, bool)) or value is None:
        return value
    return repr(value)


class _Claims:
    """Typed access to a claims map; records which keys were consumed."""

    def __init__(self, what: str, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise ParseError(FMT, f"{what}: claims must be a map, not {type(value).__name__}")
        self.what = what
        self.map = value
        self.used: set[Any] = set()

    def _get(self, key: int, name: str, required: bool) -> Any:
        if key not in self.map:
            if required:
                raise ParseError(FMT, f"{self.what}: missing mandatory claim {name} ({key})")
            return None
        self.used.add(key)
        return self.map[key]

    # A required claim is always there (or ParseError): only required=False may give None.
    @overload
    def bstr(self, key: int, name: str, sizes: tuple[int, ...] | None = None,
             required: Literal[True] = True) -> bytes: ...
    @overload
    def bstr(self, key: int, name: str, sizes: tuple[int, ...] | None = None, *,
             required: bool) -> bytes | None: ...

    def bstr(self, key: int, name: str, sizes: tuple[int, ...] | None = None,
             required: bool = True) -> bytes | None:
        v = self._get(key, name, required)
        if v is None and not required:
            return None
        if not isinstance(v, bytes):
            raise ParseError(FMT, f"{self.what}: {name} ({key}) must be a byte string, not {type(v).__name__}")
        if sizes is not None and len(v) not in sizes:
            raise ParseError(FMT, f"{self.what}: {name} ({key}) is {len(v)} bytes, expected "
                                  f"{' or '.join(map(str, sizes))}")
        return v

    @overload
    def tstr(self, key: int, name: str, required: Literal[True] = True) -> str: ...
    @overload
    def tstr(self, key: int, name: str, *, required: bool) -> str | None: ...

    def tstr(self, key: int, name: str, required: bool = True) -> str | None:
        v = self._get(key, name, required)
        if v is None and not required:
            return None
        if not isinstance(v, str):
            raise ParseError(FMT, f"{self.what}: {name} ({key}) must be a text string, not {type(v).__name__}")
        return v

    def uint(self, key: int, name: str, limit: int) -> int:
        v = self._get(key, name, True)
        if type(v) is not int or not 0 <= v <= limit:
            raise ParseError(FMT, f"{self.what}: {name} ({key}) must be an integer 0..{limit:#x}, got {v!r}")
        return v

    def array(self, key: int, name: str) -> list[Any]:
        v = self._get(key, name, True)
        if not isinstance(v, _ARRAY):
            raise ParseError(FMT, f"{self.what}: {name} ({key}) must be an array, not {type(v).__name__}")
        return list(v)

    def optional_raw(self, key: int) -> Any:
        return self._get(key, "", False)

    def others(self) -> dict[str, Any]:
        return {_claim_name(k): _plain(v) for k, v in self.map.items() if k not in self.used}


# --- COSE_Sign1 ----------------------------------------------------------------------------------

def _cose_sign1(data: bytes, what: str) -> CoseSign1:
    value = _decode(data, what)
    tagged = isinstance(value, cbor2.CBORTag)
    if tagged:
        if value.tag != TAG_COSE_SIGN1:
            raise ParseError(FMT, f"{what}: tag {value.tag}, expected COSE_Sign1 tag {TAG_COSE_SIGN1}")
        value = value.value
    if not isinstance(value, _ARRAY) or len(value) != 4:
        raise ParseError(FMT, f"{what}: COSE_Sign1 must be a 4-element array")
    protected, unprotected, payload, signature = value
    if not isinstance(protected, bytes):
        raise ParseError(FMT, f"{what}: protected header must be a byte string")
    if not isinstance(unprotected, Mapping):
        raise ParseError(FMT, f"{what}: unprotected header must be a map")
    if not isinstance(payload, bytes):
        raise ParseError(FMT, f"{what}: payload must be a byte string (detached payloads are not used)")
    if not isinstance(signature, bytes):
        raise ParseError(FMT, f"{what}: signature must be a byte string")
    alg = _protected_alg(protected, what)
    return CoseSign1(alg, protected, {_claim_name(k): _plain(v) for k, v in unprotected.items()},
                     payload, signature, tagged)


def _protected_alg(protected: bytes, what: str) -> int | None:
    """The alg parameter; an empty protected bstr stands for an empty map (RFC 9052 §3)."""
    if not protected:
        return None
    header = _decode(protected, f"{what} protected header")
    if not isinstance(header, Mapping):
        raise ParseError(FMT, f"{what}: protected header must encode a map")
    alg = header.get(COSE_ALG)
    if alg is not None and type(alg) is not int:
        raise ParseError(FMT, f"{what}: alg must be an integer, got {alg!r}")
    return alg


# --- claims --------------------------------------------------------------------------------------

def _sw_component(i: int, value: Any) -> SwComponent:
    c = _Claims(f"platform sw component {i}", value)
    return SwComponent(
        measurement_value=c.bstr(SW_VALUE, "measurement value"),
        signer_id=c.bstr(SW_SIGNER_ID, "signer id"),
        measurement_type=c.tstr(SW_TYPE, "measurement type", required=False),
        version=c.tstr(SW_VERSION, "version", required=False),
        hash_algo_id=c.tstr(SW_HASH_ALGO, "hash algo id", required=False),
    )


def _platform(cose: CoseSign1) -> PlatformToken:
    c = _Claims("platform token", _decode(cose.payload, "platform token payload"))
    components = c.array(P_SW_COMPONENTS, "sw components")
    if not components:
        raise ParseError(FMT, "platform token: sw components (2399) is empty")
    return PlatformToken(
        profile=c.tstr(P_PROFILE, "profile"),
        challenge=c.bstr(P_CHALLENGE, "challenge", MEASUREMENT_SIZES),
        implementation_id=c.bstr(P_IMPLEMENTATION_ID, "implementation id", (32,)),
        instance_id=c.bstr(P_INSTANCE_ID, "instance id", (33,)),
        config=c.bstr(P_CONFIG, "config"),
        lifecycle=c.uint(P_LIFECYCLE, "lifecycle", 0xFFFF),
        sw_components=tuple(_sw_component(i, v) for i, v in enumerate(components)),
        hash_algo_id=c.tstr(P_HASH_ALGO, "hash algo id"),
        verification_service=c.tstr(P_VERIFICATION_SERVICE, "verification service", required=False),
        alg=cose.alg,
        other_claims=c.others(),
        _cose=cose,
    )


def _realm(cose: CoseSign1) -> RealmToken:
    c = _Claims("realm token", _decode(cose.payload, "realm token payload"))
    rem = c.array(R_REM, "extensible measurements")
    if len(rem) != 4:
        raise ParseError(FMT, f"realm token: extensible measurements (44239) has {len(rem)} entries, expected 4")
    for i, m in enumerate(rem):
        if not isinstance(m, bytes) or len(m) not in MEASUREMENT_SIZES:
            raise ParseError(FMT, f"realm token: extensible measurement {i} must be a 32, 48 or 64-byte string")
    rak = c.bstr(R_PUBLIC_KEY, "public key")
    if not rak:
        raise ParseError(FMT, "realm token: public key (44237) is empty")
    return RealmToken(
        challenge=c.bstr(R_CHALLENGE, "challenge", (64,)),
        personalization_value=c.bstr(R_PERSONALIZATION, "personalization value", (64,)),
        initial_measurement=c.bstr(R_RIM, "initial measurement", MEASUREMENT_SIZES),
        extensible_measurements=tuple(rem),
        hash_algo_id=c.tstr(R_HASH_ALGO, "hash algo id"),
        public_key=rak,
        public_key_hash_algo_id=c.tstr(R_PUBLIC_KEY_HASH_ALGO, "public key hash algo id"),
        profile=c.tstr(R_PROFILE, "profile", required=False),
        alg=cose.alg,
        instance_id=c.bstr(R_INSTANCE_ID, "instance id", (33,), required=False),
        mec_policy=_plain(c.optional_raw(R_MEC_POLICY)),
        other_claims=c.others(),
        _cose=cose,
    )


# --- collection ----------------------------------------------------------------------------------

def _collection(value: Any) -> tuple[str, bytes, bytes, bytes | None, dict[str, Any]]:
    """(form, platform COSE bytes, realm COSE bytes, device token, other entries)."""
    if not isinstance(value, cbor2.CBORTag) or value.tag not in (TAG_LEGACY, TAG_CMW):
        got = f"tag {value.tag}" if isinstance(value, cbor2.CBORTag) else type(value).__name__
        raise ParseError(FMT, f"top level: expected CBOR tag {TAG_LEGACY} or {TAG_CMW}, got {got}", 0)
    entries = value.value
    if not isinstance(entries, Mapping):
        raise ParseError(FMT, f"tag {value.tag}: the collection must be a map")
    if value.tag == TAG_LEGACY:
        return ("legacy", _legacy_entry(entries, LABEL_PLATFORM, "platform"),
                _legacy_entry(entries, LABEL_REALM, "realm"), None, _unknown_entries(entries))
    device = None
    if LABEL_DEVICE in entries:
        device = _cmw_entry(entries, LABEL_DEVICE, "device", CF_UCCS)
    return ("cmw", _cmw_entry(entries, LABEL_PLATFORM, "platform", CF_EAT_CWT),
            _cmw_entry(entries, LABEL_REALM, "realm", CF_EAT_CWT), device, _unknown_entries(entries))


def _legacy_entry(entries: Mapping[Any, Any], label: int, what: str) -> bytes:
    v = entries.get(label)
    if not isinstance(v, bytes):
        raise ParseError(FMT, f"collection: {what} token ({label}) missing or not a byte string")
    return v


def _cmw_entry(entries: Mapping[Any, Any], label: int, what: str, content_format: int) -> bytes:
    v = entries.get(label)
    if not isinstance(v, _ARRAY) or len(v) != 2:
        raise ParseError(FMT, f"CMW collection: {what} entry ({label}) missing or not a [type, value] pair")
    cf, blob = v
    if type(cf) is not int or cf != content_format:
        raise ParseError(FMT, f"CMW collection: {what} entry type {cf!r}, expected content format {content_format}")
    if not isinstance(blob, bytes):
        raise ParseError(FMT, f"CMW collection: {what} entry value must be a byte string")
    return blob


def _unknown_entries(entries: Mapping[Any, Any]) -> dict[str, Any]:
    known = (LABEL_PLATFORM, LABEL_REALM, LABEL_DEVICE)
    return {_claim_name(k): _plain(v) for k, v in entries.items() if k not in known}


# --- public API ----------------------------------------------------------------------------------

def sniff(data: bytes) -> bool:
    """Starts with CBOR tag 399 (d9 01 8f) or 907 (d9 03 8b)."""
    return bytes(data[:3]) in (b"\xd9\x01\x8f", b"\xd9\x03\x8b")


def parse_token(data: bytes) -> CcaToken:
    """Parse a CCA attestation token (either collection form).  Raises ParseError only."""
    data = bytes(data)
    if len(data) > MAX_TOKEN_SIZE:
        raise ParseError(FMT, f"{len(data)} bytes is larger than any outblob ({MAX_TOKEN_SIZE})")
    if not data:
        raise ParseError(FMT, "empty input", 0)
    form, platform_raw, realm_raw, device, others = _collection(_decode(data, "token"))
    platform = _platform(_cose_sign1(platform_raw, "platform token"))
    realm = _realm(_cose_sign1(realm_raw, "realm token"))
    return CcaToken(form, platform, realm, device, others)


def decode_rak(public_key: bytes) -> EcPoint:
    """The realm attestation key claim as an EC point: a raw uncompressed SEC1 point (legacy
    profile) or a CBOR COSE_Key of kty EC2 (profiled tokens).  Raises ParseError."""
    public_key = bytes(public_key)
    if public_key[:1] == b"\x04" and len(public_key) in RAW_POINT_CURVES:
        n = (len(public_key) - 1) // 2
        return EcPoint(RAW_POINT_CURVES[len(public_key)], public_key[1:1 + n], public_key[1 + n:], "raw")
    key = _decode(public_key, "realm public key")
    if not isinstance(key, Mapping):
        raise ParseError(FMT, "realm public key: neither an uncompressed EC point nor a COSE_Key map")
    kty = key.get(COSE_KEY_KTY)
    if type(kty) is not int or kty != COSE_KTY_EC2:
        raise ParseError(FMT, f"realm public key: COSE_Key kty {key.get(COSE_KEY_KTY)!r}, expected EC2 (2)")
    crv = key.get(COSE_KEY_CRV)
    if type(crv) is not int or crv not in COSE_CURVES:
        raise ParseError(FMT, f"realm public key: COSE_Key crv {crv!r} is not P-256/P-384/P-521")
    x, y = key.get(COSE_KEY_X), key.get(COSE_KEY_Y)
    if not isinstance(x, bytes) or not isinstance(y, bytes):
        raise ParseError(FMT, "realm public key: COSE_Key x and y must be byte strings "
                              "(compressed points are not used by CCA)")
    return EcPoint(COSE_CURVES[crv], x, y, "cose_key")
