"""The kernel's sleeping locks as the emulator needs them: a reader-writer lock the shape of an
rw_semaphore (tsm_rwsem, frag_sem) and a mutex.

Each wait takes an optional ``intr`` callable.  In-process, waits are plain (a Python signal still
reaches a main thread blocked on them).  Behind FUSE, the frontend passes fuse_interrupted(): a
request whose caller got a signal must be answered, or the caller stays blocked (the kernel waits
for the reply killably only), so every wait polls it and fails EINTR.  That is a FUSE necessity, not
kernel behaviour: the real frag_sem and inode-lock waits are uninterruptible (frontend/fuse.py).

Under a cooperative schedule (``coop.py``: a fuzz input's programs as greenlets on one thread) taking
a lock is a switch point, and a taken lock is waited for by letting the other programs run
(``Scheduler.wait``): blocking the thread would block its holder too.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import Any

from .. import coop

Interrupted = Callable[[], bool] | None
POLL_SECONDS = 0.05  # how often an interruptible wait looks at ``intr``


def _eintr() -> OSError:
    return OSError(errno.EINTR, os.strerror(errno.EINTR))


def _wait(cond: threading.Condition, intr: Interrupted) -> None:
    """One wait on ``cond`` (held by the caller); EINTR if the caller was interrupted."""
    if intr is None:
        cond.wait()
        return
    if intr():
        raise _eintr()
    cond.wait(POLL_SECONDS)


class RWLock:
    """Writer-preferring rwsem: new readers wait while a writer waits, as the kernel's does.

    ``read()`` and ``write()`` give context managers (small objects rather than generators: every
    attribute callback takes one or two of these locks, so their cost is most of a cheap operation).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None  # made by the first waiter (most locks never see one)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._sleepers = 0  # threads in _wait: only then is a notify needed
        self._read, self._write = _Held(self, None, False), _Held(self, None, True)

    def read(self, intr: Interrupted = None) -> _Held:
        # without ``intr`` (in-process) one object serves every holder: it keeps no state
        return self._read if intr is None else _Held(self, intr, False)

    def write(self, intr: Interrupted = None) -> _Held:
        return self._write if intr is None else _Held(self, intr, True)

    def _acquire_read(self, intr: Interrupted) -> None:
        with self._lock:
            while self._writer or self._writers_waiting:
                self._sleep(intr)
            self._readers += 1

    def _acquire_write(self, intr: Interrupted) -> None:
        with self._lock:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._sleep(intr)
            except BaseException:
                self._writers_waiting -= 1
                if self._cond is not None:
                    self._cond.notify_all()  # readers held back by this waiter may go on
                raise
            self._writers_waiting -= 1
            self._writer = True

    def _release_write(self) -> None:
        with self._lock:
            self._writer = False
            if self._cond is not None and self._sleepers:
                self._cond.notify_all()

    def _sleep(self, intr: Interrupted) -> None:
        s = coop.current()
        if s is not None:  # the holder is another program of this thread: let it run on
            self._lock.release()
            try:
                s.wait()
            finally:
                self._lock.acquire()
            return
        if self._cond is None:
            self._cond = threading.Condition(self._lock)  # (under self._lock)
        self._sleepers += 1
        try:
            _wait(self._cond, intr)
        finally:
            self._sleepers -= 1


class _Held:
    """``with rwsem.read(intr):`` / ``with rwsem.write(intr):``."""

    __slots__ = ("lock", "intr", "write")

    def __init__(self, lock: RWLock, intr: Interrupted, write: bool) -> None:
        self.lock, self.intr, self.write = lock, intr, write

    def __enter__(self) -> None:
        s = coop.ACTIVE
        if s is not None and s.thread == threading.get_ident():
            s.point()
        lk = self.lock
        if self.write:
            lk._acquire_write(self.intr)
            return
        with lk._lock:  # an uncontended read, taken here (a call less: most takes are these)
            if not (lk._writer or lk._writers_waiting):
                lk._readers += 1
                return
        lk._acquire_read(self.intr)

    def __exit__(self, *exc: object) -> None:
        lk = self.lock
        if self.write:
            lk._release_write()
            return
        with lk._lock:  # a reader leaves; the last one wakes any sleeping writer
            lk._readers -= 1
            if not lk._readers and lk._cond is not None and lk._sleepers:
                lk._cond.notify_all()


def mutex(lock: threading.Lock) -> Any:
    """``with mutex(lock):`` for a lock held across switch points: the plain lock (the cheapest
    ``with``) outside a cooperative schedule, inside one a ``locked`` whose wait lets the holder run."""
    return locked(lock) if coop.ACTIVE is not None else lock


class locked:  # noqa: N801  (used like the function it replaces: ``with locked(lock, intr):``)
    """``with lock``, but failing EINTR once ``intr`` says the caller gave up."""

    __slots__ = ("lock", "intr")

    def __init__(self, lock: threading.Lock, intr: Interrupted = None) -> None:
        self.lock, self.intr = lock, intr

    def __enter__(self) -> None:
        s = coop.ACTIVE
        if s is not None and s.thread == threading.get_ident():
            s.point()
            while not self.lock.acquire(False):
                s.wait()
            return
        if self.intr is None:
            self.lock.acquire()
        else:
            while not self.lock.acquire(timeout=POLL_SECONDS):
                if self.intr():
                    raise _eintr()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
