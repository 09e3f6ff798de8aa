"""provider.*: what only a controllable provider can show (docs/abi.md §2, §4, §8; docs/real-kernels.md):
unregister with items present, the global lock, report_new errors, the blob size limit, and read
integrity under a concurrent writer (the size-then-fill race).

Each check changes the provider (tsm_test module parameters, rmmod/insmod) and restores it.
"""

from __future__ import annotations

import os
import struct
import threading
import time

from .. import errnos
from .base import Ctx, check, read_unrecorded


@check("provider.unregister.items_survive",
       "after the provider unregisters with items present: cached reports are still served, uncached "
       "reads and provider reads fail (ENXIO, or ENOTTY before 6.16), mkdir fails ENXIO, and a new "
       "provider cannot register until the items are gone (EBUSY, 6.16+)",
       "docs/abi.md §4, §8.1, §8.7; docs/real-kernels.md claims: Provider errors, unregister and re-register")
def unregister(ctx: Ctx) -> None:
    c = ctx.control()
    n = ctx.report_len()
    a, b, z = ctx.new_name(), ctx.new_name(), ctx.new_name()
    for r in (a, b, z):
        ctx.tree.mkdir(r)
        ctx._made.append(r)
        ctx.set_floor(r)
    try:
        ctx.commit_inblob(a, ctx.nonce(n, 1))
        cached = ctx.read_ok(f"{a}/outblob", "report")
        ctx.commit_inblob(b, ctx.nonce(n, 2))
        ctx.read_ok(f"{b}/outblob", "report")
        ctx.commit_inblob(b, ctx.nonce(n, 3))  # b's report is now stale
        c.unload()
        ctx.expect_equal(f"read({ctx.rel(a)}/outblob) after rmmod (cached)", cached, ctx.read(f"{a}/outblob"),
                         "errors.uncached_read_provider_gone")
        ctx.expect_errno("uncached_read_provider_gone", f"read({ctx.rel(b)}/outblob) after rmmod (stale)",
                         ctx.read(f"{b}/outblob"))
        ctx.expect_errno("read_before_inblob", f"read({ctx.rel(z)}/outblob) after rmmod (never written)",
                         ctx.read(f"{z}/outblob"))
        extra = ctx.new_name()
        res = ctx.attempt(ctx.tree.mkdir, extra)
        if res is None:
            ctx.remove(extra)
        ctx.expect_errno("mkdir_no_provider", f"mkdir({ctx.rel(extra)}) with no provider", "ok" if res is None else res)
        try:
            c.load()
            fixed = False
        except OSError as e:
            fixed = True
            ctx.expect_errno("register_with_items", "insmod tsm_test with items present", errnos.name(e.errno))
        if fixed:  # 6.16+ (fba4ceaa242d): ENXIO instead of the old NULL dereferences
            for attr in ("provider", "privlevel_floor"):
                if attr in ctx.facts.attributes:
                    ctx.expect_errno("attr_read_provider_gone", f"read({ctx.rel(a)}/{attr}) after rmmod",
                                     ctx.read(f"{a}/{attr}"))
            if "privlevel" in ctx.facts.attributes:
                ctx.expect_errno("attr_read_provider_gone", f"write({ctx.rel(a)}/privlevel, b'3') after rmmod",
                                 ctx.write(f"{a}/privlevel", b"3"))
        # before the fix the old items would now belong to the new provider; no reads of
        # provider/privlevel_floor without one were attempted (they oops such kernels)
    finally:
        for r in (a, b, z):
            ctx.remove(r)
        c.restore()


@check("provider.report_new.errno_passthrough",
       "the errno report_new returns reaches read(); the next read after the fault clears succeeds",
       "docs/abi.md §2 slow path; docs/real-kernels.md 6.12 prototype: fail_errno=5 -> EIO")
def errno_passthrough(ctx: Ctx) -> None:
    c = ctx.control()
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        try:
            c.set_param("fail_errno", "28")
            res = ctx.read(f"{r}/outblob")
            if res != "ENOSPC":
                ctx.fail(f"read({ctx.rel(r)}/outblob) with report_new failing -ENOSPC -> ENOSPC",
                         f"read({ctx.rel(r)}/outblob) -> {res if isinstance(res, str) else f'{len(res)} bytes'}",
                         "report")
            c.set_param("fail_errno", "0")
            ctx.read_ok(f"{r}/outblob", "report")
        finally:
            c.restore()


@check("provider.lock.global",
       "while one item generates a report, operations on every other item wait (one global tsm_rwsem)",
       "docs/abi.md §2 locking, §8.8; docs/real-kernels.md claims: reading item B's generation blocked 1.1 s")
