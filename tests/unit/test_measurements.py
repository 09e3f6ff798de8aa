"""Measurement registers (docs/abi-measurements.md): the emulator's write and read rules, the mr
checks' applicability, sequences that address the group, and the live-machine safety rule."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from tsm_conformance.checks.base import all_checks
from tsm_conformance.checks.runner import Session
from tsm_conformance.outcome import Outcome
from tsm_conformance.profile.load import load_profile
from tsm_conformance.seq import Executor, Op, execute, parse_op
from tsm_conformance.seqgen import generate
from tsm_conformance.target.emulated import EmulatedTree

MR = [c for c in all_checks() if c.area == "mr"]


def group(spec: str = "tsm_test"):  # noqa: ANN201
    mr = EmulatedTree(spec).measurements()
    assert mr is not None
    return mr


def errno_of(fn, *args) -> object:  # noqa: ANN001
    try:
        return fn(*args)
    except OSError as e:
        return errno.errorcode[e.errno]


def test_the_write_contract() -> None:
    """§2's table, case by case, on rtmr0:sha384 (48 bytes)."""
    mr = group()
    name = "rtmr0:sha384"
    fd = mr.open(name, os.O_RDONLY)
    old = mr.read(fd, 49)
    mr.close(fd)
    fd = mr.open(name, os.O_WRONLY)
    assert errno_of(mr.write, fd, b"x" * 47) == "EINVAL"
    assert mr.write(fd, b"") == 0
    assert errno_of(mr.pwrite, fd, b"x" * 47, 1) == "EINVAL"
    assert errno_of(mr.pwrite, fd, b"x" * 48, 48) == "EFBIG"
    assert mr.write(fd, b"y" * 49) == 48  # clamped: extends with the first 48
    assert errno_of(mr.write, fd, b"y") == "EFBIG"  # the position is now the end
    mr.close(fd)
    fd = mr.open(name, os.O_RDONLY)
    assert mr.read(fd, 100) == hashlib.sha384(old + b"y" * 48).digest()
    assert mr.read(fd, 100) == b"" and mr.pread(fd, 16, 40) == hashlib.sha384(old + b"y" * 48).digest()[40:]
    mr.close(fd)
    assert errno_of(mr.open, "mrstatic:sha384", os.O_WRONLY) == "EACCES"
    assert errno_of(mr.open, "rtmr0", os.O_RDONLY) == "ENOENT"


def test_refresh_only_after_a_write_and_reports_read_hardware() -> None:
    t = EmulatedTree("tsm_test")
    mr = t.measurements()
    assert mr is not None
    fd = mr.open("rtmr1:sha256", os.O_RDONLY)
    mr.read(fd, 40)
    n = mr.refreshes()
    mr.pread(fd, 40, 0)
    mr.pread(fd, 40, 0)
    assert mr.refreshes() == n
    w = mr.open("rtmr1:sha256", os.O_WRONLY)
    assert mr.write(w, b"z" * 32) == 32
    mr.close(w)
    assert mr.refreshes() == n  # the write marks stale; the read refreshes
    new = mr.pread(fd, 40, 0)
    assert mr.refreshes() == n + 1 and new == hashlib.sha256(bytes(32) + b"z" * 32).digest()
    mr.close(fd)


@pytest.mark.parametrize("spec,why", [("tsm_test@6.12", "need Linux 6.16+"), ("sev_guest", "has no measurement"),
                                      ("arm_cca_guest", "has no measurement")])
def test_mr_checks_do_not_apply_without_registers(spec: str, why: str) -> None:
    profile = load_profile(spec.split("@")[0])
    for r in Session(EmulatedTree(spec), profile).run(MR):
        assert r.outcome is Outcome.SKIP_NA and why in r.reason, (r.check.id, r.reason)


def test_a_kernel_without_the_group_is_unsupported_not_failed() -> None:
    """tsm_test on a 6.16+ kernel built without CONFIG_TSM_MEASUREMENTS (measurements=0 here)."""
    for r in Session(EmulatedTree("tsm_test:measurements=0"), load_profile("tsm_test")).run(MR):
        assert r.outcome is Outcome.SKIP_UNSUPPORTED and "no measurement group" in r.reason, (r.check.id, r.reason)


def test_sequences_address_the_group() -> None:
    ops = [parse_op(x) for x in ("listdir(measurements)", "open(measurements/rtmr0:sha384, O_WRONLY)",
                                 "write(fd0, b'" + "\\x00" * 48 + "')", "close(fd0)",
                                 "open(measurements/rtmr0:sha384, O_RDONLY)", "read(fd1, 49)", "close(fd1)")]
    got = execute(EmulatedTree("tsm_test"), ops, "mrt-")
    assert got[0] == "[mrconfig, mrstatic:sha384, rtmr0:sha384, rtmr1:sha256]" and got[2] == "48"
    assert got[5] == execute(EmulatedTree("tsm_test"), ops, "mrt-")[5]  # deterministic: the same extend chain


def test_a_live_replay_extends_only_a_test_providers_registers() -> None:
    class LiveLike(EmulatedTree):
        kind = "live"
    ex = Executor(LiveLike("tdx_guest"), "mrt-")
    with pytest.raises(ValueError, match="changes what they attest to"):
        ex.call(Op("open", ("measurements/rtmr0:sha384", "O_WRONLY")))
    assert ex.call(Op("open", ("measurements/rtmr0:sha384", "O_RDONLY"))) == "fd1"
    ex = Executor(LiveLike("tsm_test"), "mrt-", mr=(None, None, True))
    assert ex.call(Op("open", ("measurements/rtmr0:sha384", "O_WRONLY"))) == "fd0"


def test_generated_sequences_gain_register_steps_only_when_asked() -> None:
    plain = generate(7)
    regs = (("rtmr0:sha384", 48, True), ("mrstatic:sha384", 48, False))
    assert generate(7, registers=()) == plain
    mixed = [generate(s, registers=regs) for s in range(40)]
    assert any(str(o.args[0]).startswith("measurements/") for ops in mixed for o in ops if o.name == "open")
