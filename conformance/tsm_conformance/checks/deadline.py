"""Per-operation deadlines at no per-operation cost: a watchdog thread samples the main thread.

Why not a timer per operation: ``setitimer`` around each call costs two syscalls and two Python
calls per operation (measured ~1.5 µs, more than the Recorder itself on the emulator), and threads
cannot be cancelled at all.  Instead one daemon thread wakes every ``period`` seconds while a check
runs and looks at the main thread's innermost frame (``sys._current_frames``).  When the *same*
frame object sits at the *same* instruction for ``deadline`` seconds, one call has not returned:
the watchdog names it (the Recorder's closure frame holds the operation and its arguments) and
sends ``HUNG_SIGNAL`` to the main thread.  Its handler raises ``OperationHung`` when the hung frame
is still on the stack, so:

* a blocking syscall in an *interruptible* wait (a real kernel's TDX GetQuote wait, the emulator's
  in-process sleeps) returns EINTR, Python runs the handler, and the check fails as "hung";
* over FUSE the kernel first waits interruptibly, then sends INTERRUPT to the daemon and waits
  *killably*: the call returns only when the daemon answers.  ``tsm-conformance emulate`` answers
  (it mounts with ``intr`` and the emulator's waits poll ``fuse_interrupted``); a daemon that does
  not keeps the caller blocked until its reply;
* an *uninterruptible* wait (``msleep``, ``down_write`` without killable) cannot be cut short: the
  signal stays pending, the call returns late, and the check still fails as hung (``overrun``
  is kept and ``Session.execute`` reports it after the check).

Limits: only the main thread is watched (worker threads of concurrency checks are bounded by their
checks' joins, which the watchdog watches); a loop that calls one C function repeatedly from the
same frame (no Python frame per call) looks like one long call; resolution is ``period``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HUNG_SIGNAL = signal.SIGUSR2  # not SIGALRM: pytest-timeout and others own that one


class OperationHung(Exception):
    """One operation did not return within its deadline."""

    def __init__(self, op: str, seconds: float, deadline: float) -> None:
        super().__init__(f"{op} did not return within {deadline:g} s")
        self.op, self.seconds, self.deadline = op, seconds, deadline
        self.completed = False  # True when it returned late (an uninterruptible wait)
        self.raised = False  # True once the signal handler raised it in the hung call


def _recorder_code() -> types.CodeType | None:
    """The code of a recorded operation's call (checks/base.py ``recorded``: the Recorder's and
    the measurement group's operations)."""
    from .base import recorded
    return next((c for c in recorded.__code__.co_consts
                 if isinstance(c, types.CodeType) and c.co_name == "call"), None)


class Watchdog:
    """One per process; ``guard`` arms it around a check (main thread only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._armed: tuple[float, Callable[[str, list], str]] | None = None
        self._target: types.FrameType | None = None  # the frame of the hang being signalled
        self._current: OperationHung | None = None  # ... and its exception
        self.hung: OperationHung | None = None  # the first hang of the guarded block
        self._thread: threading.Thread | None = None
        self._code = _recorder_code()
        self._installed = False

    # ------------------------------------------------------------ arming
    @contextmanager
    def guard(self, deadline: float | None, rename: Callable[[str, list], str] = lambda op, a: op
              ) -> Iterator[None]:
        """Watch the main thread while the block runs; OperationHung may be raised inside it."""
        if not deadline or threading.current_thread() is not threading.main_thread():
            yield
            return
        self._install()
        with self._lock:
            self.hung, self._target, self._current = None, None, None
            self._armed = (deadline, rename)
        self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._armed = None
                self._target = None

    def take(self) -> OperationHung | None:
        """The hang seen during the last guarded block, if the block did not raise it."""
        h, self.hung = self.hung, None
        if h is not None and not h.raised:
            h.completed = True
            return h
        return None

    def _install(self) -> None:
        if not self._installed:
            signal.signal(HUNG_SIGNAL, self._handler)
            self._installed = True
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="tsm-watchdog", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------ the signal
    def _handler(self, signum: int, frame: types.FrameType | None) -> None:
        with self._lock:
            h, target = self._current, self._target
            if h is None or target is None or h.raised or self._armed is None:
                return
            f = frame
            while f is not None and f is not target:
                f = f.f_back
            if f is None:  # the call returned meanwhile: take() reports it after the block
                return
            h.raised = True
        raise h

    # ------------------------------------------------------------ the watching thread
    def _loop(self) -> None:
        main = threading.main_thread().ident
        assert main is not None
        last: types.FrameType | None = None
        lasti, since, sent = -1, 0.0, 0.0
        while True:
            with self._lock:
                armed = self._armed
            if armed is None:
                last = None
                self._wake.clear()
                self._wake.wait(1.0)
                continue
            deadline, rename = armed
            time.sleep(min(1.0, max(0.05, deadline / 8)))
            f = sys._current_frames().get(main)
            now = time.monotonic()
            if f is None:
                continue
            f = self._key(f)
            if f is last and f.f_lasti == lasti:
                if now - since < deadline:
                    continue
                with self._lock:
                    if self._armed is not armed:
                        continue
                    if self._target is not f:  # a new hang (e.g. in the cleanup after the first)
                        self._current = OperationHung(self._describe(f, rename), now - since, deadline)
                        self._target = f
                        if self.hung is None:
                            self.hung = self._current
                    cur = self._current
                    assert cur is not None
                    cur.seconds = now - since
                    resend = not cur.raised and now - sent >= 1.0
                if resend:  # again every second: a signal that arrived in a window the handler ignored
                    sent = now
                    signal.pthread_kill(main, HUNG_SIGNAL)
            else:
                last, lasti, since = f, f.f_lasti, now
            del f

    def _key(self, f: types.FrameType) -> types.FrameType:
        """The frame that stands for the operation in flight: the Recorder's call (whatever runs
        below it: an emulator loop, a sleep), else the innermost frame."""
        g: types.FrameType | None = f
        while g is not None:
            if g.f_code is self._code:
                return g
            g = g.f_back
        return f

    def _describe(self, f: types.FrameType, rename: Callable[[str, list], str]) -> str:
        """The recorded tree operation the frame is in, else what a frame on the stack says it
        waits for (a local ``hang_label``, e.g. a concurrency check's join), else the innermost
        Python function."""
        g: types.FrameType | None = f
        while g is not None:
            if g.f_code is self._code:
                loc = g.f_locals
                return rename(str(loc.get("op", "?")), list(loc.get("args", ())))
            g = g.f_back
        g = f
        while g is not None:
            label = g.f_locals.get("hang_label") if "hang_label" in g.f_code.co_varnames else None
            if isinstance(label, str):
                return label
            g = g.f_back
        code = f.f_code
        where = code.co_filename.rsplit("/tsm_conformance/", 1)[-1]
        return f"{code.co_name}() at {where}:{f.f_lineno}"


WATCHDOG = Watchdog()
