"""`tsm-conformance inspect`: detection, text and JSON output, verification, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tsm_conformance.emulator import boot
from tsm_conformance.emulator.reports import cca, snp, tdx
from tsm_conformance.inspection import inspect_blob, load_input
from tsm_conformance.verify.base import TrustAnchors, anchors_from_pem

from .test_cli import cli

NONCE = bytes(range(64))


def _emulated(spec: str, nonce: bytes = NONCE, privlevel: int | None = None) -> tuple[bytes, bytes]:
    """(outblob, auxblob) of one report from the emulator, as a user would capture them."""
    k = boot(spec)
    k.mkdir("r")
    if privlevel is not None:
        fd = k.open("r/privlevel", 1)
        k.write(fd, f"{privlevel}\n".encode())
        k.close(fd)
    fd = k.open("r/inblob", 1)
    k.write(fd, nonce)
    k.close(fd)
    blobs = []
    for attr in ("outblob", "auxblob"):
        try:
            fd = k.open(f"r/{attr}", 0)
        except FileNotFoundError:
            blobs.append(b"")
            continue
        blobs.append(k.read(fd, 1 << 20))
        k.close(fd)
    return blobs[0], blobs[1]


@pytest.mark.parametrize("spec,fmt,field", [
    ("sev_guest", "snp", ("report_data",)),
    ("tdx_guest", "tdx", ("body", "report_data")),
    ("arm_cca_guest", "cca", ("realm", "challenge")),
])
def test_json_detects_and_names_fields(tmp_path: Path, spec: str, fmt: str, field: tuple[str, ...]) -> None:
    out, _ = _emulated(spec)
    f = tmp_path / "report.bin"
    f.write_bytes(out)
    p = cli("inspect", str(f), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["format"] == fmt
    for k in field:
        doc = doc[k]
    assert doc == NONCE.hex()


def test_snp_text_shows_vmpl_and_verifies_with_certs(tmp_path: Path) -> None:
    out, aux = _emulated("sev_guest", privlevel=2)
    (tmp_path / "r.bin").write_bytes(out)
    (tmp_path / "c.bin").write_bytes(aux)
    p = cli("inspect", str(tmp_path / "r.bin"), "--certs", str(tmp_path / "c.bin"), "--trust-anchor", "emulator")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "vmpl: 2" in p.stdout and "verification:" in p.stdout
    assert ": fail" not in p.stdout


def test_certificate_table_is_detected(tmp_path: Path) -> None:
    _, aux = _emulated("sev_guest")
    (tmp_path / "aux.bin").write_bytes(aux)
    p = cli("inspect", str(tmp_path / "aux.bin"), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["format"] == "snp-certs"


def test_hex_input_is_accepted(tmp_path: Path) -> None:
    out, _ = _emulated("tdx_guest")
    (tmp_path / "q.hex").write_text("\n".join(out.hex()[i:i + 60] for i in range(0, len(out) * 2, 60)) + "\n")
    p = cli("inspect", str(tmp_path / "q.hex"), "--format", "tdx")
    assert p.returncode == 0, p.stderr
    assert "tee_type: 129" in p.stdout or "tee_type: 0x81" in p.stdout


def test_malformed_input_is_one_line_exit_1(tmp_path: Path) -> None:
    out, _ = _emulated("sev_guest")
    (tmp_path / "short.bin").write_bytes(out[:100])
    p = cli("inspect", str(tmp_path / "short.bin"), "--format", "snp")
    assert p.returncode == 1
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_undetectable_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "junk.bin").write_bytes(b"\x01\x02junk")
    p = cli("inspect", str(tmp_path / "junk.bin"))
    assert p.returncode == 1 and "give --format" in p.stderr
    p = cli("inspect", str(tmp_path / "absent.bin"))
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_verification_fails_on_a_flipped_signature_byte() -> None:
    out, _ = _emulated("tdx_guest")
    bad = bytearray(out)
    bad[0x27C] ^= 1  # first byte of the quote signature (v4)
    _, _, v = inspect_blob(bytes(bad), None, anchors_from_pem([tdx.anchor_pem()]), None)
    assert v is not None and not v.ok


def test_without_anchors_trust_steps_never_pass() -> None:
    for build in (lambda: tdx.build_quote(report_data=NONCE), lambda: cca.build_token(challenge=NONCE)):
        _, _, v = inspect_blob(build(), None, TrustAnchors(), None)
        assert v is not None and v.ok
        assert v.status_of("anchor") in (None, "unsupported")
        assert v.status_of("platform.signature") in (None, "unsupported")
    _, _, v = inspect_blob(snp.build_report(report_data=NONCE, vmpl=0), None, TrustAnchors(), None)
    assert v is None  # nothing to verify against: neither certificates nor anchors


def test_load_input_keeps_binary() -> None:
    raw = bytes(range(256))
    assert load_input(raw) == raw
    assert load_input(b"0a0B\n ff\n") == b"\x0a\x0b\xff"


def test_captured_snp_containers_are_unwrapped(tmp_path: Path) -> None:
    """Tools save the whole MSG_REPORT_RSP (ioctl) or a zero-padded page; inspect still reads the report."""
    report = snp.build_report(report_data=NONCE, vmpl=3)
    resp = (0).to_bytes(4, "little") + (0x4A0).to_bytes(4, "little") + bytes(24) + report + bytes(2000)
    for name, blob in (("resp.bin", resp), ("page.bin", report + bytes(4096 - len(report)))):
        (tmp_path / name).write_bytes(blob)
        p = cli("inspect", str(tmp_path / name), "--json")
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert (doc["format"], doc["vmpl"], doc["report_data"]) == ("snp", 3, NONCE.hex())
        assert len(p.stderr.strip().splitlines()) == 1  # says what it stripped
