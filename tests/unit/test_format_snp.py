"""SEV-SNP: the parser (formats/snp*.py, formats/svsm.py) against the emulator's independent
encoding (emulator/reports/snp.py) and a third, hand-placed layout here; verification; hostile
input (hypothesis) raising only ParseError or giving failed steps."""

from __future__ import annotations

import hashlib
import struct
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsm_conformance.emulator.reports import snp as emu
from tsm_conformance.formats import snp, snp_certs, svsm
from tsm_conformance.formats.base import ParseError, to_jsonable
from tsm_conformance.verify.base import TrustAnchors, anchors_from_pem
from tsm_conformance.verify.snp import verify_report

ANCHORS = anchors_from_pem([emu.anchor_pem()])
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NONCE = bytes(range(64))


def report(**kw: object) -> bytes:
    args: dict[str, object] = {"report_data": NONCE, "vmpl": 0}
    args.update(kw)
    return emu.build_report(**args)  # type: ignore[arg-type]


def statuses(data: bytes, table: bytes | None = None, anchors: TrustAnchors = ANCHORS) -> dict[str, str]:
    certs = snp_certs.parse_cert_table(emu.cert_table() if table is None else table)
    return {s.name: s.status for s in verify_report(snp.parse_report(data), certs, anchors).steps}


ALL_PASS = {"report.signature": "pass", "chain.ask": "pass", "chain.vcek": "pass", "anchor": "pass"}


# ---- parsing -----------------------------------------------------------------------------------

def test_emulator_report_parses() -> None:
    data = report(vmpl=2, counter=7)
    r = snp.parse_report(data)
    assert (r.version, r.vmpl, r.signature_algo, r.signing_key_name) == (2, 2, 1, "vcek")
    assert r.report_data == NONCE and r.signed_bytes == data[:0x2A0]
    assert r.cpuid_fam_id is None and r.launch_mit_vector is None and r.nonzero_reserved == ()
    assert snp.sniff(data) and len(data) == snp.REPORT_SIZE
    j = to_jsonable(r)
    assert j["report_data"] == NONCE.hex() and j["current_tcb"]["microcode"] == 115 and "_raw" not in j


def test_every_report_differs() -> None:
    assert report(counter=1) != report(counter=2)
    assert snp.parse_report(report(counter=1)).report_id != snp.parse_report(report(counter=2)).report_id


def _hand_built(version: int) -> bytes:
    """A third encoding: each field filled with its own byte pattern at the spec's offset."""
    b = bytearray(snp.REPORT_SIZE)
    struct.pack_into("<IIQ", b, 0, version, 0x11, 0x30000)
    b[0x10:0x20], b[0x20:0x30] = b"\x21" * 16, b"\x22" * 16
    struct.pack_into("<IIQQI", b, 0x30, 3, 1, 0x0807000000000201, 0x3, 0b110)
    for off, n, fill in ((0x50, 64, 0x50), (0x90, 48, 0x90), (0xC0, 32, 0xC0), (0xE0, 48, 0xE0),
                         (0x110, 48, 0x11), (0x140, 32, 0x14), (0x160, 32, 0x16), (0x1A0, 64, 0x1A)):
        b[off:off + n] = bytes([fill]) * n
    struct.pack_into("<Q", b, 0x180, 0x0A09000000000605)
    b[0x188:0x18B] = b"\x19\x11\x01"
    struct.pack_into("<Q", b, 0x1E0, 0x0B0A000000000807)
    b[0x1E8:0x1F0] = bytes([4, 55, 1, 0, 3, 54, 1, 0])
    struct.pack_into("<QQQ", b, 0x1F0, 0x0C0B000000000908, 0xAAAA, 0xBBBB)
    b[0x2A0:0x2E8], b[0x2E8:0x330] = b"\x01" + bytes(71), b"\x02" + bytes(71)
    return bytes(b)


