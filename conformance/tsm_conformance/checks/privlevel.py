"""privlevel.*: kstrtouint(buf, 0) grammar, range floor..3, and the report's echo of it
(docs/abi.md §1a, §1c; docs/real-kernels.md claims: Text attributes)."""

from __future__ import annotations

import struct

from .base import Ctx, check
from .outblob import nonce_in_report

# Texts kstrtouint(buf, 0) accepts as the value 3 (one trailing newline, '+', hex, octal, the NUL
# configfs appends ending the string), and texts it rejects whatever the range.
ACCEPTED_AS_3 = (b"3", b"3\n", b"+3", b"0x3", b"0X3", b"03", b"00000000000000000000003", b"+0x3",
                 b"3\0junk")
REJECTED = (b" 3", b"3 ", b"3x", b"08", b"-1", b"0x", b"\n", b"0b1", b"0o1", b"3\r", b"3\n\n", b"++3",
            b"three")
OVERFLOW = (b"4294967296", b"4294967299", b"99999999999999999999999")


@check("privlevel.grammar.accepted",
       "privlevel accepts every kstrtouint(buf, 0) spelling of a valid value",
       "docs/abi.md §1a: kstrtouint base 0; docs/real-kernels.md claims: accepted texts", needs=("privlevel",))
def accepted(ctx: Ctx) -> None:
    with ctx.item() as r:
        for text in ACCEPTED_AS_3:
            res = ctx.write(f"{r}/privlevel", text)
            if res != len(text):
                ctx.fail(f"write({ctx.rel(r)}/privlevel, {text!r}) -> {len(text)}",
                         f"write({ctx.rel(r)}/privlevel, {text!r}) -> {res}", "errors.privlevel_invalid")


@check("privlevel.grammar.rejected",
       "privlevel rejects text that is not exactly one kstrtouint number (spaces, junk, signs) with EINVAL",
       "docs/abi.md §1c; docs/real-kernels.md claims: rejected texts", needs=("privlevel",))
def rejected(ctx: Ctx) -> None:
    with ctx.item() as r:
        for text in REJECTED:
            ctx.expect_errno("privlevel_invalid", f"write({ctx.rel(r)}/privlevel, {text!r})",
                             ctx.write(f"{r}/privlevel", text))


@check("privlevel.grammar.erange", "privlevel values above U32_MAX fail with ERANGE",
       "docs/abi.md §1c: kstrtouint -> ERANGE", needs=("privlevel",))
def erange(ctx: Ctx) -> None:
    with ctx.item() as r:
        for text in OVERFLOW:
            ctx.expect_errno("privlevel_overflow", f"write({ctx.rel(r)}/privlevel, {text!r})",
                             ctx.write(f"{r}/privlevel", text))


@check("privlevel.range.max_enforced", "privlevel above TSM_PRIVLEVEL_MAX fails with EINVAL; the max is accepted",
       "docs/abi.md §1a: range floor <= v <= 3", needs=("privlevel",))
def max_enforced(ctx: Ctx) -> None:
    hi = ctx.profile.limits_privlevel_max
    with ctx.item() as r:
        for v in (hi + 1, 1000, 0xFFFFFFFF):
            ctx.expect_errno("privlevel_out_of_range", f"write({ctx.rel(r)}/privlevel, {v})",
                             ctx.write(f"{r}/privlevel", b"%d" % v))
        ctx.expect_equal(f"write({ctx.rel(r)}/privlevel, {hi})", 1, ctx.write(f"{r}/privlevel", b"%d" % hi),
                         "limits.privlevel_max")


@check("privlevel.range.floor_enforced",
       "privlevel below privlevel_floor fails with EINVAL; the floor itself is accepted",
       "docs/abi.md §1a, §7.7", needs=("privlevel", "privlevel_floor"))
def floor_enforced(ctx: Ctx) -> None:
    floor = ctx.facts.privlevel_floor
    if floor is None:
        ctx.fail("privlevel_floor readable", "it could not be read at probe time", "privlevel.floor")
    assert floor is not None
    if floor == 0:
        ctx.na("privlevel_floor is 0: no value lies below it")
    with ctx.item() as r:
        ctx.expect_errno("privlevel_out_of_range", f"write({ctx.rel(r)}/privlevel, {floor - 1}) below the floor",
                         ctx.write(f"{r}/privlevel", b"%d" % (floor - 1)))
        ctx.expect_equal(f"write({ctx.rel(r)}/privlevel, {floor})", len(b"%d" % floor),
                         ctx.write(f"{r}/privlevel", b"%d" % floor), "privlevel.floor")