def global_lock(ctx: Ctx) -> None:
    c = ctx.control()
    delay = 0.8
    with ctx.report_item() as a, ctx.report_item() as b:
        raw = ctx.tree.t  # the reader thread must not interleave its operations into the log
        c.set_param("delay_ms", str(int(delay * 1000)))
        try:
            # A try is conclusive only when b's read began well inside a's read (on a loaded
            # machine the reader may start late): then b must end with a's report_new, not before.
            for attempt in range(3):
                ctx.commit_inblob(a, ctx.nonce(ctx.report_len(), salt=attempt))  # a new report_new each try
                span: dict[str, float] = {}

                def reader(span: dict[str, float] = span) -> None:  # this try's span, not a later one's
                    span["start"] = time.monotonic()
                    read_unrecorded(raw, f"{a}/outblob")
                    span["end"] = time.monotonic()
                th = threading.Thread(target=reader, daemon=True)
                th.start()
                while "start" not in span and th.is_alive():
                    time.sleep(0.001)
                time.sleep(0.2)
                t0 = time.monotonic()
                ctx.generation(b)
                t1 = time.monotonic()
                th.join(10)
                if "end" not in span:
                    ctx.fail(f"read({ctx.rel(a)}/outblob) returns after ~{delay} s", "still blocked after 10 s",
                             "generation")
                if t1 >= span["end"] - 0.05:
                    return  # b waited for a's report_new
                if t0 - span["start"] >= 0.15 and span["end"] - t0 >= 0.3:
                    ctx.fail(f"read({ctx.rel(b)}/generation) waits for {ctx.rel(a)}'s report_new "
                             f"(~{span['end'] - t0:.1f} s more)", f"it returned after {t1 - t0:.3f} s",
                             "generation")
            from ..outcome import Unsupported
            raise Unsupported("unsupported: this machine never let the second read start inside the "
                              "first one's report_new (3 tries)")
        finally:
            c.restore()


@check("provider.size.limit",
       "a report of exactly the blob limit reads whole; one byte more fails EFBIG on every read without "
       "a new report_new (the report is cached)",
       "docs/abi.md §1c, §8.11: TSM_REPORT_OUTBLOB_MAX 32 KiB, 16 MiB from 7.0 (9342bf3d670b)")
def size_limit(ctx: Ctx) -> None:
    c = ctx.control()
    limit = ctx.profile.outblob_max_for(ctx.facts.kernel_release)
    try:
        with ctx.report_item() as r:
            c.set_param("outblob_size", str(limit))
            ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
            blob = ctx.read_ok(f"{r}/outblob", "limits.outblob_max")
            ctx.expect_equal(f"len(read({ctx.rel(r)}/outblob)) at the limit", limit, len(blob), "limits.outblob_max")
        with ctx.report_item() as r:
            c.set_param("outblob_size", str(limit + 1))
            ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
            for i in (1, 2):
                ctx.expect_errno("blob_over_limit", f"read #{i} of a {limit + 1}-byte outblob",
                                 ctx.read(f"{r}/outblob"))
            if "auxblob" in ctx.facts.attributes:  # served from the same cached report_new call
                aux = ctx.read_ok(f"{r}/auxblob", "limits.outblob_max")
                c.set_param("outblob_size", "192")
                ctx.expect_equal("report_new calls: auxblob after two EFBIG reads comes from the first",
                                 aux, ctx.read(f"{r}/auxblob"), "limits.outblob_max")
    finally:
        c.restore()


@check("provider.read.size_then_fill_integrity",
       "each read of outblob returns exactly one whole report, even while another thread writes inblob and "
       "the report size changes between generations",
       "docs/real-kernels.md 'The size-then-fill race': configfs sizes a binary read and fills it under separate "
       "lock acquisitions")
def size_then_fill(ctx: Ctx) -> None:
    c = ctx.control()
    budget, sizes = 2.0, ("1000", "21000")
    raw = ctx.tree.t
    bad: list[tuple[int, int]] = []
    reads = 0
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        stop = threading.Event()

        def writer() -> None:
            i = 0
            while not stop.is_set():
                c.c.set_param("outblob_size", sizes[i % 2])
                i += 1
                try:
                    fd = raw.open(f"{r}/inblob", os.O_WRONLY)
                    try:
                        raw.write(fd, bytes([i & 0xFF]) * ctx.report_len())
                    finally:
                        raw.close(fd)
                except OSError:
                    pass
        th = threading.Thread(target=writer, daemon=True)
        try:
            th.start()
            end = time.monotonic() + budget
            while time.monotonic() < end and len(bad) < 20:
                blob = read_unrecorded(raw, f"{r}/outblob")
                if isinstance(blob, str) or len(blob) < 12:
                    continue
                reads += 1
                declared = struct.unpack_from("<I", blob, 8)[0]
                if declared != len(blob):
                    bad.append((len(blob), declared))
        finally:
            stop.set()
            th.join(10)
            c.restore()
    ctx.note(f"{reads} outblob reads against a writer alternating outblob_size "
             f"{sizes[0]}/{sizes[1]} for {budget:.0f} s")
    if bad:
        ctx.fail("every read's length = the length the report declares at offset 8",
                 f"{len(bad)} of {reads} reads differ, e.g. got {bad[0][0]} bytes of a {bad[0][1]}-byte report",
                 "expected_failures")
