"""mr.*: measurement registers (tsm-mr, Linux 6.16+; docs/abi-measurements.md).

The registers live in sysfs beside the provider (the profile's ``measurements.group``), not in the
report group: these checks reach them through ``Tree.measurements`` and log their operations with
a ``measurements/`` prefix.  They apply where the profile lists registers and the kernel is at
least its ``measurements.since``; a target without the group (a kernel built without
CONFIG_TSM_MEASUREMENTS) skips them as unsupported.  Extends change the registers for the rest of
the boot, as any client's would: the checks predict values from what they read first, never from
a fresh state.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

from ..errnos import name as errno_name
from ..outcome import Unsupported
from ..profile.model import Measurements, MrRegister, version_tuple
from ..seq import ARG0, MR_HEAD
from .base import Ctx, check, recorded

ABI = "docs/abi-measurements.md"


class _Recorded:
    """The group's operations, logged into the check's operation log as seq.py names them
    (measurements/NAME: seq.MR_HEAD), so a failure's .tsmseq replays on the group."""

    OPS = ("listdir", "stat", "open", "close", "read", "pread", "write", "pwrite", "lseek")

    def __init__(self, mr: Any, log: list) -> None:
        self.mr = mr
        for op in self.OPS:
            show = (lambda a: (f"{MR_HEAD}/{a[0]}", *a[1:])) if ARG0[op] == "path" else None
            setattr(self, op, recorded(op, getattr(mr, op), log, show))


def group(ctx: Ctx) -> tuple[Any, Measurements]:
    """The recorded group and the profile's registers; skips where they cannot apply."""
    m = ctx.profile.measurements
    if m is None:
        ctx.na(f"{ctx.profile.name} has no measurement registers")
    rel = version_tuple(ctx.facts.kernel_release)
    if rel and rel < version_tuple(m.since):
        ctx.na(f"measurement registers need Linux {m.since}+ (kernel {ctx.facts.kernel_release})")
    mr = ctx.tree.t.measurements(m.group, m.refresh_counter)
    # a failure's .tsmseq finds the group again (seq.MR_HEAD), and may extend where this run might
    ctx.header_extra.update({"mr-group": m.group, **({"mr-counter": m.refresh_counter} if m.refresh_counter else {}),
                             **({"mr-extend": "yes"} if m.extendable_by_tests else {})})
    if mr is None:
        raise Unsupported(f"unsupported: no measurement group at {m.group} on {ctx.facts.target} "
                          "(a kernel without CONFIG_TSM_MEASUREMENTS, or a provider built without one)")
    return _Recorded(mr, ctx.tree.log), m


def writable(ctx: Ctx, m: Measurements) -> list[MrRegister]:
    """The registers a check may extend.  Never harm the system under test: on a live machine an
    extend changes what the registers attest to for the rest of the boot, with no event-log entry
    to explain it, so only a test provider's (``extendable_by_tests``) are written there."""
    regs = [r for r in m.registers if r.writable]
    if not regs:
        ctx.na(f"{ctx.profile.name} has no writable measurement register")
    if ctx.tree.t.kind == "live" and not m.extendable_by_tests:
        raise Unsupported(f"unsupported: extending {ctx.profile.name}'s registers on a live machine changes its "
                          "measurements until reboot (docs/abi-measurements.md §11); the write checks run on "
                          "tsm_test, the emulator and FUSE mounts")
    return regs


def extended(reg: MrRegister, old: bytes, data: bytes) -> bytes:
    """What an extend leaves: H(old || data) with the register's hash (docs/abi-measurements.md §3)."""
    return hashlib.new(reg.hash or "sha384", old + data).digest()[:reg.size]


def value(mr: Any, reg: MrRegister) -> bytes:
    fd = mr.open(reg.file_name, os.O_RDONLY)
    try:
        return mr.read(fd, reg.size + 1)
    finally:
        mr.close(fd)


def attempt(fn: Callable, *args: object) -> object:
    """The call's result, or the errno name it failed with."""
    try:
        return fn(*args)
    except OSError as e:
        return errno_name(e.errno)


