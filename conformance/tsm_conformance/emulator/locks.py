"""The kernel's sleeping locks as the emulator needs them: a reader-writer lock the shape of an
rw_semaphore (tsm_rwsem, frag_sem) and a mutex.

Each wait takes an optional ``intr`` callable.  In-process, waits are plain (a Python signal still
reaches a main thread blocked on them).  Behind FUSE, the frontend passes fuse_interrupted(): a
request whose caller got a signal must be answered, or the caller stays blocked (the kernel waits
for the reply killably only), so every wait polls it and fails EINTR.  That is a FUSE necessity, not
kernel behaviour: the real frag_sem and inode-lock waits are uninterruptible (frontend/fuse.py).
"""

from __future__ import annotations

import errno
import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

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
    """Writer-preferring rwsem: new readers wait while a writer waits, as the kernel's does."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self, intr: Interrupted = None) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                _wait(self._cond, intr)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self, intr: Interrupted = None) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    _wait(self._cond, intr)
            except BaseException:
                self._writers_waiting -= 1
                self._cond.notify_all()  # readers held back by this waiter may go on
                raise
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@contextmanager
def locked(lock: threading.Lock, intr: Interrupted = None) -> Iterator[None]:
    """``with lock``, but failing EINTR once ``intr`` says the caller gave up."""
    if intr is None:
        lock.acquire()
    else:
        while not lock.acquire(timeout=POLL_SECONDS):
            if intr():
                raise _eintr()
    try:
        yield
    finally:
        lock.release()
