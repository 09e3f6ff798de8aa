"""cleanup.*: the suite leaves nothing behind (runs last)."""

from __future__ import annotations

from .base import Ctx, check


@check("cleanup.items.none_left", "every report item the suite created has been removed",
       "docs/abi.md §4: rmdir removes an item; the suite must not leave traces", order=1)
def no_leftovers(ctx: Ctx) -> None:
    prefix = ctx.prefix
    left = sorted(n for n in ctx.tree.listdir("") if n.startswith(prefix))
    if left:
        for n in left:
            ctx.attempt(ctx.tree.rmdir, n)
        ctx.fail("listdir(.) holds no item of this run", f"{len(left)} remain: {left[:5]}", "errors.access_after_rmdir")