def writes(mr: Any, reg: MrRegister, *calls: tuple) -> list[object]:
    """Open ``reg`` for writing once, make each call (("write", data) or ("pwrite", data, offset))
    on that fd, close; each call's result or errno name."""
    fd = mr.open(reg.file_name, os.O_WRONLY)
    try:
        return [attempt(getattr(mr, c[0]), fd, *c[1:]) for c in calls]
    finally:
        mr.close(fd)


def data_for(ctx: Ctx, reg: MrRegister, n: int, salt: int = 0) -> bytes:
    return (hashlib.sha512(f"{ctx.check.id}:{reg.name}:{salt}".encode()).digest() * (n // 64 + 1))[:n]


def keypath(m: Measurements, reg: MrRegister) -> str:
    return f"measurements.registers.{m.registers.index(reg)}"


@check("mr.files.match_profile",
       "the group holds exactly the profile's registers, each named NAME:ALGO (NAME alone without a hash), with "
       "its mode and size", f"{ABI} §1")
def files(ctx: Ctx) -> None:
    mr, m = group(ctx)
    want = sorted(r.file_name for r in m.registers)
    got = sorted(mr.listdir(""))
    if got != want:
        ctx.fail(f"files {want}", f"files {got}", "measurements.registers")
    for reg in m.registers:
        st = mr.stat(reg.file_name)
        if (st.perm, st.size) != (reg.mode, reg.size):
            ctx.fail(f"{reg.file_name}: mode 0{reg.mode:o}, size {reg.size}",
                     f"{reg.file_name}: mode 0{st.perm:o}, size {st.size}", keypath(m, reg))


@check("mr.readonly.refused",
       "a read-only register cannot be opened for writing (EACCES)", f"{ABI} §1, §2")
def readonly(ctx: Ctx) -> None:
    mr, m = group(ctx)
    ro = [r for r in m.registers if not r.writable]
    if not ro:
        ctx.na(f"{ctx.profile.name} has no read-only measurement register")
    for reg in ro:
        for flags, shown in ((os.O_WRONLY, "O_WRONLY"), (os.O_RDWR, "O_RDWR")):
            r = attempt(mr.open, reg.file_name, flags)
            if isinstance(r, int):
                mr.close(r)
                ctx.fail(f"open({reg.file_name}, {shown}) -> EACCES", f"open({reg.file_name}, {shown}) -> fd",
                         keypath(m, reg))
            if r != "EACCES":
                ctx.fail(f"open({reg.file_name}, {shown}) -> EACCES", f"open({reg.file_name}, {shown}) -> {r}",
                         keypath(m, reg))


@check("mr.write.extends",
       "writing one whole register at offset 0 returns its size and extends it: new = H(old || data)",
       f"{ABI} §2, §3")
def extends(ctx: Ctx) -> None:
    mr, m = group(ctx)
    for reg in writable(ctx, m):
        old = value(mr, reg)
        data = data_for(ctx, reg, reg.size)
        (n,) = writes(mr, reg, ("write", data))
        if n != reg.size:
            ctx.fail(f"write({reg.file_name}, {reg.size} bytes) -> {reg.size}",
                     f"write({reg.file_name}, {reg.size} bytes) -> {n}", keypath(m, reg))
        ctx.expect_equal(f"{reg.file_name} after the extend", extended(reg, old, data).hex(),
                         value(mr, reg).hex(), keypath(m, reg))


@check("mr.extend.replayed",
       "every extend of a series gives H(previous || data): the value read after each write is the one replayed",
       f"{ABI} §3")
def replayed(ctx: Ctx) -> None:
    mr, m = group(ctx)
    for reg in writable(ctx, m):
        want = value(mr, reg)
        for i in range(3):
            data = data_for(ctx, reg, reg.size, i)
            writes(mr, reg, ("write", data))
            want = extended(reg, want, data)
            ctx.expect_equal(f"{reg.file_name} after extend {i + 1}", want.hex(), value(mr, reg).hex(),
                             keypath(m, reg))


@check("mr.write.short_einval",
       "a write shorter than the register fails EINVAL and changes nothing; a 0-byte write returns 0",
       f"{ABI} §2: tsm-mr accepts only count == size at offset 0")
def short(ctx: Ctx) -> None:
    mr, m = group(ctx)
    for reg in writable(ctx, m):
        old = value(mr, reg)
        r, z = writes(mr, reg, ("write", data_for(ctx, reg, reg.size - 1)), ("write", b""))
        if r != "EINVAL":
            ctx.fail(f"write({reg.file_name}, {reg.size - 1} bytes) -> EINVAL",
                     f"write({reg.file_name}, {reg.size - 1} bytes) -> {r}", keypath(m, reg))
        if z != 0:
            ctx.fail(f"write({reg.file_name}, 0 bytes) -> 0", f"write({reg.file_name}, 0 bytes) -> {z}",
                     keypath(m, reg))
        ctx.expect_equal(f"{reg.file_name} after refused writes", old.hex(), value(mr, reg).hex(), keypath(m, reg))


@check("mr.write.long_clamped",
       "a longer write is cut to the register: it returns the size and extends with the first size bytes; the "
       "next write on that fd, now at the end, fails EFBIG",
       f"{ABI} §2: sysfs clamps a binary write to the file size, and refuses one at or past the end")
def long_write(ctx: Ctx) -> None:
    mr, m = group(ctx)
    for reg in writable(ctx, m):
        old = value(mr, reg)
        data = data_for(ctx, reg, reg.size + 1)
        n, again = writes(mr, reg, ("write", data), ("write", data))
        if (n, again) != (reg.size, "EFBIG"):
            ctx.fail(f"write({reg.size + 1} bytes) -> {reg.size}, then write -> EFBIG",
                     f"write({reg.size + 1} bytes) -> {n}, then write -> {again}", keypath(m, reg))
        ctx.expect_equal(f"{reg.file_name} after the clamped write", extended(reg, old, data[:reg.size]).hex(),
                         value(mr, reg).hex(), keypath(m, reg))


@check("mr.write.offsets",
       "a write at an offset inside the register fails EINVAL and one at its end EFBIG, changing nothing",
       f"{ABI} §2")
def offsets(ctx: Ctx) -> None:
    mr, m = group(ctx)
    for reg in writable(ctx, m):
        old = value(mr, reg)
        inside, end = writes(mr, reg, ("pwrite", data_for(ctx, reg, reg.size - 1), 1),
                             ("pwrite", data_for(ctx, reg, reg.size), reg.size))
        if (inside, end) != ("EINVAL", "EFBIG"):
            ctx.fail("pwrite(offset 1) -> EINVAL, pwrite(offset size) -> EFBIG",
                     f"pwrite(offset 1) -> {inside}, pwrite(offset {reg.size}) -> {end}", keypath(m, reg))
        ctx.expect_equal(f"{reg.file_name} after refused writes", old.hex(), value(mr, reg).hex(), keypath(m, reg))


@check("mr.refresh.only_after_write",
       "live registers are refreshed once after a write, on the next read, and never on reads without one",
       f"{ABI} §4: one stale flag per group, set by a write, cleared by the refresh a live read triggers")
def refresh(ctx: Ctx) -> None:
    mr, m = group(ctx)
    if mr.mr.refreshes() is None:
        raise Unsupported(f"unsupported: {ctx.facts.target} does not count its refreshes (tsm_test's "
                          "mr_refreshes parameter and the emulator do)")
    live = [r for r in m.registers if r.live]
    regs = [r for r in writable(ctx, m) if r.live]
    if not regs:
        ctx.na(f"{ctx.profile.name} has no live writable register")
    value(mr, live[0])  # whatever an earlier write left stale is refreshed now
    before = mr.mr.refreshes()
    for reg in live * 2:
        value(mr, reg)
    if mr.mr.refreshes() != before:
        ctx.fail("no refresh on reads without a write", f"{mr.mr.refreshes() - before} refreshes",
                 "measurements.registers")
    writes(mr, regs[0], ("write", data_for(ctx, regs[0], regs[0].size)))
    for reg in live * 2:
        value(mr, reg)
    if mr.mr.refreshes() != before + 1:
        ctx.fail("exactly one refresh after a write", f"{mr.mr.refreshes() - before} refreshes",
                 "measurements.registers")


def report_values(ctx: Ctx, m: Measurements, r: str) -> dict[str, bytes]:
    """Each register as the report of item ``r`` carries it (profile: a blob and offset, or a field
    of the parsed format)."""
    out: dict[str, bytes] = {}
    blobs: dict[str, bytes] = {}
    parsed: Any = None
    for reg in m.registers:
        if reg.report_blob is not None and reg.report_offset is not None:
            if reg.report_blob not in blobs:
                blobs[reg.report_blob] = ctx.read_ok(f"{r}/{reg.report_blob}", keypath(m, reg))
            b = blobs[reg.report_blob]
            out[reg.name] = b[reg.report_offset:reg.report_offset + reg.size]
        elif reg.report_field is not None:
            if parsed is None:
                parsed = _parsed(ctx, r)
            body = getattr(parsed, "body", parsed)
            out[reg.name] = bytes(getattr(body, reg.report_field, b""))
    if not out:
        ctx.na(f"{ctx.profile.name} does not say where its reports carry the registers")
    return out


def _parsed(ctx: Ctx, r: str) -> Any:
    from ..formats.base import ParseError
    from ..formats.registry import parse
    fmt = ctx.profile.report_format
    if fmt is None:
        ctx.na(f"{ctx.profile.name} does not name its report format")
    blob = ctx.read_ok(f"{r}/outblob", "report.format")
    try:
        return parse(fmt, blob)
    except ParseError as e:
        ctx.fail(f"outblob parses as {fmt}", f"outblob does not parse: {e}", "report.format")


@check("mr.report.coherent",
       "after extends and a new inblob, the report carries every register as sysfs shows it",
       f"{ABI} §6: a report reads the registers from the provider when it is made")
def coherent(ctx: Ctx) -> None:
    mr, m = group(ctx)
    for reg in writable(ctx, m):
        writes(mr, reg, ("write", data_for(ctx, reg, reg.size)))
    with ctx.report_item() as r:  # the report before any sysfs read: a stale cache cannot hide
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        got = report_values(ctx, m, r)
    for reg in m.registers:
        if reg.name in got:
            ctx.expect_equal(f"{reg.name} in the report", value(mr, reg).hex(), got[reg.name].hex(),
                             keypath(m, reg))


@check("mr.report.cached_until_inblob",
       "an extend neither bumps generation nor changes a report already made: it shows in the next report, made "
       "after a new inblob (the documented hazard: read generation and write inblob after extending)",
       f"{ABI} §6")
def cached(ctx: Ctx) -> None:
    mr, m = group(ctx)
    regs = [r for r in writable(ctx, m) if r.report_blob or r.report_field]
    if not regs:
        ctx.na(f"{ctx.profile.name} does not say where its reports carry the writable registers")
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        before = report_values(ctx, m, r)
        gen = ctx.generation(r)
        writes(mr, regs[0], ("write", data_for(ctx, regs[0], regs[0].size)))
        ctx.expect_equal("generation after an extend", gen, ctx.generation(r), "generation")
        ctx.expect_equal(f"{regs[0].name} in the report made before the extend", before[regs[0].name].hex(),
                         report_values(ctx, m, r)[regs[0].name].hex(), keypath(m, regs[0]))
        ctx.note("the hazard: a client that extends and reads outblob again without a new inblob gets the "
                 "old registers (docs/abi-measurements.md §11)")
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len(), salt=1))
        after = report_values(ctx, m, r)[regs[0].name]
        ctx.expect_equal(f"{regs[0].name} in the report after a new inblob", value(mr, regs[0]).hex(), after.hex(),
                         keypath(m, regs[0]))
