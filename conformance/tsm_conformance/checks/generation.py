"""gen.*: the generation counter (docs/abi.md §2, §3; docs/real-kernels.md claims: Generation)."""

from __future__ import annotations

import os

from .base import Ctx, check


@check("gen.fresh.initial", "a fresh item's generation reads the profile's initial value (\"0\\n\")",
       "docs/abi.md §2: write_generation is zeroed at mkdir")
def fresh(ctx: Ctx) -> None:
    with ctx.item() as r:
        ctx.expect_equal(f"generation of fresh {ctx.rel(r)}", ctx.profile.generation_initial,
                         ctx.generation(r), "generation.initial")


@check("gen.inblob.commit_at_close",
       "an inblob write() leaves generation unchanged until close(); close() adds exactly 1",
       "docs/abi.md §3: binary writes are buffered and committed at final close")
def commit_at_close(ctx: Ctx) -> None:
    with ctx.item() as r:
        g0 = ctx.generation(r)
        fd = ctx.tree.open(f"{r}/inblob", os.O_WRONLY)
        try:
            n = ctx.tree.write(fd, ctx.nonce(ctx.report_len()))
            g1 = ctx.generation(r)
        finally:
            ctx.tree.close(fd)
        g2 = ctx.generation(r)
        if (g1, g2) != (g0, g0 + 1):
            ctx.fail(f"generation {g0} after write() -> {n}, {g0 + 1} after close()",
                     f"generation {g1} after write(), {g2} after close()", "generation.inblob_commit")


@check("gen.inblob.open_close_noop", "opening inblob for writing and closing it without a write changes nothing",
       "docs/abi.md §3; docs/real-kernels.md claims: inblob: open + close without a write does nothing")
def open_close(ctx: Ctx) -> None:
    with ctx.item() as r:
        g0 = ctx.generation(r)
        ctx.tree.close(ctx.tree.open(f"{r}/inblob", os.O_WRONLY))
        ctx.expect_equal(f"generation of {ctx.rel(r)} after open+close of inblob", g0, ctx.generation(r),
                         "generation.inblob_commit")


@check("gen.read.unchanged", "reading generation, provider, outblob or auxblob never changes generation",
       "docs/abi.md §2: only accepted writes advance write_generation")
def reads_unchanged(ctx: Ctx) -> None:
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        g0 = ctx.generation(r)
        for name in ("outblob", "auxblob", "manifestblob", "provider", "generation", "outblob"):
            if name in ctx.facts.attributes:
                ctx.read(f"{r}/{name}")
        ctx.expect_equal(f"generation of {ctx.rel(r)} after reads", g0, ctx.generation(r),
                         "generation.initial")


def _priv_value(ctx: Ctx) -> int:
    """A privlevel the provider accepts: the profile's max (always >= any floor)."""
    return ctx.profile.limits_privlevel_max


@check("gen.privlevel.accepted_bumps", "an accepted privlevel write adds exactly 1 to generation",
       "docs/abi.md §1a privlevel: +1 on success", needs=("privlevel",))
def priv_bumps(ctx: Ctx) -> None:
    with ctx.item() as r:
        g0 = ctx.generation(r)
        v = _priv_value(ctx)
        res = ctx.write(f"{r}/privlevel", b"%d" % v)
        ctx.expect_equal(f"write({ctx.rel(r)}/privlevel, {v!r})", 1, res, "privlevel")
        ctx.expect_equal(f"generation after write({ctx.rel(r)}/privlevel, {v})", g0 + 1, ctx.generation(r),
                         "generation.text_commit")


@check("gen.privlevel.rejected_unchanged", "a rejected privlevel write leaves generation unchanged",
       "docs/abi.md §2: generation advances only after the value is accepted", needs=("privlevel",))
def priv_rejected(ctx: Ctx) -> None:
    with ctx.item() as r:
        g0 = ctx.generation(r)
        for text in (b"%d" % (ctx.profile.limits_privlevel_max + 1), b"junk"):
            res = ctx.write(f"{r}/privlevel", text)
            ctx.expect_errno("privlevel_out_of_range" if text[0:1].isdigit() else "privlevel_invalid",
                             f"write({ctx.rel(r)}/privlevel, {text!r})", res)
        ctx.expect_equal("generation after rejected privlevel writes", g0, ctx.generation(r),
                         "generation.text_commit")


