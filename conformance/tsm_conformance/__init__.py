"""configfs-tsm-conformance: conformance checks for Linux configfs-tsm report providers.

Import root of the conformance half of the project. See ARCHITECTURE.md for the layers.
"""

# First, in a process started as the command (and only there): a SIGINT/SIGTERM from here until the
# command installs its handling (signals.py) ends it with one line and exit 130, not with a
# KeyboardInterrupt traceback from an import or death by SIGTERM.  This is the earliest line of ours
# that either entry point runs; it uses only what the interpreter has loaded before it (os, sys,
# the built-in _signal: the `signal` module would first import enum, some 4 ms).
import os as _os
import sys as _sys


def _started_as_the_command() -> bool:
    """``tsm-conformance`` (the console script), or ``python -m tsm_conformance.cli`` (while runpy
    looks for that module it imports this package, with sys.argv[0] "-m"; sys.orig_argv says which
    module); not a library user, the pytest plugin, or a test calling ``cli.main(argv)``."""
    argv, orig = _sys.argv, getattr(_sys, "orig_argv", [])
    if argv and _os.path.basename(argv[0]) == "tsm-conformance":
        return True
    if not argv or argv[0] != "-m":  # no -m, or runpy found the module first (it is not ours)
        return False
    for i, arg in enumerate(orig[1:], 1):  # the interpreter's own options, up to its -m
        if arg.startswith("-m"):
            return (orig[i + 1:i + 2] if arg == "-m" else [arg[2:]]) == ["tsm_conformance.cli"]
    return False


def _interrupted_before_the_command(signum: int, frame: object) -> None:
    _os.write(2, b"tsm-conformance: interrupted\n")
    _os._exit(130)  # nothing is made yet, and nothing of ours is buffered


#: the handlers replaced here; signals.python_defaults puts them back for fuzz and emulate
_BEFORE_THE_COMMAND: dict[int, object] = {}
if _started_as_the_command():
    import _signal  # type: ignore[import-not-found]  # the C module under `signal`, no stub

    for _sig in (_signal.SIGINT, _signal.SIGTERM):
        _BEFORE_THE_COMMAND[_sig] = _signal.signal(_sig, _interrupted_before_the_command)

__version__ = "0.1.0"

DEFAULT_ROOT = "/sys/kernel/config/tsm/report"
