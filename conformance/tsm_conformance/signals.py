"""SIGINT and SIGTERM for the commands (cli.py): both unwind as KeyboardInterrupt, so every check's
``finally`` and the end-of-run sweep remove their items.

* A second SIGINT/SIGTERM while that cleanup runs is ignored, with a note (SIGKILL abandons the
  cleanup; ``tsm-conformance clean`` then removes what is left).
* The final sweep (``final_cleanup``) is finished first: a signal arriving during it is held and
  raised as KeyboardInterrupt when it is done.  So is a step that must not be cut in two (``held``:
  a report delivered to every pytest plugin, so KTAP, JUnit and the counts agree).
* A signal that lands in the import system, in a finalizer or where a with statement takes or gives
  back a lock still interrupts, a moment later (``_deliver``, ``_unraisable``): raised there, the
  interrupt would be dropped or would leave a lock held for good (the global import lock; a
  Condition's under an Event, so the end-of-run sweep's watchdog guard waited forever).
* Once the exit status is decided (``ignore_from_now_on``), signals are ignored, so interpreter
  shutdown (which restores the default handlers) cannot turn a late one into death by signal.

* Before all of that, from the package's first lines (``tsm_conformance/__init__.py``) in a
  process started as the command, a signal ends the process at once with one line and 130:
  nothing is made yet, and Python's own SIGINT handling would print a KeyboardInterrupt traceback
  from whichever import it landed in.  ``python_defaults`` undoes that for fuzz and emulate.

Signal handlers are process-wide, so the state is one module-level ``_State``.
"""

from __future__ import annotations

import _thread
import signal
import sys
import time

NOTE = "tsm-conformance: cleaning up report items; SIGKILL abandons that (then: tsm-conformance clean)"

#: Where a KeyboardInterrupt must not be raised: the import system's own code.  Its weakref callback
#: for module locks (importlib._bootstrap._get_module_lock.<locals>.cb) takes the global import lock
#: one instruction before its try; raised there, the interrupt is printed as "Exception ignored"
#: and the lock stays held for good (other threads' imports then hang).
IMPORT_SYSTEM = frozenset({"importlib._bootstrap", "importlib._bootstrap_external", "_frozen_importlib",
                           "_frozen_importlib_external", "zipimport"})
#: Nor where a with statement takes or gives back a lock: in a Python-level ``__enter__`` right after
#: its lock call returned (the interpreter runs signal handlers after each call) the with statement
#: was never entered, and in an ``__exit__`` before its release nothing releases: the lock stays
#: held.  threading.Condition's (under Event, Semaphore, Barrier; WATCHDOG.guard sets an Event: the
#: end-of-run sweep's guard, where further signals are only noted, then waited forever), and the
#: emulator's kernel locks, whose rwsem counts readers and writers in helper functions (a leaked
#: one kept a check's rmdir waiting for its 90 s deadline).
WITH_PROTOCOL = frozenset({"__enter__", "__exit__"})
LOCK_CODE = frozenset({"tsm_conformance.emulator.locks"})
OWED_AT_MOST = 2.0  # seconds an interrupt waits for those places (then it is raised there: a blocked import ends)


class _State:
    def __init__(self) -> None:
        self.signalled: int | None = None  # the first signal (2 for one only a finalizer saw)
        self.handling = False  # unwind_on_signals installed its handler (a command runs)
        self.in_cleanup = False  # inside final_cleanup
        self.holding = 0  # inside ``held`` (nested)
        self.held: int | None = None  # a signal that came during final_cleanup or held: raised after it
        self.owed_since: float | None = None  # a signal's KeyboardInterrupt is not delivered yet
        self.previous_hook = sys.unraisablehook
        self.kicker = _thread.allocate_lock()  # held while a _kick thread runs


_S = _State()


def signalled() -> bool:
    """A SIGINT/SIGTERM came (even one whose KeyboardInterrupt was swallowed on its way)."""
    return _S.signalled is not None


def handling() -> bool:
    """The handler of ``unwind_on_signals`` is in place (not yet ``ignore_from_now_on``)."""
    return _S.handling


class final_cleanup:  # noqa: N801 (used as a statement: `with final_cleanup():`)
    """The final sweep must finish: a first SIGINT/SIGTERM arriving during it is held and raised
    as KeyboardInterrupt when it is done, unless the status was decided meanwhile
    (``ignore_from_now_on`` inside it): then ``signalled()`` is all that is left of it, and no
    KeyboardInterrupt can put a line after the one the cleanup ends with."""

    def __enter__(self) -> None:
        _S.in_cleanup = True

    def __exit__(self, *exc: object) -> None:
        held = _S.held is not None
        _S.in_cleanup, _S.held = False, None
        if held and exc[0] is None and _S.handling:
            raise KeyboardInterrupt