def test_field_offsets_from_a_hand_built_layout() -> None:
    r = snp.parse_report(_hand_built(5))
    assert (r.guest_svn, r.policy, r.family_id, r.image_id) == (0x11, 0x30000, b"\x21" * 16, b"\x22" * 16)
    assert (r.vmpl, r.signature_algo, r.platform_info, r.signer_info) == (3, 1, 3, 0b110)
    assert (r.author_key_en, r.mask_chip_key, r.signing_key) == (False, True, 1)
    assert (r.current_tcb.bootloader, r.current_tcb.tee, r.current_tcb.snp, r.current_tcb.microcode) == (1, 2, 7, 8)
    assert r.report_data == b"\x50" * 64 and r.measurement == b"\x90" * 48 and r.host_data == b"\xc0" * 32
    assert r.id_key_digest == b"\xe0" * 48 and r.author_key_digest == b"\x11" * 48
    assert r.report_id == b"\x14" * 32 and r.report_id_ma == b"\x16" * 32 and r.chip_id == b"\x1a" * 64
    assert (r.reported_tcb.bootloader, r.reported_tcb.microcode) == (5, 10)
    assert (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) == (0x19, 0x11, 1)
    assert (r.committed_tcb.snp, r.launch_tcb.snp, r.launch_tcb.microcode) == (10, 11, 12)
    assert (r.current_major, r.current_minor, r.current_build) == (1, 55, 4)
    assert (r.committed_major, r.committed_minor, r.committed_build) == (1, 54, 3)
    assert (r.launch_mit_vector, r.current_mit_vector) == (0xAAAA, 0xBBBB)
    assert r.signature_rs == (1, 2) and r.tcb_layout == "milan-genoa"


def test_fields_round_trip_through_the_emulator() -> None:
    m, h = hashlib.sha384(b"m").digest(), hashlib.sha256(b"h").digest()
    data = report(measurement=m, host_data=h, vmpl=3, version=5)
    r = snp.parse_report(data)
    assert (r.measurement, r.host_data, r.vmpl) == (m, h, 3)
    assert data[0x50:0x90] == NONCE and data[0x90:0xC0] == m and data[0xC0:0xE0] == h
    assert struct.unpack_from("<I", data, 0x30)[0] == 3


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_versions(version: int) -> None:
    r = snp.parse_report(report(version=version))
    assert r.version == version
    assert (r.cpuid_fam_id is not None) == (version >= 3)
    assert (r.launch_mit_vector is not None) == (version >= 5)
    assert r.tcb_layout_source == ("cpuid_fam_id" if version >= 3 else "chip_id heuristic")


def test_turin_tcb_layout() -> None:
    for version in (2, 5):  # v2: CHIP_ID heuristic; v5: CPUID family 1Ah
        r = snp.parse_report(report(version=version, product="turin"))
        assert r.tcb_layout == "turin"
        t = r.reported_tcb
        assert (t.fmc, t.bootloader, t.tee, t.snp, t.microcode) == (1, 1, 1, 3, 0x44)


@pytest.mark.parametrize("version", [0, 1, 6, 0xFFFFFFFF])
def test_unknown_versions_rejected(version: int) -> None:
    data = bytearray(report())
    struct.pack_into("<I", data, 0, version)
    with pytest.raises(ParseError, match="version"):
        snp.parse_report(bytes(data))
    assert not snp.sniff(bytes(data))


@pytest.mark.parametrize("n", [0, 4, 0x2A0, snp.REPORT_SIZE - 1, snp.REPORT_SIZE + 1, 4096])
def test_wrong_size_rejected(n: int) -> None:
    data = (report() + bytes(4096))[:n]
    with pytest.raises(ParseError, match="bytes"):
        snp.parse_report(data)


def test_nonzero_reserved_reported_not_rejected() -> None:
    data = bytearray(report(version=2))
    data[0x1F8] = 1  # a v5 mitigation vector byte, reserved in v2
    assert snp.parse_report(bytes(data)).nonzero_reserved == ("0x1f8..0x2a0",)


# ---- verification ------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["vcek", "vlek"])
def test_signature_and_chain_pass_with_the_emulator_anchor(key: str) -> None:
    assert statuses(report(key=key), emu.cert_table(key=key)) == ALL_PASS


def test_flipped_byte_fails() -> None:
    for pos in (0x00 + 4, 0x50, 0x29F, 0x2A0, 0x2E8 + 10):
        data = bytearray(report())
        data[pos] ^= 1
        assert statuses(bytes(data))["report.signature"] == "fail", hex(pos)


