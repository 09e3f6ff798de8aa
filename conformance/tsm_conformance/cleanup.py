"""Leaving no trace: the end-of-run sweep and ``tsm-conformance clean``.

Every check removes its items in a ``finally``; this module is the last line of defence.  ``sweep``
runs at the end of every run (pass, fail, Ctrl-C, SIGTERM: the CLI turns SIGTERM into the same
KeyboardInterrupt unwinding): it gives the checks' worker threads a moment to finish (a worker may
mkdir after the main thread's cleanup), then removes every item with the run's prefix, twice.
``clean`` removes what a SIGKILLed run left: only names with our prefixes (``names.PREFIXES``),
only in a directory that looks like a configfs-tsm report group (on another filesystem only with
--any-filesystem), never an item whose owner is still running (unless forced).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from . import names
from .procs import pid_alive
from .target.base import Tree

#: attributes every report item has, in every kernel version (docs/abi.md §1a)
CORE_ATTRS = frozenset({"inblob", "outblob", "generation", "provider"})


def wait_for_workers(grace: float) -> list[str]:
    """Join the threads checks started (daemon workers), up to ``grace`` seconds in all; the names
    of those still running (blocked in a call that never returned)."""
    end = time.monotonic() + grace
    me = threading.current_thread()
    left = []
    for t in threading.enumerate():
        if t is me or t is threading.main_thread() or t.name.startswith("tsm-watchdog") or not t.daemon:
            continue
        t.join(max(0.0, end - time.monotonic()))
        if t.is_alive():
            left.append(t.name)
    return left


#: seconds one sweep operation may take: a hung provider (holding the lock an rmdir needs) must
#: not keep the run from ending
SWEEP_DEADLINE = 10.0
_HUNG: set[int] = set()  # id() of trees whose sweep hung, or outwaited stuck workers, in this process


def sweep(tree: Tree, prefix: str, grace: float = 5.0, removed: list[str] | None = None,
          deadline: float = SWEEP_DEADLINE) -> list[str]:
    """Remove every item named ``prefix*``; returns the names still there afterwards and adds the
    names it removed to ``removed``.  Each operation is bounded by ``deadline`` (the watchdog, main
    thread only): past it the sweep stops and what it had not removed counts as left."""
    from .checks.deadline import WATCHDOG, OperationHung
    from .checks.base import BLOCKED_ITEMS
    if id(tree) in _HUNG:  # an earlier sweep of this tree hung: do not wait that long again
        grace, deadline = min(grace, 0.5), min(deadline, 1.0)
    if BLOCKED_ITEMS:  # a check already gave its workers up as blocked: waiting for them is futile
        grace = min(grace, 0.5)
    if not wait_for_workers(grace):
        BLOCKED_ITEMS.clear()  # no worker is left that could be blocked in them
    else:
        _HUNG.add(id(tree))  # workers outlived the grace: the next sweep need not wait for them as long
    left: list[str] = []
    try:
        with WATCHDOG.guard(deadline):
            for _ in range(2):  # a worker that outlived the grace may mkdir between two passes
                try:
                    left = [n for n in tree.listdir("") if n.startswith(prefix)]
                except OSError:
                    return []
                for n in list(left):
                    if n in BLOCKED_ITEMS:  # a live worker may be blocked in it (Ctx.abandon_items)
                        continue
                    try:
                        tree.rmdir(n)
                        left.remove(n)
                        if removed is not None:
                            removed.append(n)
                    except OSError:
                        pass
                if not left:
                    break
    except OperationHung:
        _HUNG.add(id(tree))
    if WATCHDOG.take() is not None:
        _HUNG.add(id(tree))
    return left


class NotAReportGroup(Exception):
    """``clean`` refuses the directory (one line)."""


@dataclass
class CleanResult:
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # name, why
    failed: list[tuple[str, str]] = field(default_factory=list)  # name, errno text


def _pid_alive(pid: int) -> bool:
    """Whether the process an item name carries still runs (this process's own items: no)."""
    return pid != os.getpid() and pid_alive(pid)


def check_report_group(root: str, any_filesystem: bool = False) -> None:
    """NotAReportGroup unless ``root`` is a configfs (or FUSE-mounted emulator) report group, or with
    ``any_filesystem`` (--any-filesystem) a .../tsm/report on another filesystem."""
    from .target.live import report_group_problem
    if not os.path.isdir(root):
        raise NotAReportGroup(f"{root} is not a directory")
    problem = report_group_problem(root, any_filesystem)
    if problem:
        raise NotAReportGroup(problem)


def clean(root: str, force: bool = False, any_filesystem: bool = False) -> CleanResult:
    """Remove our leftover items under ``root``.  NotAReportGroup when it does not look right."""
    check_report_group(root, any_filesystem)
    out = CleanResult()
    for n in sorted(os.listdir(root)):
        if not names.ours(n):
            continue
        path = os.path.join(root, n)
        try:
            attrs = set(os.listdir(path))
        except OSError as e:
            out.failed.append((n, os.strerror(e.errno or 0)))
            continue
        if not CORE_ATTRS <= attrs:
            out.skipped.append((n, "not a report item (no inblob/outblob/generation/provider)"))
            continue
        pid = names.owner_pid(n)
        if pid is not None and not force and _pid_alive(pid):
            out.skipped.append((n, f"process {pid} is still running (--force to remove anyway)"))
            continue
        try:
            os.rmdir(path)
            out.removed.append(n)
        except OSError as e:
            out.failed.append((n, os.strerror(e.errno or 0)))
    return out
