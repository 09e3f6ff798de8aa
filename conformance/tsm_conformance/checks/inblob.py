"""inblob.*: the nonce buffer: 64-byte limit, EFBIG/EFAULT, commit at close, offsets, length rules
(docs/abi.md §1c, §3; docs/real-kernels.md claims: inblob)."""

from __future__ import annotations

import os

from .base import Ctx, check
from .outblob import nonce_in_report


@check("inblob.oversize.efbig", "an inblob write() that ends past the 64-byte limit fails with EFBIG",
       "docs/abi.md §1c: configfs_bin_write_iter end offset > cb_max_size")
def oversize(ctx: Ctx) -> None:
    n = ctx.profile.limits_inblob_max + 1
    with ctx.item() as r:
        ctx.expect_errno("inblob_oversize", f"write({ctx.rel(r)}/inblob, {n} bytes)",
                         ctx.write(f"{r}/inblob", ctx.nonce(n)))


@check("inblob.oversize.close_commits_empty",
       "after an oversize write fails, close() still commits an empty inblob: generation +1, outblob EINVAL",
       "docs/abi.md §3 and docs/real-kernels.md 6.12 prototype: the EFBIG write marks the fd write-in-progress")
def oversize_commit(ctx: Ctx) -> None:
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        g0 = ctx.generation(r)
        ctx.write(f"{r}/inblob", ctx.nonce(ctx.profile.limits_inblob_max + 1, salt=1))
        ctx.expect_equal("generation after EFBIG write + close", g0 + 1, ctx.generation(r),
                         "generation.inblob_commit")
        ctx.expect_errno("read_before_inblob", f"read({ctx.rel(r)}/outblob) after the empty commit",
                         ctx.read(f"{r}/outblob"))


@check("inblob.zero_write.efault_commits_empty",
       "a zero-length write() to inblob fails with EFAULT and close() then commits an empty inblob",
       "docs/abi.md §1c/§3: `len ?: -EFAULT`; docs/real-kernels.md claims: gen +1 at close, outblob EINVAL")
def zero_write(ctx: Ctx) -> None:
    ctx.need_observable("zero-length-write")
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        g0 = ctx.generation(r)
        ctx.expect_errno("write_zero_length", f"write({ctx.rel(r)}/inblob, b'')", ctx.write(f"{r}/inblob", b""))
        ctx.expect_equal("generation after zero-length write + close", g0 + 1, ctx.generation(r),
                         "generation.inblob_commit")
        ctx.expect_errno("read_before_inblob", f"read({ctx.rel(r)}/outblob) after the empty commit",
                         ctx.read(f"{r}/outblob"))


def _needs_binding(ctx: Ctx) -> None:
    ctx.need_nonce_binding()


@check("inblob.multi_write.concatenates",
       "several write()s on one inblob fd are concatenated and committed together at close",
       "docs/real-kernels.md 6.12 prototype: writes '12' and '34' on one fd commit '1234'")
def concatenates(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    nonce = ctx.nonce(ctx.report_len())
    half = len(nonce) // 2
    with ctx.report_item() as r:
        fd = ctx.tree.open(f"{r}/inblob", os.O_WRONLY)
        try:
            ctx.tree.write(fd, nonce[:half])
            ctx.tree.write(fd, nonce[half:])
        finally:
            ctx.tree.close(fd)
        nonce_in_report(ctx, r, nonce)


@check("inblob.pwrite.zero_fills_gap",
       "pwrite at offset k makes an inblob of k + n bytes whose first k bytes are zero",
       "docs/abi.md §3: the new area of the write buffer is cleared; docs/real-kernels.md claims: inblob")
def pwrite_gap(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    n = ctx.report_len()
    tail = ctx.nonce(4)
    with ctx.report_item() as r:
        fd = ctx.tree.open(f"{r}/inblob", os.O_WRONLY)
        try:
            ctx.tree.pwrite(fd, tail, n - 4)
        finally:
            ctx.tree.close(fd)
        nonce_in_report(ctx, r, bytes(n - 4) + tail)


@check("inblob.efbig.keeps_prefix",
       "a write() that fails EFBIG keeps the bytes buffered before it; close() commits them",
       "docs/real-kernels.md 6.12 prototype: 60 bytes then 10 more: the 2nd write EFBIG, close commits the first 60")
def keeps_prefix(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    nonce = ctx.nonce(ctx.report_len())
    with ctx.report_item() as r:
        fd = ctx.tree.open(f"{r}/inblob", os.O_WRONLY)
        try:
            ctx.tree.write(fd, nonce)
            res = ctx.attempt(ctx.tree.write, fd, ctx.nonce(ctx.profile.limits_inblob_max, salt=2))
        finally:
            ctx.tree.close(fd)
        ctx.expect_errno("inblob_oversize", f"second write({ctx.rel(r)}/inblob) past the limit", res)
        nonce_in_report(ctx, r, nonce)


@check("inblob.length.rejected_at_read",
       "an inblob length outside the provider's accepted range makes the outblob read fail",
       "docs/abi.md §5: sev_guest/tdx_guest need exactly 64 bytes, arm_cca_guest 32..64 (EINVAL)")
def length_rejected(ctx: Ctx) -> None:
    lengths = ctx.profile.inblob_report_lengths
    if lengths is None or ctx.profile.inblob_rejected_length_errno is None or lengths.min <= 1:
        ctx.na(f"{ctx.profile.name} makes reports for every inblob length")
    assert lengths is not None
    n = lengths.min - 1
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(n))
        res = ctx.read(f"{r}/outblob")
        want = ctx.profile.inblob_rejected_length_errno
        if res != want:
            ctx.fail(f"read({ctx.rel(r)}/outblob) with a {n}-byte inblob -> {want}",
                     f"read({ctx.rel(r)}/outblob) with a {n}-byte inblob -> "
                     f"{res if isinstance(res, str) else f'{len(res)} bytes'}", "inblob.rejected_length_errno")


@check("inblob.length.accepted_range",
       "the shortest and the longest accepted inblob both produce a report bound to that nonce",
       "docs/abi.md §5 length rules; §7.1 inblob carries the nonce")
def length_accepted(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    lengths = ctx.profile.inblob_report_lengths
    sizes = sorted({lengths.min, lengths.max}) if lengths else [ctx.profile.limits_inblob_max]
    for i, n in enumerate(sizes):
        with ctx.report_item() as r:
            nonce = ctx.nonce(n, salt=i)
            ctx.commit_inblob(r, nonce)
            nonce_in_report(ctx, r, nonce)