@check("privlevel.zero_write.efault", "a zero-length write() to privlevel fails with EFAULT and changes nothing",
       "docs/abi.md §1c: fill_write_buffer returns `copied ?: -EFAULT`", needs=("privlevel",))
def zero(ctx: Ctx) -> None:
    ctx.need_observable("zero-length-write")
    with ctx.item() as r:
        g0 = ctx.generation(r)
        ctx.expect_errno("write_zero_length", f"write({ctx.rel(r)}/privlevel, b'')", ctx.write(f"{r}/privlevel", b""))
        ctx.expect_equal("generation after a zero-length privlevel write", g0, ctx.generation(r),
                         "generation.text_commit")


@check("privlevel.report.echoed", "the report carries the privlevel that was written (e.g. SNP VMPL)",
       "docs/abi.md §5.1: privlevel becomes the request's VMPL", needs=("privlevel",))
def echoed(ctx: Ctx) -> None:
    f = ctx.profile.report_privlevel
    if f is None or f.offset is None or not ctx.profile.privlevel_honoured or ctx.profile.report_nonce is None:
        ctx.na(f"{ctx.profile.name} does not echo privlevel at a fixed offset")
    assert f is not None and f.offset is not None
    floor = ctx.facts.privlevel_floor or 0
    fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[f.length]
    with ctx.item() as r:
        for v in sorted({ctx.profile.limits_privlevel_max, floor, max(floor, 2)}):
            ctx.write(f"{r}/privlevel", b"%d" % v)
            nonce = ctx.nonce(ctx.report_len(), salt=v)
            ctx.commit_inblob(r, nonce)
            blob = nonce_in_report(ctx, r, nonce)
            got = struct.unpack_from(fmt, blob, f.offset)[0] if len(blob) >= f.offset + f.length else None
            if got != v:
                ctx.fail(f"report privlevel field @{f.offset:#x} = {v}", f"= {got}", "report.privlevel")


@check("privlevel.floor.reports",
       "a report can be made at privlevel_floor: the floor the tree advertises is one its provider "
       "accepts (a client that trusts it gets a report)",
       "docs/providers.md sev_guest: the floor is vmpck_id from 6.11 (614dc0fb7632); before, 0 while "
       "the firmware refused reports below vmpck_id", needs=("privlevel", "privlevel_floor"))
def floor_reports(ctx: Ctx) -> None:
    floor = ctx.facts.privlevel_floor
    if floor is None:
        ctx.fail("privlevel_floor readable", "it could not be read at probe time", "privlevel.floor")
    with ctx.report_item() as r:  # privlevel written with the floor
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        res = ctx.read(f"{r}/outblob", retry_busy=True)
        if isinstance(res, str):
            ctx.fail(f"read({ctx.rel(r)}/outblob) at privlevel {floor} (privlevel_floor) -> a report",
                     f"read({ctx.rel(r)}/outblob) -> {res}: the advertised floor is below what the "
                     "provider accepts", "privlevel.floor")


@check("privlevel.below_floor.refused",
       "a report asked below privlevel_floor (a fresh item's privlevel 0) fails with the profile's "
       "errno: SNP firmware refuses a VMPL below the VMPL of the VMPCK that asks",
       "docs/providers.md sev_guest: MSG_REPORT_RSP INVALID_PARAM -> EINVAL",
       needs=("privlevel", "privlevel_floor"))
def below_floor(ctx: Ctx) -> None:
    want = ctx.profile.privlevel_below_floor_errno
    if want is None:
        ctx.na(f"{ctx.profile.name} does not say what a report below the floor gives")
    if not ctx.facts.privlevel_floor:
        ctx.na("privlevel_floor is 0: no privlevel lies below it")
    with ctx.item() as r:  # privlevel left at a fresh item's 0, on purpose
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        res = ctx.read(f"{r}/outblob")
        if res != want:
            shown = f"{len(res)} bytes" if isinstance(res, bytes) else res
            ctx.fail(f"read({ctx.rel(r)}/outblob) at privlevel 0 below the floor "
                     f"{ctx.facts.privlevel_floor} -> {want}", f"read({ctx.rel(r)}/outblob) -> {shown}",
                     "privlevel.below_floor_errno")