class held:  # noqa: N801 (used as a statement: `with held():`)
    """A step that must not be cut in two: a first SIGINT/SIGTERM arriving during it is raised as
    KeyboardInterrupt when it is done (no note: nothing waits long)."""

    def __enter__(self) -> None:
        _S.holding += 1

    def __exit__(self, *exc: object) -> None:
        _S.holding -= 1
        if _S.holding or _S.in_cleanup:
            return
        signum, _S.held = _S.held, None
        if signum is not None and exc[0] is None and _S.handling:
            raise KeyboardInterrupt


def _holding() -> bool:
    return _S.in_cleanup or _S.holding > 0


def _hold_for_cleanup(signum: int) -> None:
    if _holding() and _S.held is None:
        _S.held = signum


def _not_here(frame: object) -> bool:
    """``frame`` (the code the signal interrupted) is the import system, or takes or gives back a
    lock for a with statement (IMPORT_SYSTEM, WITH_PROTOCOL, LOCK_CODE)."""
    name = getattr(frame, "f_globals", {}).get("__name__")
    code = getattr(frame, "f_code", None)
    return name in IMPORT_SYSTEM or name in LOCK_CODE or getattr(code, "co_name", None) in WITH_PROTOCOL


def _deliver(frame: object) -> None:
    """Raise the owed KeyboardInterrupt here, unless ``frame`` is a place it must not be raised
    (``_not_here``): then the interrupt is delivered again a moment later, outside it."""
    if _holding():  # the final cleanup (or a held step) began meanwhile: it raises the interrupt when done
        _S.owed_since = None
        _hold_for_cleanup(_S.signalled or 2)
        return
    owed = _S.owed_since
    if owed is not None and time.monotonic() - owed < OWED_AT_MOST and _not_here(frame):
        _deliver_soon()
        return
    _S.owed_since = None
    raise KeyboardInterrupt


def _deliver_soon() -> None:
    """A thread (only while an interrupt is owed) simulates the signal again every few ms with
    _thread.interrupt_main, so the handler runs again at the main thread's next check."""
    if _S.kicker.acquire(blocking=False):
        _thread.start_new_thread(_kick, ())


def _kick() -> None:
    while True:
        try:
            while _S.owed_since is not None:
                time.sleep(0.002)
                if _S.owed_since is not None:
                    _thread.interrupt_main(signal.SIGINT)
        finally:
            _S.kicker.release()
        # owed again between the loop's last look and the release: the one who acquires kicks
        if not (_S.owed_since is not None and _S.kicker.acquire(blocking=False)):
            return


def _unraisable(u: sys.UnraisableHookArgs) -> None:
    """A KeyboardInterrupt that Python could not raise (it landed in a finalizer: a __del__, a
    weakref callback, a generator being closed) is our handler's and was dropped there: no
    'Exception ignored' traceback; it is owed again, so the command still unwinds and exits 130."""
    if not isinstance(u.exc_value, KeyboardInterrupt):
        _S.previous_hook(u)
        return
    if not _S.handling:  # signals are ignored now: nothing to deliver, only the traceback to drop
        return
    if _holding():
        _hold_for_cleanup(_S.signalled or 2)
    elif _S.owed_since is None:
        if _S.signalled is None:
            _S.signalled = 2
        _S.owed_since = time.monotonic()
        _deliver_soon()


def _handler(signum: int, frame: object) -> None:
    if _S.owed_since is not None:  # the first signal's interrupt, not delivered yet: any call may deliver it
        _deliver(frame)
        return
    if _S.signalled is not None or _S.in_cleanup:
        print(NOTE, file=sys.stderr)
        if _S.signalled is None:  # remembered: final_cleanup raises it once the cleanup is done
            _S.signalled = signum
            _hold_for_cleanup(signum)
        return
    _S.signalled = signum
    _S.owed_since = time.monotonic()
    _deliver(frame)


def python_defaults() -> None:
    """The handlers the process had before the package's start-up handler (Python's: SIGINT raises
    KeyboardInterrupt, SIGTERM kills), for the commands that keep their own handling (fuzz, emulate)."""
    from . import _BEFORE_THE_COMMAND
    for sig, handler in _BEFORE_THE_COMMAND.items():
        if handler is not None:  # None: not installed from Python (then it was never replaced)
            signal.signal(sig, handler)  # type: ignore[arg-type]
    _BEFORE_THE_COMMAND.clear()


def unwind_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt from now on (see the module's docstring)."""
    # the hook first: once SIGTERM is caught (visible in /proc/PID/status), all of it is in place
    _S.previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)
    _S.handling = True


def ignore_from_now_on() -> None:
    """The work and its cleanup are done and the exit status is decided.  Interpreter shutdown
    puts the default handlers back for signals that have Python handlers, so a late SIGINT/SIGTERM
    would kill the process by that signal instead of letting it exit with its status; ignored
    signals stay ignored through shutdown."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _S.handling = False
    _S.owed_since = None  # nothing is delivered any more (interrupt_main does nothing for ignored signals)
