"""TDX quote v4/v5: the parser (formats/tdx), the verifier (verify/tdx) and the emulator's
independent builder (emulator/reports/tdx) checked against each other."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsm_conformance.emulator import pki
from tsm_conformance.emulator.reports import tdx as emu
from tsm_conformance.formats.base import ParseError, to_jsonable
from tsm_conformance.formats.tdx import TdxQuote, parse_quote, sniff
from tsm_conformance.verify.base import TrustAnchors, anchors_from_pem
from tsm_conformance.verify.tdx import verify_quote

ANCHORS = anchors_from_pem([emu.anchor_pem()])
NONCE = bytes(range(64))
STEPS = ("header.tee_type", "quote.signature", "qe_report.binding", "qe_report.signature",
         "pck.chain", "anchor")
SIG_DATA = 0x27C  # v4: start of the quote signature data
QE_REPORT = SIG_DATA + 128 + 6  # after signature, attestation key and the certification header
QE_AUTH = QE_REPORT + 384 + 64 + 2
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def v4(**kw: object) -> bytes:
    return emu.build_quote(report_data=NONCE, **kw)  # type: ignore[arg-type]


def statuses(q: TdxQuote, anchors: TrustAnchors = ANCHORS) -> dict[str, str]:
    return {s.name: s.status for s in verify_quote(q, anchors).steps}


def flip(data: bytes, off: int) -> bytes:
    return data[:off] + bytes([data[off] ^ 0x01]) + data[off + 1:]


# --- parsing the emulator's quotes -------------------------------------------------------------

def test_v4_fields_and_offsets() -> None:
    data = v4(counter=1)
    q = parse_quote(data)
    h = q.header
    assert (h.version, h.attestation_key_type, h.tee_type) == (4, 2, 0x81)
    assert h.qe_vendor_id == bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
    assert q.body_type is None and q.trailing_bytes == 0
    assert data[0x238:0x278] == NONCE == q.body.report_data  # docs/abi.md §5.2
    assert data[0x30 + 0x88:0x30 + 0xB8] == q.body.mr_td
    assert q.body.rtmrs[3] == data[0x30 + 0x1D8:0x30 + 0x208]
    assert q.body.tee_tcb_svn_2 is None and q.body.mr_servicetd is None
    assert q.signed_bytes == data[:0x278]
    assert q.signature_data_len == len(data) - SIG_DATA
    cd = q.signature_data.certification_data
    assert (cd.type, cd.pck_chain_type, len(cd.pck_chain)) == (6, 5, 3)
    assert cd.qe_report is not None and cd.qe_report.raw == data[QE_REPORT:QE_REPORT + 384]
    assert cd.qe_report.isv_prod_id == 2
    assert cd.qe_report.report_data[:32] == hashlib.sha256(
        q.signature_data.attestation_key + (cd.qe_auth_data or b"")).digest()
    assert all(p.startswith("-----BEGIN CERTIFICATE-----") for p in cd.pck_chain)
    json.dumps(to_jsonable(q))  # renderable; raw QE report and signed bytes stay out
    assert "_raw" not in json.dumps(to_jsonable(q))


@pytest.mark.parametrize("body_type,size", [(3, 648), (2, 584)])
def test_v5_bodies(body_type: int, size: int) -> None:
    data = emu.build_quote(report_data=NONCE, version=5, body_type=body_type)
    q = parse_quote(data)
    assert q.header.version == 5 and q.body_type == body_type
    assert struct.unpack_from("<HI", data, 48) == (body_type, size)
    assert data[54 + 0x208:54 + 0x248] == NONCE == q.body.report_data
    assert q.signed_bytes == data[:54 + size]  # the body descriptor is signed too
    assert (q.body.mr_servicetd is not None) == (body_type == 3)
    assert verify_quote(q, ANCHORS).ok


def test_trailing_bytes_accepted_and_counted() -> None:
    q = parse_quote(v4(trailing=70))
    assert q.trailing_bytes == 70
    assert verify_quote(q, ANCHORS).ok


def test_counter_varies_quote_and_is_deterministic() -> None:
    assert v4(counter=1) != v4(counter=2)
    assert v4(counter=1) == v4(counter=1)
    assert parse_quote(v4(counter=1)).body.report_data == parse_quote(v4(counter=2)).body.report_data


def test_short_report_data_is_zero_padded_and_long_rejected() -> None:
    assert parse_quote(emu.build_quote(report_data=b"abc")).body.report_data == b"abc" + bytes(61)
    with pytest.raises(ValueError):
        emu.build_quote(report_data=bytes(65))


def test_sniff() -> None:
    assert sniff(v4()) and sniff(emu.build_quote(report_data=NONCE, version=5))
    assert sniff(v4(tee_type=0))  # a wrong tee_type still routes to the TDX parser
    assert not sniff(v4()[:47]) and not sniff(bytes(1184)) and not sniff(b"\xd9\x01\x8f" + bytes(60))


def test_emulator_builder_is_independent_of_parser_and_verifier() -> None:
    import tsm_conformance.emulator.reports.tdx as mod
    tree = ast.parse(Path(mod.__file__).read_text())
    names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [n for n in names if "formats" in n or "verify" in n]


# --- verification -------------------------------------------------------------------------------

def test_verification_passes_with_emulator_anchor() -> None:
    assert statuses(parse_quote(v4())) == dict.fromkeys(STEPS, "pass")


def test_without_anchors_trust_steps_unsupported() -> None:
    got = statuses(parse_quote(v4()), TrustAnchors())
    assert got == {"header.tee_type": "pass", "quote.signature": "pass", "qe_report.binding": "pass",
                   "qe_report.signature": "unsupported", "pck.chain": "unsupported",
                   "anchor": "unsupported"}
    assert verify_quote(parse_quote(v4()), TrustAnchors()).ok


def _only_failing(q: TdxQuote, step: str, anchors: TrustAnchors = ANCHORS) -> None:
    got = statuses(q, anchors)
    assert got[step] == "fail", got
    assert all(s == "pass" for name, s in got.items() if name != step), got


def test_wrong_tee_type_fails_its_step() -> None:
    _only_failing(parse_quote(v4(tee_type=0)), "header.tee_type")


def test_body_corruption_fails_quote_signature() -> None:
    _only_failing(parse_quote(flip(v4(), 0x30 + 0x88)), "quote.signature")  # a bit of mr_td


def test_auth_data_corruption_fails_binding() -> None:
    _only_failing(parse_quote(flip(v4(), QE_AUTH)), "qe_report.binding")


def test_qe_report_corruption_fails_qe_signature() -> None:
    _only_failing(parse_quote(flip(v4(), QE_REPORT + 64)), "qe_report.signature")  # mr_enclave


def test_reordered_chain_fails_pck_chain() -> None:
    q = parse_quote(v4())
    cd = q.signature_data.certification_data
    leaf, _, root = cd.pck_chain
    q = _with_chain(q, (leaf, root, root))
    _only_failing(q, "pck.chain")
    assert statuses(q, TrustAnchors())["pck.chain"] == "fail"  # broken even without anchors


def _with_chain(q: TdxQuote, chain: tuple[str, ...]) -> TdxQuote:
    cd = dataclasses.replace(q.signature_data.certification_data, pck_chain=chain)
    return dataclasses.replace(q, signature_data=dataclasses.replace(q.signature_data,
                                                                     certification_data=cd))


def test_root_not_self_signed_fails_pck_chain() -> None:
    q = parse_quote(v4())
    leaf, ca, _ = q.signature_data.certification_data.pck_chain
    key = pki.ec_key("tdx root", "secp256r1")  # the emulated root's key, under another issuer name
    fake = pki.certificate(pki.name("Intel SGX Root CA"), key, pki.name("Someone Else"),
                           pki.ec_key("test other", "secp256r1"), ca=True, serial=1)
    _only_failing(_with_chain(q, (leaf, ca, pki.pem(fake).decode())), "pck.chain")


def test_foreign_anchor_fails_anchor() -> None:
    key = pki.ec_key("test foreign root", "secp256r1")
    other = pki.certificate(pki.name("Other Root"), key, pki.name("Other Root"), key, ca=True, serial=9)
    _only_failing(parse_quote(v4()), "anchor", anchors_from_pem([pki.pem(other)]))


def test_other_certification_data_type_kept_raw_and_fails() -> None:
    data = v4()
    data = data[:SIG_DATA + 128] + struct.pack("<H", 7) + data[SIG_DATA + 130:]
    q = parse_quote(data)
    cd = q.signature_data.certification_data
    assert cd.type == 7 and cd.qe_report is None and cd.unparsed is not None
    got = statuses(q)
    assert got["quote.signature"] == "pass"
    assert [got[s] for s in STEPS[2:]] == ["fail"] * 4


def test_garbage_in_chain_fails_chain_steps() -> None:
    data = v4()
    at = data.index(b"-----BEGIN CERTIFICATE-----") + 40  # inside the leaf's base64
    q = parse_quote(data[:at] + b"!" + data[at + 1:])
    got = statuses(q)
    assert got["qe_report.binding"] == "pass"
    assert [got[s] for s in STEPS[3:]] == ["fail"] * 3


# --- rejection ----------------------------------------------------------------------------------

def _rejects(data: bytes, offset: int | None = None) -> ParseError:
    with pytest.raises(ParseError) as e:
        parse_quote(data)
    if offset is not None:
        assert e.value.offset == offset, str(e.value)
    return e.value


def test_rejects_unknown_version_and_key_type() -> None:
    _rejects(v4(version=3), 0)
    _rejects(b"\x04\x00\x03\x00" + v4()[4:], 2)


def test_rejects_truncation_at_every_structure_boundary() -> None:
    data = v4()
    for cut in (0, 47, 48, 0x277, 0x278, 0x27B, SIG_DATA + 10, QE_AUTH, len(data) - 1):
        _rejects(data[:cut])


def test_rejects_overrunning_and_slack_lengths() -> None:
    data = v4()
    sig_len = struct.unpack_from("<I", data, 0x278)[0]
    err = _rejects(data[:0x278] + struct.pack("<I", sig_len + 1) + data[SIG_DATA:])
    assert "signature data" in str(err)
    # one byte more declared and present: left over inside the signature data
    _rejects(data[:0x278] + struct.pack("<I", sig_len + 1) + data[SIG_DATA:] + b"\0", len(data))
    cert_size = struct.unpack_from("<I", data, SIG_DATA + 130)[0]
    _rejects(data[:SIG_DATA + 130] + struct.pack("<I", cert_size + 1) + data[SIG_DATA + 134:],
             SIG_DATA + 130)
    _rejects(data[:QE_AUTH - 2] + struct.pack("<H", 0xFFFF) + data[QE_AUTH:], QE_AUTH - 2)


def test_rejects_bad_v5_descriptor() -> None:
    data = emu.build_quote(report_data=NONCE, version=5)
    _rejects(data[:48] + struct.pack("<H", 1) + data[50:], 48)  # SGX enclave body
    _rejects(data[:50] + struct.pack("<I", 584) + data[54:], 50)  # size does not match type 3


def test_rejects_non_pem_chain() -> None:
    data = v4()
    at = data.index(b"-----BEGIN CERTIFICATE-----")
    _rejects(data[:at + 30] + b"\xff" + data[at + 31:], at + 30)
    _rejects(data[:at] + b"X" + data[at + 1:], at)  # the BEGIN line is broken: stray text


# --- properties ---------------------------------------------------------------------------------

@FAST
@given(report_data=st.binary(max_size=64), counter=st.integers(0, 2**32),
       version=st.sampled_from([4, 5]), body_type=st.sampled_from([2, 3]),
       trailing=st.integers(0, 300))
def test_round_trip(report_data: bytes, counter: int, version: int, body_type: int,
                    trailing: int) -> None:
    data = emu.build_quote(report_data=report_data, counter=counter, version=version,
                           body_type=body_type, trailing=trailing)
    q = parse_quote(data)
    assert q.header.version == version and q.trailing_bytes == trailing
    assert q.body.report_data == report_data.ljust(64, b"\0")
    assert q.body_type == (body_type if version == 5 else None)
    assert verify_quote(q, ANCHORS).ok


_BASE = {4: emu.build_quote(report_data=NONCE), 5: emu.build_quote(report_data=NONCE, version=5)}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """(original, mutant, first changed offset)."""
    data = _BASE[draw(st.sampled_from([4, 5]))]
    kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        out = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
    elif kind == "set":
        value = draw(st.integers(0, 255).filter(lambda b: b != data[at]))
        out = data[:at] + bytes([value]) + data[at + 1:]
    elif kind == "truncate":
        out = data[:at]
    elif kind == "insert":
        out = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    else:
        out = data[:at] + data[at + draw(st.integers(1, 8)):]
    return data, out, at


@FAST
@given(mutated())
def test_mutations_raise_parse_error_or_fail_verification(case: tuple[bytes, bytes, int]) -> None:
    original, data, at = case
    try:
        q = parse_quote(data)
    except ParseError:
        return
    v = verify_quote(q, ANCHORS)  # must not raise
    assert {s.name for s in v.steps} == set(STEPS)
    if v.ok:  # only a change of no meaning (PEM whitespace, trailing bytes) may still verify
        assert _meaning(q) == _meaning(parse_quote(original)), f"mutation at {at:#x} verified"


def _meaning(q: TdxQuote) -> tuple[object, ...]:
    sd = q.signature_data
    cd = sd.certification_data
    ders = tuple(x509.load_pem_x509_certificate(p.encode()).public_bytes(Encoding.DER)
                 for p in cd.pck_chain)
    return (q.signed_bytes, sd.signature, sd.attestation_key, cd.qe_report,
            cd.qe_report_signature, cd.qe_auth_data, ders)


@FAST
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_parse_error(data: bytes) -> None:
    for candidate in (data, struct.pack("<HHI", 4, 2, 0x81) + data, _BASE[4][:0x27C] + data):
        try:
            q = parse_quote(candidate)
        except ParseError:
            continue
        verify_quote(q, ANCHORS)
