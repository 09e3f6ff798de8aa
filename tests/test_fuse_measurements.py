"""Measurement registers over a FUSE mount (frontend/fuse.py, docs/fuse.md): `DIR/measurements/` holds
the provider's register files with the emulator's names, modes and sizes; the sysfs write contract
(docs/abi-measurements.md §2) shows through real syscalls; `DIR/.mr-refreshes` counts refreshes; the
suite's mr.* checks pass there and catch an overwriting provider.  No group, no directory."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tsm_conformance.checks import catalogue  # noqa: F401  (registers every check)
from tsm_conformance.checks.base import REGISTRY
from tsm_conformance.emulator import boot, parse_spec
from tsm_conformance.emulator.measurements import MrFiles

from .test_cli import cli
from .test_fuse import emulate, needs_fuse

pytestmark = [pytest.mark.slow, needs_fuse]

MR_CHECKS = sorted(c for c in REGISTRY if c.startswith("mr."))


def _emulator_files(spec: str) -> dict[str, tuple[int, int]]:
    """The group's files as the in-process emulator shows them: name -> (st_mode, st_size)."""
    group = getattr(boot(parse_spec(spec)).provider, "mr", None)
    assert group is not None, spec
    files = MrFiles(group)
    return {name: files.stat(name) for name in files.listdir("")}


def _errno(fn, *args: object) -> object:  # noqa: ANN001
    try:
        return fn(*args)
    except OSError as e:
        return errno.errorcode[e.errno or 0]


def _read(path: Path, n: int = 4096) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, n)
    finally:
        os.close(fd)


def _hash(name: str) -> str:
    return name.partition(":")[2] or "sha384"


@pytest.fixture
def mnt(tmp_path: Path) -> Path:
    m = tmp_path / "mnt"
    m.mkdir()
    return m


@pytest.mark.parametrize("spec", ["tsm_test", "tdx_guest"])
def test_group_files_as_the_emulator_has_them(mnt: Path, spec: str) -> None:
    want = _emulator_files(spec)
    with emulate(spec, mnt):
        assert sorted(os.listdir(mnt)) == [".mr-refreshes", "measurements", "tsm"]
        d = os.stat(mnt / "measurements")
        assert (d.st_mode, stat.S_ISDIR(d.st_mode)) == (stat.S_IFDIR | 0o755, True)
        assert sorted(os.listdir(mnt / "measurements")) == sorted(want)
        for name, (mode, size) in want.items():
            s = os.stat(mnt / "measurements" / name)
            assert (s.st_mode, s.st_size) == (mode, size), name
        c = os.stat(mnt / ".mr-refreshes")
        text = _read(mnt / ".mr-refreshes")
        assert c.st_mode == stat.S_IFREG | 0o444 and re.fullmatch(rb"[0-9]+\n", text) and c.st_size == len(text)
        # read-only registers and the counter refuse write opens (EACCES even for root, as sysfs)
        for name, (mode, _) in want.items():
            if not mode & 0o200:
                for flags in (os.O_WRONLY, os.O_RDWR):
                    assert _errno(os.open, mnt / "measurements" / name, flags) == "EACCES", name
        assert _errno(os.open, mnt / ".mr-refreshes", os.O_WRONLY) == "EACCES"
        # sysfs directory semantics: nothing is created or removed
        assert _errno(os.mkdir, mnt / "measurements" / "x") == "EPERM"
        assert _errno(os.rmdir, mnt / "measurements") == "EPERM"
        assert _errno(os.unlink, mnt / "measurements" / sorted(want)[0]) == "EPERM"
        assert _errno(os.open, mnt / "measurements" / "new", os.O_WRONLY | os.O_CREAT) == "EACCES"


@pytest.mark.parametrize("spec, reg", [("tsm_test", "rtmr0:sha384"), ("tsm_test", "rtmr1:sha256"),
                                       ("tdx_guest", "rtmr0:sha384"), ("tdx_guest", "rtmr3:sha384")])
