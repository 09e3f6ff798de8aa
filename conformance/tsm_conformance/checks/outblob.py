"""outblob.* and cache.*: report reads, per-fd snapshots and the cached-report rule
(docs/abi.md §2, §3; docs/real-kernels.md claims: Caching and per-fd snapshots)."""

from __future__ import annotations

import os

from .base import Ctx, check


def nonce_in_report(ctx: Ctx, r: str, nonce: bytes) -> bytes:
    """Read outblob and require the (zero-padded) nonce where the profile says it sits."""
    f = ctx.profile.report_nonce
    assert f is not None
    blob = ctx.read_ok(f"{r}/outblob", "report.nonce")
    want = nonce.ljust(f.length, b"\0")
    if f.offset is None:
        ok = want in blob
        where = "anywhere in outblob"
    else:
        ok = blob[f.offset:f.offset + f.length] == want
        where = f"outblob[{f.offset:#x}:{f.offset + f.length:#x}]"
    if not ok:
        got = blob[f.offset:f.offset + f.length].hex() if f.offset is not None else f"{len(blob)} bytes"
        ctx.fail(f"{where} = {want.hex()}", f"{where} = {got}", "report.nonce")
    return blob


@check("outblob.before_inblob.einval",
       "reading outblob (and auxblob, manifestblob) before any inblob fails with EINVAL",
       "docs/abi.md §1c: inblob_len == 0 -> EINVAL, checked before the provider")
def before_inblob(ctx: Ctx) -> None:
    with ctx.report_item() as r:
        for name in ("outblob", "auxblob", "manifestblob"):
            if name in ctx.profile.visible_attributes(ctx.facts.groups_present(ctx.profile)):
                ctx.expect_errno("read_before_inblob", f"read({ctx.rel(r)}/{name})", ctx.read(f"{r}/{name}"))


@check("outblob.nonce.bound",
       "after a nonce is written, outblob is at least the format's minimum size and carries the nonce",
       "docs/abi.md §5 report_data / REPORTDATA / challenge offsets; §7.2")
def binds(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    with ctx.report_item() as r:
        nonce = ctx.nonce(ctx.report_len())
        ctx.commit_inblob(r, nonce)
        blob = nonce_in_report(ctx, r, nonce)
        lo = ctx.profile.report_min_length or 1
        if len(blob) < lo:
            ctx.fail(f"len(outblob) >= {lo}", f"len(outblob) = {len(blob)}", "report.min_length")


@check("outblob.snapshot.per_fd",
       "an fd keeps the report of its first read(); a new fd after a write sees the new report",
       "docs/abi.md §3: one fill per fd, then a snapshot; docs/real-kernels.md N6")
def snapshot(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    n = ctx.report_len()
    with ctx.report_item() as r:
        first = ctx.nonce(n, salt=1)
        ctx.commit_inblob(r, first)
        whole = ctx.read_ok(f"{r}/outblob", "report.nonce")
        fd = ctx.tree.open(f"{r}/outblob", os.O_RDONLY)
        try:
            head = ctx.tree.read(fd, 16)
            ctx.commit_inblob(r, ctx.nonce(n, salt=2))
            rest = b""
            while True:
                b = ctx.tree.read(fd, 1 << 16)
                if not b:
                    break
                rest += b
        finally:
            ctx.tree.close(fd)
        if head + rest != whole:
            ctx.fail("the rest of an fd read before a write = the report it started on",
                     f"{len(head + rest)} bytes that differ from the {len(whole)}-byte report",
                     "generation.inblob_commit")
        nonce_in_report(ctx, r, ctx.nonce(n, salt=2))


@check("outblob.partial_reads.consistent",
       "small read()s and pread()s at offsets return the same bytes as one large read",
       "docs/abi.md §3: partial reads and pread work against the per-fd snapshot")
def partial(ctx: Ctx) -> None:
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        whole = ctx.read_ok(f"{r}/outblob", "report")
        fd = ctx.tree.open(f"{r}/outblob", os.O_RDONLY)
        try:
            pieces = []
            while True:
                b = ctx.tree.read(fd, 7)
                if not b:
                    break
                pieces.append(b)
            offs = [0, len(whole) // 3, max(len(whole) - 5, 0)]
            preads = [ctx.tree.pread(fd, 16, o) for o in offs]
            past = ctx.tree.pread(fd, 16, len(whole) + 10)
        finally:
            ctx.tree.close(fd)
        if b"".join(pieces) != whole:
            ctx.fail("7-byte reads rebuild the report", f"{len(b''.join(pieces))} bytes that differ", "report")
        for o, got in zip(offs, preads):
            if got != whole[o:o + 16]:
                ctx.fail(f"pread(16, {o}) = report[{o}:{o + 16}]", f"pread(16, {o}) = {got.hex()}", "report")
        if past:
            ctx.fail("pread past the end -> 0 bytes", f"{len(past)} bytes", "report")


@check("cache.outblob.stable_without_writes",
       "two reads with no write between them return identical bytes (the cached report)",
       "docs/abi.md §2: read_generation == write_generation serves the cache")
def stable(ctx: Ctx) -> None:
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        a = ctx.read_ok(f"{r}/outblob", "report")
        b = ctx.read_ok(f"{r}/outblob", "report")
        if a != b:
            ctx.fail("second read of outblob = first read", "the bytes differ (report regenerated)",
                     "report.fresh_per_generation")


@check("cache.outblob.regenerated_after_inblob",
       "after a new inblob the next read returns a new report bound to the new nonce",
       "docs/abi.md §2: a write makes the cached report stale")
def regen_inblob(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    n = ctx.report_len()
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(n, salt=1))
        nonce_in_report(ctx, r, ctx.nonce(n, salt=1))
        ctx.commit_inblob(r, ctx.nonce(n, salt=2))
        nonce_in_report(ctx, r, ctx.nonce(n, salt=2))


@check("cache.outblob.regenerated_after_option",
       "after an option write (privlevel, same value) the next read returns a freshly generated report",
       "docs/abi.md §2: every accepted option write advances the generation", needs=("privlevel",))
def regen_option(ctx: Ctx) -> None:
    ctx.need_fresh_reports()
    hi = ctx.profile.limits_privlevel_max
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        ctx.write(f"{r}/privlevel", b"%d" % hi)
        a = ctx.read_ok(f"{r}/outblob", "report")
        ctx.write(f"{r}/privlevel", b"%d" % hi)
        b = ctx.read_ok(f"{r}/outblob", "report")
        if a == b:
            ctx.fail("a new report after the privlevel write", "the same bytes as before (stale cache)",
                     "report.fresh_per_generation")


@check("cache.auxblob.shares_report",
       "auxblob comes from the same report_new call as outblob: reading it does not regenerate outblob",
       "docs/abi.md §2: outblob, auxblob and manifestblob come from one report_new call", needs=("auxblob",))
def aux_shares(ctx: Ctx) -> None:
    ctx.need_fresh_reports()
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        a = ctx.read_ok(f"{r}/outblob", "report")
        ctx.read_ok(f"{r}/auxblob", "report")
        b = ctx.read_ok(f"{r}/outblob", "report")
        if a != b:
            ctx.fail("outblob after reading auxblob = outblob before", "a different report (regenerated)",
                     "report.fresh_per_generation")
