"""Arm CCA token: the parser and verifier against the emulator's independent builder."""

from __future__ import annotations

import json

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsm_conformance.emulator.reports import cca as emu
from tsm_conformance.formats import cca, registry
from tsm_conformance.formats.base import ParseError, to_jsonable
from tsm_conformance.verify.base import TrustAnchors, anchors_from_pem
from tsm_conformance.verify.cca import verify_token

ANCHORS = anchors_from_pem([emu.anchor_pem()])
CHALLENGE = bytes(range(64))
STEPS = ("realm.signature", "binding", "platform.signature")
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def token(cmw: bool = False, counter: int = 0, challenge: bytes = CHALLENGE) -> bytes:
    return emu.build_token(challenge=challenge, counter=counter, cmw=cmw)


def statuses(data: bytes, anchors: TrustAnchors = ANCHORS) -> dict[str, str]:
    v = verify_token(cca.parse_token(data), anchors)
    return {s.name: s.status for s in v.steps}


# --- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cmw,form,head", [(False, "legacy", "d9018f"), (True, "cmw", "d9038b")])
def test_parses_emulator_output(cmw: bool, form: str, head: str) -> None:
    data = token(cmw)
    assert data[:3].hex() == head and cca.sniff(data)
    assert registry.detect(data) == "cca"
    t = cca.parse_token(data)
    assert t.collection == form
    assert registry.field(t, registry.NONCE_FIELD["cca"]) == CHALLENGE
    r, p = t.realm, t.platform
    assert r.personalization_value == bytes(64)
    assert r.profile == emu.REALM_PROFILE and p.profile == emu.PLATFORM_PROFILE
    assert r.hash_algo_id == r.public_key_hash_algo_id == p.hash_algo_id == "sha-256"
    assert len(r.initial_measurement) == 32 and len(r.extensible_measurements) == 4
    assert r.alg == p.alg == -35
    assert len(p.sw_components) == len(emu.SW_COMPONENTS)
    assert [c.measurement_type for c in p.sw_components] == [n for n, _ in emu.SW_COMPONENTS]
    assert len(p.instance_id) == 33 and p.instance_id[0] == 1 and len(p.implementation_id) == 32
    assert p.lifecycle == 0x3000 and p.verification_service == emu.VERIFICATION_SERVICE
    assert cca.decode_rak(r.public_key).form == "cose_key"
    assert t.device_token is None and not p.other_claims and not r.other_claims
    json.dumps(to_jsonable(t))  # the inspect output: no raw bytes or CBOR objects left


def test_sniff_rejects_other_tags() -> None:
    assert not cca.sniff(b"\xd9\x01\x90") and not cca.sniff(b"") and not cca.sniff(b"\x04\x00\x00\x00")


def _entries(data: bytes) -> dict:
    return dict(cbor2.loads(data).value)