def test_without_anchors_trust_is_unsupported() -> None:
    got = statuses(report(), anchors=TrustAnchors())
    assert got["anchor"] == "unsupported"
    assert got["report.signature"] == "pass"


def test_without_certificates_signature_unsupported() -> None:
    v = verify_report(snp.parse_report(report()), None, ANCHORS)
    assert v.status_of("report.signature") == "unsupported" and v.ok
    assert v.status_of("anchor") != "pass"
    empty = verify_report(snp.parse_report(report()), snp_certs.parse_cert_table(b""), ANCHORS)
    assert empty.status_of("report.signature") == "unsupported"


def test_leaf_only_table_chains_through_an_anchor_ark() -> None:
    got = statuses(report(), emu.cert_table(include_chain=False))
    assert got["report.signature"] == "pass" and got["chain.ask"] == "unsupported"
    assert got["anchor"] != "pass"


def test_foreign_anchor_fails() -> None:
    from cryptography.hazmat.primitives import serialization

    from tsm_conformance.emulator import pki
    other = pki.ec_key("not the emulated ARK").public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert statuses(report(), anchors=anchors_from_pem([other]))["anchor"] == "fail"


def test_vlek_report_with_vcek_table_is_not_verified() -> None:
    got = statuses(report(key="vlek"), emu.cert_table(key="vcek"))
    assert got["report.signature"] == "unsupported"


# ---- certificate table -------------------------------------------------------------------------

VCEK = uuid.UUID(snp_certs.GUID_OF["vcek"]).bytes


def test_cert_table_parses() -> None:
    t = snp_certs.parse_cert_table(emu.cert_table())
    assert [e.name for e in t.entries] == ["vcek", "ask", "ark"]
    assert t.certificate("vcek") is not None and t.certificate("vlek") is None
    assert t.data_end == len(emu.cert_table()) and snp_certs.sniff(emu.cert_table())
    assert to_jsonable(t)["entries"][0]["guid"] == snp_certs.GUID_OF["vcek"]


def test_cert_table_empty() -> None:
    assert snp_certs.parse_cert_table(b"").entries == ()
    assert snp_certs.parse_cert_table(bytes(24)).entries == ()
    assert not snp_certs.sniff(b"") and not snp_certs.sniff(bytes(24))


def test_cert_table_missing_terminator() -> None:
    with pytest.raises(ParseError, match="terminator"):
        snp_certs.parse_cert_table(VCEK + struct.pack("<II", 24, 0))
    with pytest.raises(ParseError, match="terminator"):
        snp_certs.parse_cert_table(bytes(23))


@pytest.mark.parametrize("off,length,match", [(48, 4096, "past the end"), (0xFFFFFFFF, 1, "past the end"),
                                              (24, 10, "inside the table"), (0, 0, "inside the table")])
def test_cert_table_bad_offsets(off: int, length: int, match: str) -> None:
    data = VCEK + struct.pack("<II", off, length) + bytes(24) + bytes(64)
    with pytest.raises(ParseError, match=match):
        snp_certs.parse_cert_table(data)


def test_cert_table_rejects_duplicates_junk_and_bad_terminator() -> None:
    der = emu._der("vcek")
    entry = lambda off: VCEK + struct.pack("<II", off, len(der))  # noqa: E731
    with pytest.raises(ParseError, match="twice"):
        snp_certs.parse_cert_table(entry(72) + entry(72) + bytes(24) + der)
    with pytest.raises(ParseError, match="not a DER"):
        snp_certs.parse_cert_table(VCEK + struct.pack("<II", 48, 5) + bytes(24) + b"junk!")
    with pytest.raises(ParseError, match="terminator"):
        snp_certs.parse_cert_table(bytes(16) + struct.pack("<II", 1, 0))


def test_cert_table_unknown_guid_kept() -> None:
    g = uuid.UUID("12345678-1234-5678-1234-567812345678")
    t = snp_certs.parse_cert_table(g.bytes + struct.pack("<II", 48, 3) + bytes(24) + b"abc")
    assert (t.entries[0].guid, t.entries[0].name, t.entries[0].data) == (str(g), None, b"abc")


# ---- SVSM --------------------------------------------------------------------------------------

