"""concurrency.*: threads against one tree (docs/abi.md §2 locking and the generation protocol, §4).

Worker threads use the unrecorded tree (their operations interleave; the log keeps a summary) and
every wait has a deadline, so a deadlock fails the check as "hung" instead of stopping the run.
"""

from __future__ import annotations

import os
import threading
import time

from ..target.base import Tree
from .base import BLOCKED_ITEMS, Ctx, check, read_unrecorded

DEADLINE = 30.0  # seconds any concurrent check may take before it counts as hung
PAUSES = (0.0001, 0.002, 0.0002, 0.0005, 0.0, 0.001)  # the protocol writer's gaps between commits


def _write(tree: Tree, path: str, data: bytes) -> None:
    fd = tree.open(path, os.O_WRONLY)
    try:
        tree.write(fd, data)
    finally:
        tree.close(fd)


def _carries(ctx: Ctx, blob: bytes, nonce: bytes) -> bool:
    f = ctx.profile.report_nonce
    assert f is not None
    want = nonce.ljust(f.length, b"\0")
    return want in blob if f.offset is None else blob[f.offset:f.offset + f.length] == want


def _start(workers: list[threading.Thread]) -> None:
    for w in workers:
        w.daemon = True
        w.start()


def _run(ctx: Ctx, workers: list[threading.Thread], what: str) -> None:
    _start(workers)
    _join(ctx, workers, what)


def _join(ctx: Ctx, workers: list[threading.Thread], what: str) -> None:
    """Wait for every worker until the common deadline; a straggler fails the check as hung."""
    end = time.monotonic() + DEADLINE
    # how the watchdog names this wait if it outlives --op-timeout: it reads the frame's local
    # (deadline.py), so the name is used though nothing here reads it
    hang_label = f"join({what})"  # noqa: F841
    try:
        for w in workers:
            w.join(max(0.0, end - time.monotonic()))
    except KeyboardInterrupt:  # the workers stop on their own (stop events, short reports): remove as usual
        raise
    except BaseException:  # the watchdog cut the join short: do not rmdir what a worker may be blocked in
        if any(w.is_alive() for w in workers):
            ctx.abandon_items()
        raise
    if any(w.is_alive() for w in workers):
        ctx.abandon_items()
        ctx.fail(f"{what} finishes within {DEADLINE:.0f} s", "hung: threads still blocked at the deadline",
                 "generation")


@check("concurrency.items.independent_reports",
       "threads working on separate items each get reports bound to their own nonce",
       "docs/abi.md §4: items share only the provider and the global lock")
