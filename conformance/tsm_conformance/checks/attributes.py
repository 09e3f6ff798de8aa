"""attr.* and access.*: which attributes an item shows, their modes, and the access errors
(docs/abi.md §1a-§1c; configfs __configfs_open_file)."""

from __future__ import annotations

import os

from .base import Ctx, check


@check("attr.set.matches_profile",
       "a fresh item shows exactly the attributes the profile makes visible (groups all-or-none)",
       "docs/abi.md §1b visibility per provider and era")
def attr_set(ctx: Ctx) -> None:
    with ctx.item() as r:
        got = set(ctx.tree.listdir(r))
        want = ctx.profile.visible_attributes(ctx.facts.groups_present(ctx.profile))
        if got != want:
            extra, missing = sorted(got - want), sorted(want - got)
            ctx.fail(f"listdir({ctx.rel(r)}) = {sorted(want)}",
                     f"listdir({ctx.rel(r)}) = {sorted(got)} (unexpected: {extra}, missing: {missing})",
                     "attributes")


@check("attr.modes.match_profile",
       "every attribute has the profile's mode (0444 read-only, 0200 write-only) and file type",
       "docs/abi.md §1a: CONFIGFS_ATTR_RO/_WO modes")
def modes(ctx: Ctx) -> None:
    with ctx.item() as r:
        for name in sorted(set(ctx.tree.listdir(r)) & set(ctx.profile.attributes)):
            a = ctx.profile.attributes[name]
            st = ctx.tree.stat(f"{r}/{name}")
            if st.is_dir or st.perm != a.mode:
                ctx.fail(f"stat({ctx.rel(r)}/{name}) -> regular file {a.mode:04o}",
                         f"stat({ctx.rel(r)}/{name}) -> mode {st.mode:06o}", f"attributes.{name}.mode")


def _visible(ctx: Ctx, r: str) -> list[str]:
    return sorted(set(ctx.tree.listdir(r)) & set(ctx.profile.attributes))


def _open_errno(ctx: Ctx, path: str, flags: int) -> str:
    res = ctx.attempt(ctx.tree.open, path, flags)
    if isinstance(res, int):
        ctx.tree.close(res)
        return "ok"
    return str(res)


@check("access.rdwr.eacces", "opening any attribute O_RDWR fails with EACCES, even for root",
       "docs/abi.md §1c; configfs refuses the direction an attribute lacks")
def rdwr(ctx: Ctx) -> None:
    with ctx.item() as r:
        for name in _visible(ctx, r):
            ctx.expect_errno("open_wrong_direction", f"open({ctx.rel(r)}/{name}, O_RDWR)",
                             _open_errno(ctx, f"{r}/{name}", os.O_RDWR))


def _wrong_direction(ctx: Ctx, writable: bool, flags: int, flag_name: str) -> None:
    """Open every attribute of one direction the other way round: EACCES each time."""
    with ctx.item() as r:
        for name in _visible(ctx, r):
            if ctx.profile.attributes[name].writable == writable:
                ctx.expect_errno("open_wrong_direction", f"open({ctx.rel(r)}/{name}, {flag_name})",
                                 _open_errno(ctx, f"{r}/{name}", flags))


@check("access.read_write_only.eacces", "opening a write-only attribute for reading fails with EACCES",
       "docs/abi.md §1c; docs/real-kernels.md 6.12 prototype: reading inblob or privlevel gives EACCES")
def read_wo(ctx: Ctx) -> None:
    _wrong_direction(ctx, True, os.O_RDONLY, "O_RDONLY")


@check("access.write_read_only.eacces", "opening a read-only attribute for writing fails with EACCES",
       "docs/abi.md §1c; docs/real-kernels.md 6.12 prototype: opening provider, generation, outblob for writing "
       "gives EACCES")
def write_ro(ctx: Ctx) -> None:
    _wrong_direction(ctx, False, os.O_WRONLY, "O_WRONLY")


@check("access.lseek.binary_espipe", "lseek on a binary attribute fails with ESPIPE",
       "docs/abi.md §3: configfs_bin_file_operations has .llseek = NULL")
def lseek_bin(ctx: Ctx) -> None:
    ctx.need_observable("binary-lseek")
    with ctx.item() as r:
        for name, flags in (("inblob", os.O_WRONLY), ("outblob", os.O_RDONLY)):
            fd = ctx.tree.open(f"{r}/{name}", flags)
            try:
                res = ctx.attempt(ctx.tree.lseek, fd, 0, os.SEEK_SET)
            finally:
                ctx.tree.close(fd)
            ctx.expect_errno("lseek_binary", f"lseek({ctx.rel(r)}/{name}, 0, SEEK_SET)",
                             "ok" if isinstance(res, int) else res)