def _legacy(entries: dict) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(399, entries))


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d + b"\x00", "trailing"),
    (lambda d: b"", "empty"),
    (lambda d: cbor2.dumps(cbor2.CBORTag(400, {})), "expected CBOR tag"),
    (lambda d: _legacy({44234: _entries(d)[44234]}), "realm token"),
    (lambda d: _legacy({**_entries(d), 44241: [263, _entries(d)[44241]]}), "realm token"),
    (lambda d: cbor2.dumps(cbor2.CBORTag(907, {44234: [263, _entries(d)[44234]], 44241: [264, _entries(d)[44241]]})),
     "content format"),
    (lambda d: cbor2.dumps(cbor2.CBORTag(907, _entries(d))), "[type, value]"),
    (lambda d: b"\xd9\x01\x8f\xa2\x01\x01\x01\x02", "malformed CBOR"),  # duplicate key
    (lambda d: b"\xd9\x01\x8f" + b"\x81" * 100_000, "malformed CBOR"),  # hostile nesting
    (lambda d: b"\xd9\x01\x8f\x5b" + b"\x7f" + b"\xff" * 7, "malformed CBOR"),  # 2**63-byte bstr
])
def test_malformed_collections(mutate, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        cca.parse_token(mutate(token()))


def _with_realm_claims(data: bytes, change) -> bytes:
    """Re-encode the realm payload after `change(claims)` (signature left stale)."""
    entries = _entries(data)
    cose = cbor2.loads(entries[44241])
    claims = dict(cbor2.loads(cose.value[2]))
    change(claims)
    entries[44241] = cbor2.dumps(cbor2.CBORTag(18, [cose.value[0], {}, cbor2.dumps(claims), cose.value[3]]))
    return _legacy(entries)


@pytest.mark.parametrize("change,message", [
    (lambda c: c.pop(10), "missing mandatory claim challenge"),
    (lambda c: c.pop(44237), "public key"),
    (lambda c: c.update({10: b"x" * 63}), "63 bytes"),
    (lambda c: c.update({44236: b"sha-256"}), "text string"),
    (lambda c: c.update({44239: list(c[44239])[:3]}), "3 entries"),
    (lambda c: c.update({44238: "rim"}), "byte string"),
])
def test_realm_claim_errors(change, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        cca.parse_token(_with_realm_claims(token(), change))


def test_unknown_claims_are_kept() -> None:
    t = cca.parse_token(_with_realm_claims(token(), lambda c: c.update({99: cbor2.CBORTag(60000, [1, b"\x01"])})))
    assert t.realm.other_claims == {"99": {"tag": 60000, "value": [1, b"\x01"]}}
    assert statuses(_with_realm_claims(token(), lambda c: c.update({99: 1})))["realm.signature"] == "fail"


def test_decode_rak_forms() -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    raw = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    p = cca.decode_rak(raw)
    assert (p.form, p.curve, p.x + p.y) == ("raw", "secp384r1", raw[1:])
    n = key.public_numbers()
    c = cca.decode_rak(cbor2.dumps({1: 2, -1: 2, -2: n.x.to_bytes(48, "big"), -3: n.y.to_bytes(48, "big")}))
    assert (c.form, c.x + c.y) == ("cose_key", raw[1:])
    for bad in (b"\x04\x00", cbor2.dumps({1: 1, -1: 2}), cbor2.dumps({1: 2, -1: 9}), cbor2.dumps([1])):
        with pytest.raises(ParseError):
            cca.decode_rak(bad)


# --- verification --------------------------------------------------------------------------------

@pytest.mark.parametrize("cmw", [False, True])
def test_verifies_with_the_emulator_anchor(cmw: bool) -> None:
    assert statuses(token(cmw)) == dict.fromkeys(STEPS, "pass")


def test_platform_step_needs_anchors() -> None:
    got = statuses(token(), TrustAnchors())
    assert got == {"realm.signature": "pass", "binding": "pass", "platform.signature": "unsupported"}
    other = TrustAnchors((), (ec.generate_private_key(ec.SECP384R1()).public_key(),))
    assert statuses(token(), other)["platform.signature"] == "fail"
    p256 = TrustAnchors((), (ec.generate_private_key(ec.SECP256R1()).public_key(), *ANCHORS.public_keys))
    assert statuses(token(), p256)["platform.signature"] == "pass"  # tries every anchor key


def test_realm_signature_fails_on_a_flipped_payload_byte() -> None:
    data = bytearray(token())
    rim = cca.parse_token(bytes(data)).realm.initial_measurement
    at = bytes(data).index(rim) + 5
    data[at] ^= 0x01
    assert statuses(bytes(data)) == {"realm.signature": "fail", "binding": "pass", "platform.signature": "pass"}


def test_binding_fails_when_the_rak_is_swapped() -> None:
    entries = {44234: _entries(token(counter=0))[44234], 44241: _entries(token(counter=1))[44241]}
    assert statuses(_legacy(entries)) == {"realm.signature": "pass", "binding": "fail",
                                          "platform.signature": "pass"}


def test_bad_rak_fails_the_step_without_raising() -> None:
    got = statuses(_with_realm_claims(token(), lambda c: c.update({44237: b"\x04" + bytes(96)})))
    assert got["realm.signature"] == "fail" and got["binding"] == "fail"
    got = statuses(_with_realm_claims(token(), lambda c: c.update({44240: "md5"})))
    assert got["binding"] == "unsupported"


# --- the emulator --------------------------------------------------------------------------------

def test_emulator_tokens_are_deterministic_and_fresh_per_counter() -> None:
    assert token(counter=3) == token(counter=3)
    assert token(counter=3) != token(counter=4)
    assert token(counter=3) == token(counter=3 + emu.RAK_POOL)
    with pytest.raises(ValueError):
        emu.build_token(challenge=b"short")


# --- properties ----------------------------------------------------------------------------------

@FAST
@given(challenge=st.binary(min_size=64, max_size=64), perso=st.binary(min_size=64, max_size=64),
       cmw=st.booleans(), counter=st.integers(0, 200))
def test_round_trip(challenge: bytes, perso: bytes, cmw: bool, counter: int) -> None:
    data = emu.build_token(challenge=challenge, counter=counter, cmw=cmw, personalization_value=perso)
    t = cca.parse_token(data)
    assert (t.realm.challenge, t.realm.personalization_value) == (challenge, perso)
    assert t.collection == ("cmw" if cmw else "legacy")
    assert {s.name: s.status for s in verify_token(t, ANCHORS).steps} == dict.fromkeys(STEPS, "pass")


def _parse_or_none(data: bytes) -> cca.CcaToken | None:
    try:
        return cca.parse_token(data)
    except ParseError:
        return None


@FAST
@given(cmw=st.booleans(), where=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255))
def test_any_byte_flip_is_a_parse_error_or_a_failed_check(cmw: bool, where: float, xor: int) -> None:
    data = bytearray(token(cmw))
    data[int(where * len(data))] ^= xor
    t = _parse_or_none(bytes(data))
    if t is not None:
        got = {s.name: s.status for s in verify_token(t, ANCHORS).steps}
        assert got != dict.fromkeys(STEPS, "pass"), got


@FAST
@given(cmw=st.booleans(), where=st.floats(0, 1, exclude_max=True))
def test_truncation_is_a_parse_error(cmw: bool, where: float) -> None:
    data = token(cmw)
    with pytest.raises(ParseError):
        cca.parse_token(data[: int(where * len(data))])


_cbor = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.binary(max_size=70) | st.text(max_size=8)
    | st.sampled_from([10, 18, 263, 399, 907, 44234, 44237, 44241, "sha-256", bytes(64)]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from([1, 2, 4, 5, 6, 10, 256, 265, 2395, 2396, 2399, 2400, 2401, 2402,
                         44235, 44236, 44237, 44238, 44239, 44240, 44234, 44241, -1, -2, -3]), inner, max_size=6)
    | st.builds(cbor2.CBORTag, st.sampled_from([18, 399, 907, 24]), inner),
    max_leaves=25)


@FAST
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"\xd9\x01\x8f" + b),
                 _cbor.map(lambda v: cbor2.dumps(cbor2.CBORTag(399, v))),
                 st.tuples(_cbor, _cbor).map(lambda pr: cbor2.dumps(cbor2.CBORTag(907, {
                     44234: [263, cbor2.dumps(cbor2.CBORTag(18, [b"\xa1\x01\x38\x22", {}, cbor2.dumps(pr[0]), b""]))],
                     44241: [263, cbor2.dumps(pr[1])]})))))
def test_hostile_input_raises_only_parse_error(data: bytes) -> None:
    t = _parse_or_none(data)
    if t is not None:
        verify_token(t, ANCHORS)  # must not raise either
