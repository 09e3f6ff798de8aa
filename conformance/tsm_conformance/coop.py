"""Cooperative schedules: a threaded schedule's programs as greenlets on one OS thread.

On OS threads an in-process tree's programs interleave only where the GIL changes hands, and every
hand-over is a futex wake and a context switch: a threaded fuzz input cost three times its
operations run on one thread, most of it waiting (docs/fuzzing.md, "Threads").  Here the programs
are greenlets on the calling thread and switch only where a kernel task could be switched out:

* between two operations (``point``);
* before taking one of the emulator's locks (``emulator/locks.py`` calls ``point``), and where a
  lock is taken, by waiting for its holder to run on (``wait``) instead of blocking the thread;
* in the windows the emulator marks (``window``): between sizing and filling a binary read, the
  unlocked report generation of a quirk, a racing mkdir's lookup and create; there the others run
  for a drawn number of their points, and until what the window waits for happened, or until
  nobody else can go on;
* in a long kernel sleep (``sleep``: a host that does not answer), which lets the others run and
  ends the schedule as hung when it would outlast the deadline.

Which program runs after each switch is drawn from a seed: a seed is one interleaving, every
time.  All programs waiting on locks their holders will never release is a deadlock: the schedule
ends there and their remaining operations count as hung, as a hung thread's would; their
greenlets are kept (``_ABANDONED``), never resumed, as a hung OS thread is left behind.

Nothing here runs without ``Scheduler.run``: ``ACTIVE`` is None and every hook returns at once,
so the FUSE frontend's threads and the checks' threads see plain locks.
"""

from __future__ import annotations

import random
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

ACTIVE: Scheduler | None = None  # the scheduler running on some thread (hooks check its thread)
SWITCH = 0.25  # the chance of a switch at a point: between operations and before a lock
WINDOW_SWITCHES = 64  # at most this many switches in one window
WINDOW_POINTS = 16  # a window lasts up to this many of the others' points (a vmalloc, a firmware call)
_ABANDONED: list[Any] = []  # deadlocked or hung greenlets: kept, never resumed


def current() -> Scheduler | None:
    """The scheduler of the calling thread's schedule, or None."""
    s = ACTIVE
    return s if s is not None and s.thread == threading.get_ident() else None


def point() -> None:
    """A place where the running program may be switched out."""
    s = ACTIVE
    if s is not None and s.thread == threading.get_ident():
        s.point()


class Scheduler:
    """One schedule's programs, run by ``run``; the hooks above find it through ``ACTIVE``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._random = self.rng.random
        self.thread = threading.get_ident()
        self.progress = 0  # points passed and programs finished: what a waiting program waits for
        self.tasks: list[Any] = []
        self.live: list[Any] = []  # the tasks not finished
        self.waiting: dict[Any, int] = {}  # task -> progress when it found its lock taken
        self.sleeping: dict[Any, float] = {}  # task -> monotonic time it wakes
        self.held: dict[Any, int] = {}  # a task in a window -> progress the others make before it runs on
        self.main: Any = None
        self.running: Any = None  # the program switched to last (the loop learns from it who finished)
        self.end = 0.0  # the deadline, in time.monotonic()

    def run(self, programs: list[Callable[[], None]], deadline: float) -> bool:
        """Run every program to its end, interleaved; False when the schedule ended before (a
        deadlock, or a program asleep or running past ``deadline`` seconds)."""
        global ACTIVE
        from greenlet import getcurrent, greenlet  # the [fuzz] extra's
        if ACTIVE is not None:
            raise RuntimeError("a cooperative schedule is already running")
        self.main = getcurrent()
        self.tasks = [greenlet(p) for p in programs]
        self.live = list(self.tasks)
        self.end = time.monotonic() + deadline
        ACTIVE = self
        try:
            # Programs switch to one another directly (``_switch``); this loop runs again when one
            # finishes (a greenlet returns to its parent, this one) or when none can run.
            while True:
                t = self._next(self.end)
                if t is None:
                    break
                self.running = t
                try:
                    t.switch()
                except Exception:  # as an uncaught exception in a thread: printed, its steps unfinished
                    traceback.print_exc(file=sys.stderr)
                t = self.running
                if t.dead:
                    self.progress += 1
                    self.live.remove(t)
        finally:
            ACTIVE = None
            left = [t for t in self.tasks if not t.dead]
            if left:
                _ABANDONED.extend(left)
        return not left

    def _next(self, end: float) -> Any | None:
        """The next program to run (None: all finished, deadlocked or past the deadline)."""
        waiting, sleeping, held = self.waiting, self.sleeping, self.held
        while True:
            now = time.monotonic()
            if now > end:
                return None
            if sleeping:
                for t, at in list(sleeping.items()):
                    if at <= now:
                        del sleeping[t]
                        self.progress += 1
            ready = self.live
            if waiting or sleeping or held:
                p = self.progress
                ready = [t for t in ready if t not in sleeping and waiting.get(t, -1) < p and held.get(t, -1) < p]
                if not ready and held:  # only programs in a window are left: the window closes
                    ready = [t for t in self.live if t in held and t not in sleeping and waiting.get(t, -1) < p]
            n = len(ready)
            if n:
                t = ready[int(self._random() * n)] if n > 1 else ready[0]
                if waiting:
                    waiting.pop(t, None)
                if held:
                    held.pop(t, None)
                return t
            if not sleeping:
                return None  # finished, or every program waits on another: a deadlock
            wake = min(self.sleeping.values())
            if wake > end:
                return None  # asleep past the deadline: hung
            time.sleep(wake - now)

    def _others(self, me: Any) -> bool:
        """Whether a program other than ``me`` could run now."""
        return any(t is not me and t not in self.sleeping and self.waiting.get(t, -1) < self.progress
                   for t in self.live)

    def point(self) -> None:
        self.progress += 1
        if self._random() < SWITCH:
            self._switch()

    def _switch(self) -> None:
        """Run the next program drawn, straight from the calling one (one greenlet switch, not
        two through the loop; the same draws in the same order); nothing to do when the draw is
        the caller.  None can run (a deadlock, the deadline): back to the loop, which ends the
        schedule without resuming the caller."""
        t = self._next(self.end)
        if t is None:
            self.main.switch()
        elif t is not self.running:
            self.running = t
            t.switch()

    def wait(self) -> None:
        """The caller's lock is taken: run the others; back when one of them got on."""
        from greenlet import getcurrent
        self.waiting[getcurrent()] = self.progress
        self._switch()

    def window(self, until: Callable[[], bool] | None = None) -> None:
        """A preemption window: the others run, each time for 1 to ``WINDOW_POINTS`` of their
        points (drawn), until ``until()`` holds (at most ``WINDOW_SWITCHES`` times), or once when
        there is no ``until``; at once back when nobody else can run."""
        from greenlet import getcurrent
        me = getcurrent()
        for _ in range(WINDOW_SWITCHES if until is not None else 1):
            if (until is not None and until()) or not self._others(me):
                return
            self.progress += 1
            self.held[me] = self.progress + int(self._random() * WINDOW_POINTS)
            self._switch()

    def sleep(self, seconds: float) -> None:
        """A kernel sleep of ``seconds``: the others run meanwhile."""
        from greenlet import getcurrent
        self.sleeping[getcurrent()] = time.monotonic() + seconds
        self._switch()
