"""The FUSE frontend as a user meets it: `tsm-conformance emulate SPEC --mount DIR` in one process,
`tsm-conformance run --root DIR/tsm/report` in another; clean unmount on SIGTERM and SIGINT;
one-line errors.  Skipped, with the reason, where FUSE cannot mount (no /dev/fuse, no libfuse3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tsm_conformance.frontend.fuse import unavailable_reason
from tsm_conformance.target.fuse_limits import FUSE_LIMITS
from tsm_conformance.target.live import LiveTree

from .test_cli import REPO, cli, one_line_error

WHY_NOT = unavailable_reason()
needs_fuse = pytest.mark.skipif(WHY_NOT is not None, reason=f"FUSE cannot mount here: {WHY_NOT}")


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def start_daemon(args: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    """A mount daemon (python ARGS with this checkout importable) and its first stdout line, read
    for at most 20 s (empty if none came)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "conformance"), env.get("PYTHONPATH", "")])
    p = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(p.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(20)
    return p, line


def unmount(p: subprocess.Popen, mnt: Path) -> None:
    """Stop a mount's daemon (SIGTERM: libfuse unmounts), then make sure nothing is left mounted."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    if _mounted(mnt):
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@contextmanager
def emulate(spec: str, mnt: Path) -> Iterator[subprocess.Popen[str]]:
    """`tsm-conformance emulate SPEC --mount MNT` until its "mounted" line; stopped (and, if it
    failed to, lazily unmounted) afterwards.  Skips when the mount itself is refused."""
    p, line = start_daemon(["-m", "tsm_conformance.cli", "emulate", spec, "--mount", str(mnt)])
    try:
        if not line or not line[0].startswith("mounted "):
            p.kill()
            err = p.communicate(timeout=10)[1]
            if "FUSE unavailable" in err:
                pytest.skip(err.strip())
            raise AssertionError(f"no 'mounted' line: {line} {err}")
        assert line[0].strip() == f"mounted {spec} at {mnt} (Ctrl-C to unmount)"
        yield p
    finally:
        unmount(p, mnt)


@needs_fuse
def test_suite_passes_over_fuse_with_the_limits_unsupported(tmp_path: Path) -> None:
    mnt, junit = tmp_path / "mnt", tmp_path / "out.xml"
    mnt.mkdir()
    with emulate("sev_guest", mnt):
        assert LiveTree(str(mnt / "tsm" / "report")).kind == "fuse"
        assert sorted(os.listdir(mnt)) == ["tsm"] and os.listdir(mnt / "tsm") == ["report"]
        p = cli("run", "--root", str(mnt / "tsm" / "report"), "--junit", str(junit), cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
    for why in FUSE_LIMITS.values():  # every declared limit is hit by some check, as skip-unsupported
        assert f"unsupported on a fuse target: {why}" in p.stdout
    root = ET.parse(junit).getroot()
    props = {e.get("name"): e.get("value") for e in root.iter("property")}
    assert props["tsm.target_kind"] == "fuse"
    cases = list(root.iter("testcase"))
    assert len(cases) >= 40 and not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]


def test_plain_directory_is_not_fuse(tmp_path: Path) -> None:
    t = LiveTree(str(tmp_path))
    assert (t.kind, t.limits) == ("live", {})


@needs_fuse
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_unmounts_cleanly(sig: signal.Signals, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with emulate("tdx_guest", mnt) as p:
        item = mnt / "tsm" / "report" / "left-behind"
        item.mkdir()
        fd = os.open(item / "inblob", os.O_WRONLY)  # an open fd does not keep the mount alive
        try:
            os.write(fd, b"n" * 64)
            assert _mounted(mnt)
            p.send_signal(sig)
            assert p.wait(10) == 0
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
        assert p.stderr is not None and "Traceback" not in p.stderr.read()
    assert not _mounted(mnt)
    assert os.listdir(mnt) == []  # the emulator's items went with it; the directory is usable again
    with emulate("tdx_guest", mnt):
        assert os.listdir(mnt / "tsm" / "report") == []


def test_bad_mount_points_are_one_line_errors(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    for path, why in ((tmp_path / "missing", "does not exist"), (full, "is not empty"),
                      (full / "x", "not a directory")):
        line = one_line_error(cli("emulate", "sev_guest", "--mount", str(path)))
        if WHY_NOT is None:  # FUSE works: the line is about the mount point, not about FUSE
            assert line.startswith(f"tsm-conformance: --mount {path} ") and why in line, line
        else:
            assert line.startswith("tsm-conformance: FUSE unavailable: "), line


def test_bad_spec_is_a_one_line_error(tmp_path: Path) -> None:
    assert "unknown emulated provider" in one_line_error(cli("emulate", "nosuch", "--mount", str(tmp_path)))


@needs_fuse
@pytest.mark.parametrize("spec", ["sev_guest-svsm", "tdx_guest", "arm_cca_guest"])
def test_report_formats_verify_over_fuse(tmp_path: Path, spec: str) -> None:
    """Signed reports made in the mount's process verify in the suite's (deterministic emulator keys)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with emulate(spec, mnt):
        p = cli("run", "--root", str(mnt / "tsm" / "report"), "--trust-anchor", "emulator", "--", "-rA",
                cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"PASSED tsm/{spec}::format::format.signature.verifies" in p.stdout
    assert f"PASSED tsm/{spec}::format::format.outblob.nonce_bound" in p.stdout