@check("gen.text.one_store_per_write",
       "each write() on a text attribute is one store: several writes on one fd add one each",
       "docs/abi.md §3: configfs_write_iter calls ->store for every write()", needs=("privlevel",))
def per_write(ctx: Ctx) -> None:
    hi = ctx.profile.limits_privlevel_max
    with ctx.item() as r:
        g0 = ctx.generation(r)
        fd = ctx.tree.open(f"{r}/privlevel", os.O_WRONLY)
        try:
            results = [ctx.attempt(ctx.tree.write, fd, t) for t in (b"%d" % hi, b"%d" % hi, b"9", b"%d" % hi)]
        finally:
            ctx.tree.close(fd)
        if results[:2] + results[3:] != [1, 1, 1] or results[2] not in ctx.profile.errno("privlevel_out_of_range"):
            ctx.fail("write() results [1, 1, EINVAL, 1]", f"write() results {results}", "generation.text_commit")
        ctx.expect_equal("generation after 3 accepted writes on one fd", g0 + 3, ctx.generation(r),
                         "generation.text_commit")


@check("gen.text.split_at_store_max",
       "a text write() longer than 4095 bytes stores only the first 4095 (one bump) and returns 4095",
       "docs/abi.md §3: fill_write_buffer copies SIMPLE_ATTR_SIZE - 1 bytes", needs=("privlevel",))
def split(ctx: Ctx) -> None:
    cap = ctx.profile.limits_text_store_max
    hi = ctx.profile.limits_privlevel_max
    data = b"0" * (cap - 1) + b"%d" % hi + b"0" * 905  # first `cap` bytes: octal `hi`
    with ctx.item() as r:
        g0 = ctx.generation(r)
        res = ctx.write(f"{r}/privlevel", data)
        ctx.expect_equal(f"write({ctx.rel(r)}/privlevel, {len(data)} bytes)", cap, res, "limits.text_store_max")
        ctx.expect_equal("generation after one oversize text write", g0 + 1, ctx.generation(r),
                         "limits.text_store_max")


@check("gen.wrap_guard.ebusy",
       "when one more write would wrap write_generation onto read_generation, the write is refused "
       "(EBUSY from text stores; an inblob commit is dropped silently)",
       "docs/abi.md §2 try_advance_write_generation; §3 the inblob callback's result is ignored")
def wrap(ctx: Ctx) -> None:
    bits = ctx.facts.hints.get("generation_bits", 64)
    if bits > 12:
        from ..outcome import Unsupported
        raise Unsupported(f"unsupported: the generation counter has {bits} bits; wrapping it takes 2^{bits} writes")
    full = (1 << bits) - 1
    visible = ctx.profile.visible_attributes(ctx.facts.groups_present(ctx.profile))
    with ctx.item() as r:
        if "privlevel" in visible:
            hi = b"%d" % ctx.profile.limits_privlevel_max
            fd = ctx.tree.open(f"{r}/privlevel", os.O_WRONLY)
            try:
                results = [ctx.attempt(ctx.tree.write, fd, hi) for _ in range(full)]
                last = ctx.attempt(ctx.tree.write, fd, hi)
            finally:
                ctx.tree.close(fd)
            del ctx.tree.log[:-3]  # thousands of identical writes add nothing to the reproducer
            if any(x != 1 for x in results):
                ctx.fail(f"{full} writes accepted", f"results {sorted(set(map(str, results)))}",
                         "errors.generation_wrapped")
            ctx.expect_errno("generation_wrapped", f"write #{full + 1} to {ctx.rel(r)}/privlevel without a read", last)
            return
        for _ in range(full + 1):
            ctx.write(f"{r}/inblob", b"w")
        del ctx.tree.log[:-4]
        ctx.expect_equal(f"generation after {full + 1} inblob commits with no read (the last one refused)",
                         full, ctx.generation(r), "errors.generation_wrapped")