def independent(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    raw, n = ctx.tree.t, ctx.report_len()
    bad: list[str] = []
    names = [ctx.new_name() for _ in range(4)]
    for r in names:
        ctx.tree.mkdir(r)
        ctx._made.append(r)
        ctx.set_floor(r)
    # every round all threads write, then all read: the interleaving that exposes shared state
    # happens every time, not only when the scheduler happens to switch threads mid-loop
    gate = threading.Barrier(len(names))

    def worker(k: int, r: str) -> None:
        for i in range(12):
            nonce = ctx.nonce(n, salt=k * 1000 + i)
            try:
                _write(raw, f"{r}/inblob", nonce)
            except OSError as e:
                bad.append(f"thread {k}: write -> {e.errno}")
                gate.abort()
                return
            try:
                gate.wait(DEADLINE)
            except threading.BrokenBarrierError:
                return
            blob = read_unrecorded(raw, f"{r}/outblob", retry_busy=True)
            if isinstance(blob, str) or not _carries(ctx, blob, nonce):
                got = blob if isinstance(blob, str) else "a report without its nonce"
                bad.append(f"thread {k} iteration {i}: {got}")
    _run(ctx, [threading.Thread(target=worker, args=(k, r)) for k, r in enumerate(names)], "4 threads x 12 reports")
    ctx.note("4 threads, one item each, 12 x (write a new nonce, read outblob)")
    if bad:
        ctx.fail("every report carries its own item's latest nonce", f"{len(bad)} did not, e.g. {bad[0]}",
                 "report.nonce")


@check("concurrency.item.generation_protocol",
       "a reader that sees the same generation before and after reading outblob gets the report of the "
       "inblob committed at that generation, while another thread keeps writing",
       "docs/abi.md §2 and §7.6: the documented way to detect interfering writers")
def protocol(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    if ctx.facts.hints.get("generation_bits", 64) < 32:
        from ..outcome import Unsupported
        raise Unsupported("unsupported: a narrow generation counter wraps within the run (generations repeat)")
    raw, n = ctx.tree.t, ctx.report_len()
    committed: dict[int, bytes] = {}
    seen: list[tuple[int, bytes]] = []
    stop = threading.Event()
    with ctx.report_item() as r:
        def gen() -> int | None:
            g = read_unrecorded(raw, f"{r}/generation")
            return int(g) if isinstance(g, bytes) and g.strip().isdigit() else None

        def writer() -> None:
            i = 0
            while not stop.is_set():
                nonce = ctx.nonce(n, salt=i)
                try:
                    _write(raw, f"{r}/inblob", nonce)
                except OSError:  # the item went away (the run was interrupted): stop writing
                    return
                g = gen()  # the only writer: this is the generation its close() produced
                if g is not None:
                    committed[g] = nonce
                i += 1
                # short gaps land commits inside readers' regenerations, long ones let readers
                # see a generation long enough to bracket it
                time.sleep(PAUSES[i % len(PAUSES)])

        def reader() -> None:
            while not stop.is_set():
                g1 = gen()
                blob = read_unrecorded(raw, f"{r}/outblob")
                g2 = gen()
                if g1 is not None and g1 == g2 and isinstance(blob, bytes):
                    seen.append((g1, blob))
        _write(raw, f"{r}/inblob", ctx.nonce(n, salt=-1))
        committed[gen() or 0] = ctx.nonce(n, salt=-1)
        workers = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
        timer = threading.Timer(1.0, stop.set)
        timer.start()
        try:
            _run(ctx, workers, "1 writer and 3 readers for 1 s")
        finally:  # also on Ctrl-C/SIGTERM: the workers stop before the item is removed
            stop.set()
            timer.cancel()
    wrong = [(g, b) for g, b in seen if g in committed and not _carries(ctx, b, committed[g])]
    ctx.note(f"1 writer, 3 bracketing readers for 1 s: {len(committed)} commits, "
             f"{len(seen)} reads with an unchanged generation")
    if wrong:
        ctx.fail("bracketed reads carry the nonce committed at their generation",
                 f"{len(wrong)} of {len(seen)} did not (first at generation {wrong[0][0]})", "report.nonce")


@check("concurrency.mkdir.one_winner", "concurrent mkdir of one name: exactly one succeeds, the rest get EEXIST",
       "docs/abi.md §1c mkdir EEXIST (VFS); configfs creates items under the parent's lock")
def one_winner(ctx: Ctx) -> None:
    from .. import errnos
    raw, name = ctx.tree.t, ctx.new_name()
    results: list[str] = []
    gate = threading.Barrier(8)

    def worker() -> None:
        try:
            gate.wait(DEADLINE)
        except threading.BrokenBarrierError:  # not all 8 started (an interrupt): nothing to race
            return
        try:
            raw.mkdir(name)
            results.append("ok")
        except OSError as e:
            results.append(errnos.name(e.errno))
    ctx._made.append(name)  # before the race: abandon_items must know it if a mkdir hangs
    try:
        _run(ctx, [threading.Thread(target=worker) for _ in range(8)], "8 concurrent mkdirs")
    finally:
        if name not in BLOCKED_ITEMS:
            ctx.remove(name)
    ctx.note(f"8 threads: mkdir({ctx.rel(name)}) at once -> {sorted(results)}")
    if len(results) != 8:
        from ..outcome import TsmError
        raise TsmError(f"only {len(results)} of 8 threads reached their mkdir within {DEADLINE:.0f} s")
    if results.count("ok") != 1 or any(x not in ("ok",) + ctx.profile.errno("mkdir_duplicate") for x in results):
        ctx.fail("1 x ok and 7 x EEXIST", f"{sorted(results)}", "errors.mkdir_duplicate")


@check("concurrency.rmdir.during_reads",
       "rmdir while other threads read the item: every read returns a report or ENOENT, nothing hangs, "
       "and the name can then be made again as a fresh item",
       "docs/abi.md §4: rmdir waits for in-flight callbacks (frag_sem), then fds get ENOENT (frag_dead)")
def rmdir_during_reads(ctx: Ctx) -> None:
    ctx.need_nonce_binding()
    raw, r = ctx.tree.t, ctx.new_name()
    ctx.tree.mkdir(r)
    ctx._made.append(r)
    ctx.set_floor(r)
    ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
    outcomes: list[str] = []
    stop, removed = threading.Event(), threading.Event()
    # reads done per reader before the rmdir, and begun after it: the check waits for both (a
    # guessed sleep missed the reads after rmdir on a loaded machine)
    before, after = [0, 0, 0], [0, 0, 0]

    def reader(k: int) -> None:
        while not stop.is_set():
            late = removed.is_set()
            res = read_unrecorded(raw, f"{r}/outblob", retry_busy=True)
            outcomes.append(res if isinstance(res, str) else "report")
            if late:
                after[k] += 1
            else:
                before[k] += 1

    def each_read(counts: list[int]) -> None:
        end = time.monotonic() + DEADLINE
        while min(counts) == 0 and time.monotonic() < end and any(w.is_alive() for w in workers):
            time.sleep(0.001)
    workers = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
    _start(workers)
    try:
        each_read(before)  # every reader is reading: the rmdir races them
        ctx.tree.rmdir(r)
        removed.set()
        each_read(after)  # every reader has read the removed item at least once
    finally:
        stop.set()
    _join(ctx, workers, "3 readers racing rmdir")
    allowed = {"report", *ctx.profile.errno("access_after_rmdir")}
    odd = sorted({o for o in outcomes if o not in allowed})
    ctx.note(f"3 threads reading outblob while rmdir({ctx.rel(r)}): "
             f"{sorted(set(outcomes))}")
    if odd:
        ctx.fail(f"each read -> a report or {' or '.join(ctx.profile.errno('access_after_rmdir'))}",
                 f"also {odd}", "errors.access_after_rmdir")
    with ctx.item(r):
        ctx.expect_equal(f"generation of {ctx.rel(r)} made again", ctx.profile.generation_initial,
                         ctx.generation(r), "generation.initial")