def test_svsm_services_manifest_and_binding() -> None:
    out, man = emu.build_svsm(nonce=NONCE, service_guid=None, manifest_version=0, counter=3)
    m = svsm.parse_manifest(man)
    assert m.size == len(man) and [s.name for s in m.services] == ["vtpm"] and svsm.sniff(man)
    r = snp.parse_report(out)
    assert r.vmpl == 0 and svsm.binds(r.report_data, NONCE, man)
    assert r.report_data == hashlib.sha512(NONCE + man).digest()
    assert statuses(out) == ALL_PASS


def test_svsm_single_service_and_refusals() -> None:
    vtpm = uuid.UUID(svsm.VTPM_SERVICE_GUID).bytes_le
    single = emu.svsm_manifest(vtpm, 0)
    assert single == emu.VTPM_MANIFEST and not svsm.sniff(single)
    with pytest.raises(ParseError, match="single-service"):
        svsm.parse_manifest(single)
    with pytest.raises(ValueError):
        emu.svsm_manifest(vtpm, 1)
    with pytest.raises(ValueError):
        emu.svsm_manifest(uuid.uuid4().bytes, 0)


def test_svsm_manifest_malformed() -> None:
    man = emu.svsm_manifest(None, 0)
    with pytest.raises(ParseError, match="total size"):
        svsm.parse_manifest(man + b"x")
    bad = bytearray(man)
    struct.pack_into("<I", bad, 20, 1000)
    with pytest.raises(ParseError):
        svsm.parse_manifest(bytes(bad))
    assert svsm.parse_manifest(man[:16] + struct.pack("<II", 24, 0)).services == ()


# ---- properties --------------------------------------------------------------------------------

@SETTINGS
@given(data=st.binary(max_size=64), vmpl=st.integers(0, 3), version=st.sampled_from(emu.VERSIONS),
       key=st.sampled_from(["vcek", "vlek"]), counter=st.integers(0, 2**32))
def test_round_trip(data: bytes, vmpl: int, version: int, key: str, counter: int) -> None:
    raw = emu.build_report(report_data=data, vmpl=vmpl, version=version, key=key, counter=counter)
    r = snp.parse_report(raw)
    assert (r.report_data, r.vmpl, r.version, r.signing_key_name) == (data.ljust(64, b"\0"), vmpl, version, key)
    assert statuses(raw, emu.cert_table(key=key))["report.signature"] == "pass"


VALID = report(version=5)
VALID_TABLE = emu.cert_table()
mutation = st.lists(st.tuples(st.integers(0, snp.REPORT_SIZE - 1), st.integers(1, 255)), min_size=1, max_size=4)


@SETTINGS
@given(edits=mutation, cut=st.one_of(st.none(), st.integers(0, snp.REPORT_SIZE + 8)))
def test_report_mutations_parse_error_or_failed_signature(edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(VALID)
    for pos, x in edits:
        data[pos] ^= x
    blob = bytes(data) + (bytes(8) if cut and cut > snp.REPORT_SIZE else b"")
    blob = blob[:cut] if cut is not None else blob
    try:
        r = snp.parse_report(blob)
    except ParseError:
        return
    v = verify_report(r, snp_certs.parse_cert_table(VALID_TABLE), ANCHORS)
    changed = bytes(data[:0x330]) != VALID[:0x330]  # the signed body, R or S
    assert (v.status_of("report.signature") == "pass") == (not changed)


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID_TABLE) - 1), st.integers(1, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, len(VALID_TABLE))))
def test_cert_table_mutations_parse_error_or_verification(edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(VALID_TABLE)
    for pos, x in edits:
        data[pos] ^= x
    blob = bytes(data)[:cut] if cut is not None else bytes(data)
    try:
        t = snp_certs.parse_cert_table(blob)
    except ParseError:
        return
    verify_report(snp.parse_report(VALID), t, ANCHORS)  # must not raise; any status is fine


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_only_parse_errors(blob: bytes) -> None:
    for parse in (snp.parse_report, snp_certs.parse_cert_table, svsm.parse_manifest):
        try:
            parse(blob)
        except ParseError:
            pass
    snp.sniff(blob), snp_certs.sniff(blob), svsm.sniff(blob)