def test_write_contract_through_syscalls(mnt: Path, spec: str, reg: str) -> None:
    size = _emulator_files(spec)[reg][1]
    h = _hash(reg)
    with emulate(spec, mnt):
        path, counter = mnt / "measurements" / reg, mnt / ".mr-refreshes"

        def refreshes() -> int:
            return int(_read(counter))

        old = _read(path, size + 1)  # the first live read refreshes (the group starts stale)
        assert len(old) == size
        before = refreshes()
        assert _read(path) == old and refreshes() == before  # no write, no refresh

        fd = os.open(path, os.O_WRONLY)
        try:
            assert _errno(os.write, fd, b"s" * (size - 1)) == "EINVAL"
            assert os.write(fd, b"") == 0
            assert _errno(os.pwrite, fd, b"o" * (size - 1), 1) == "EINVAL"
            assert _errno(os.pwrite, fd, b"e" * size, size) == "EFBIG"
            assert os.pwrite(fd, b"", size) == 0  # sysfs: EFBIG; FUSE never sends it (docs/fuse.md)
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        finally:
            os.close(fd)
        assert _read(path) == old and refreshes() == before  # refused writes change nothing

        data = hashlib.sha512(b"one").digest()[:size]
        fd = os.open(path, os.O_WRONLY)
        try:
            assert os.write(fd, data) == size
            assert _errno(os.write, fd, data) == "EFBIG"  # f_pos is now at the end
        finally:
            os.close(fd)
        assert refreshes() == before  # the write only marks the group stale
        now = _read(path)
        assert now == hashlib.new(h, old + data).digest()
        assert refreshes() == before + 1  # the read after the write refreshed once
        assert _read(path) == now and refreshes() == before + 1

        # one write() of size + 1 bytes returns size (FUSE passes the short count on, no retry)
        long = hashlib.sha512(b"long").digest()[:size] + b"\n"
        fd = os.open(path, os.O_WRONLY)
        try:
            assert os.write(fd, long) == size
            assert _errno(os.write, fd, long[size:]) == "EFBIG"  # what a write loop meets next
        finally:
            os.close(fd)
        after = _read(path)
        assert after == hashlib.new(h, now + long[:size]).digest()
        fd = os.open(path, os.O_WRONLY)
        try:
            assert os.write(fd, b"m" * (1 << 20)) == size  # kernfs takes a page, sysfs clamps it
        finally:
            os.close(fd)
        after = hashlib.new(h, after + b"m" * size).digest()
        assert _read(path) == after

        # O_RDWR: read to the end, then a write at f_pos = size is EFBIG; pwrite at 0 extends
        fd = os.open(path, os.O_RDWR)
        try:
            assert os.read(fd, size + 1) == after
            assert _errno(os.write, fd, data) == "EFBIG"
            assert os.pwrite(fd, data, 0) == size
        finally:
            os.close(fd)
        after = hashlib.new(h, after + data).digest()
        assert _read(path) == after

        # a shell's `>>` (O_APPEND) extends as on sysfs, which ignores O_APPEND
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            assert os.write(fd, data) == size
        finally:
            os.close(fd)
        after = hashlib.new(h, after + data).digest()
        assert _read(path) == after

        # a write loop (Python's buffered file, a shell's echo without -n) extends once with the
        # first size bytes, then fails EFBIG retrying the rest
        with pytest.raises(OSError) as e:
            with open(path, "wb") as f:
                f.write(b"b" * size + b"\n")
        assert e.value.errno == errno.EFBIG
        after = hashlib.new(h, after + b"b" * size).digest()
        assert _read(path) == after
        p = subprocess.run(["sh", "-c", f'echo {"x" * size} > "$1"', "sh", str(path)], capture_output=True)
        assert p.returncode != 0, p.stderr
        assert _read(path) == hashlib.new(h, after + b"x" * size).digest()


def _mr_results(stdout: str, spec: str) -> dict[str, str]:
    """check id -> PASSED / FAILED / SKIPPED reason, from `run ... -rA`."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        m = re.match(rf"(PASSED|FAILED) tsm/{re.escape(spec)}::mr::(mr\.[a-z_.]+)", line)
        if m:
            out[m[2]] = m[1]
    return out


@pytest.mark.parametrize("spec", ["tsm_test", "tdx_guest"])
def test_mr_checks_pass_over_fuse(mnt: Path, tmp_path: Path, spec: str) -> None:
    with emulate(spec, mnt):
        p = cli("run", "--root", str(mnt / "tsm" / "report"), "-q", "--", "--tsm-check", "mr.*", "-rA",
                cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    got = _mr_results(p.stdout, spec)
    assert got == dict.fromkeys(MR_CHECKS, "PASSED"), p.stdout  # none skipped: FUSE shows them all


def test_overwriting_provider_fails_over_fuse(mnt: Path, tmp_path: Path) -> None:
    spec = "tdx_guest+mr-overwrite"
    with emulate(spec, mnt):
        p = cli("run", "--root", str(mnt / "tsm" / "report"), "-q", "--", "--tsm-check", "mr.*", "-rA",
                cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert _mr_results(p.stdout, "tdx_guest")["mr.write.extends"] == "FAILED", p.stdout


@pytest.mark.parametrize("spec", ["sev_guest", "tdx_guest@6.15", "tsm_test:measurements=0"])
def test_no_group_no_directory(mnt: Path, spec: str) -> None:
    with emulate(spec, mnt):
        assert os.listdir(mnt) == ["tsm"]
        for name in ("measurements", ".mr-refreshes"):
            assert _errno(os.stat, mnt / name) == "ENOENT"
        assert _errno(os.listdir, mnt / "measurements") == "ENOENT"
        assert _errno(os.mkdir, mnt / "measurements") == "EPERM"  # configfs' root makes nothing
