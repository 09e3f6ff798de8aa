"""discovery.*: the tree names the provider the profile describes (docs/abi.md §1a, §7.5)."""

from __future__ import annotations

from .base import Ctx, check


@check("discovery.provider.matches_profile",
       "the provider attribute reads the profile's provider name followed by a newline",
       "docs/abi.md §1a provider: sysfs_emit(\"%s\\n\", ops->name)")
def provider_name(ctx: Ctx) -> None:
    with ctx.item() as r:
        got = ctx.read(f"{r}/provider")
        want = f"{ctx.profile.provider}\n".encode()
        if got != want:
            ctx.fail(f"read({ctx.rel(r)}/provider) -> {want!r}", f"read({ctx.rel(r)}/provider) -> {got!r}",
                     "provider")


@check("discovery.privlevel_floor.matches_profile",
       "privlevel_floor reads \"%u\\n\" equal to the profile's floor, or within its range",
       "docs/abi.md §1a privlevel_floor; §5.1 vmpck_id", needs=("privlevel_floor",))
def floor_value(ctx: Ctx) -> None:
    with ctx.item() as r:
        got = ctx.read(f"{r}/privlevel_floor")
        want = ctx.profile.privlevel_floor
        lo, hi = ctx.profile.privlevel_floor_min, ctx.profile.limits_privlevel_max
        ok = isinstance(got, bytes) and got.endswith(b"\n") and got[:-1].isdigit() and \
            lo <= int(got) <= hi and (want is None or int(got) == want)
        if not ok:
            exp = f'"{want}\\n"' if want is not None else f'"<{lo}..{hi}>\\n"'
            ctx.fail(f"read({ctx.rel(r)}/privlevel_floor) -> {exp}",
                     f"read({ctx.rel(r)}/privlevel_floor) -> {got!r}", "privlevel.floor")
