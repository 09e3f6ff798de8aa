"""lifecycle.*: mkdir / rmdir of report items (docs/abi.md §1c, §4; docs/real-kernels.md claims: rmdir,
names and the lock)."""

from __future__ import annotations

import os

from .base import Ctx, check


@check("lifecycle.mkdir.creates_item",
       "mkdir creates a report item that is listed and is a directory with the profile's mode",
       "docs/abi.md §1a: item directories are always 0755")
def creates_item(ctx: Ctx) -> None:
    with ctx.item() as r:
        if r not in ctx.tree.listdir(""):
            ctx.fail(f"listdir(.) contains {ctx.rel(r)}", "it does not", "item_mode")
        st = ctx.tree.stat(r)
        want = ctx.profile.item_mode
        if not st.is_dir or st.perm != want:
            ctx.fail(f"stat({ctx.rel(r)}) -> directory {want:04o}",
                     f"stat({ctx.rel(r)}) -> mode {st.mode:06o}", "item_mode")


@check("lifecycle.mkdir.duplicate_eexist", "mkdir of an existing item name fails with EEXIST",
       "docs/abi.md §1c mkdir: name exists -> EEXIST (VFS)")
def duplicate(ctx: Ctx) -> None:
    with ctx.item() as r:
        res = ctx.attempt(ctx.tree.mkdir, r)
        ctx.expect_errno("mkdir_duplicate", f"mkdir({ctx.rel(r)}) again", "ok" if res is None else res)


@check("lifecycle.mkdir.inside_item_eperm", "mkdir inside a report item fails with EPERM",
       "docs/abi.md §1c: report items are config items, not groups (configfs_mkdir)")
def nested(ctx: Ctx) -> None:
    with ctx.item() as r:
        res = ctx.attempt(ctx.tree.mkdir, f"{r}/sub")
        if res is None:
            ctx.attempt(ctx.tree.rmdir, f"{r}/sub")
        ctx.expect_errno("mkdir_inside_item", f"mkdir({ctx.rel(r)}/sub)", "ok" if res is None else res)


@check("lifecycle.mkdir.name_max",
       "item names of NAME_MAX bytes are accepted and one byte more fails with ENAMETOOLONG",
       "docs/abi.md §4 naming: VFS rules only; docs/real-kernels.md claims: 255 ok, 256 ENAMETOOLONG")
def name_max(ctx: Ctx) -> None:
    limit = ctx.profile.limits_name_max
    longest = ctx.new_name(pad_to=limit)
    res = ctx.attempt(ctx.tree.mkdir, longest)
    if res is not None:
        ctx.fail(f"mkdir(<{limit}-byte name>) -> ok", f"mkdir(<{limit}-byte name>) -> {res}",
                 "limits.name_max")
    ctx.remove(longest)
    too_long = ctx.new_name(pad_to=limit + 1)
    res = ctx.attempt(ctx.tree.mkdir, too_long)
    if res is None:
        ctx.remove(too_long)
    ctx.expect_errno("mkdir_name_too_long", f"mkdir(<{limit + 1}-byte name>)", "ok" if res is None else res)


@check("lifecycle.rmdir.removes_item",
       "rmdir removes the item: it is no longer listed and its attributes are gone (ENOENT)",
       "docs/abi.md §4; docs/real-kernels.md claims: open() after rmdir -> ENOENT")
def removes(ctx: Ctx) -> None:
    r = ctx.new_name()
    ctx.tree.mkdir(r)
    ctx.tree.rmdir(r)
    if r in ctx.tree.listdir(""):
        ctx.remove(r)
        ctx.fail(f"listdir(.) after rmdir({ctx.rel(r)}) lacks {ctx.rel(r)}", "it is still listed",
                 "errors.access_after_rmdir")
    res = ctx.attempt(ctx.tree.open, f"{r}/generation", os.O_RDONLY)
    if isinstance(res, int):
        ctx.tree.close(res)
        res = "ok"
    ctx.expect_errno("access_after_rmdir", f"open({ctx.rel(r)}/generation) after rmdir", res)


@check("lifecycle.rmdir.name_reusable", "after rmdir the same name can be created again",
       "docs/abi.md §4: each mkdir creates an independent item")
def reusable(ctx: Ctx) -> None:
    r = ctx.new_name()
    with ctx.item(r):
        pass
    res = ctx.attempt(ctx.tree.mkdir, r)
    if res is not None:
        ctx.fail(f"mkdir({ctx.rel(r)}) after rmdir -> ok", f"mkdir({ctx.rel(r)}) after rmdir -> {res}",
                 "errors.mkdir_duplicate")
    ctx.remove(r)


@check("lifecycle.rmdir.recreated_item_is_fresh",
       "an item made again after rmdir starts fresh: initial generation, no inblob",
       "docs/abi.md §2: state is zeroed at mkdir (kzalloc in make_item)")
def fresh_after(ctx: Ctx) -> None:
    r = ctx.new_name()
    with ctx.item(r):
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
    with ctx.item(r):
        g = ctx.generation(r)
        ctx.expect_equal(f"generation of re-made {ctx.rel(r)}", ctx.profile.generation_initial, g,
                         "generation.initial")
        ctx.expect_errno("read_before_inblob", f"read({ctx.rel(r)}/outblob)", ctx.read(f"{r}/outblob"))


@check("lifecycle.rmdir.open_fd_enoent",
       "an fd opened before rmdir and not yet read fails with ENOENT afterwards",
       "docs/abi.md §3: after rmdir, open fds get ENOENT from the callbacks (frag_dead)")
def fd_after_rmdir(ctx: Ctx) -> None:
    r = ctx.new_name()
    ctx.tree.mkdir(r)
    fd = ctx.tree.open(f"{r}/generation", os.O_RDONLY)
    try:
        ctx.tree.rmdir(r)
        res = ctx.attempt(ctx.tree.read, fd, 64)
    finally:
        ctx.tree.close(fd)
        ctx.remove(r)
    ctx.expect_errno("access_after_rmdir", f"read(fd of {ctx.rel(r)}/generation) after rmdir",
                     "ok" if isinstance(res, bytes) else res)


@check("lifecycle.items.independent",
       "items are independent: writing one item changes neither the generation nor the report of another",
       "docs/abi.md §4: nothing is shared between items but the provider and the lock")
def independent(ctx: Ctx) -> None:
    with ctx.item() as a, ctx.item() as b:
        before = ctx.generation(b)
        ctx.commit_inblob(a, ctx.nonce(ctx.report_len()))
        ctx.expect_equal(f"generation of {ctx.rel(b)} after writing {ctx.rel(a)}", before, ctx.generation(b),
                         "generation.initial")
        ctx.expect_errno("read_before_inblob", f"read({ctx.rel(b)}/outblob)", ctx.read(f"{b}/outblob"))
