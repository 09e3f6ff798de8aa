"""Standard output that survives its reader going away (``tsm-conformance run | head``).

A closed pipe must not end a run: the checks' cleanup and the end-of-run sweep still have to run,
and the exit status must still say pass/fail.  So the first EPIPE sends the rest of the output to
/dev/null (at the file descriptor, so the interpreter's final flush does not complain either).
"""

from __future__ import annotations

import os
from typing import Any, TextIO


class PipeSafe:
    """A text stream proxy: writes after the reader closed the pipe are dropped silently."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no descriptor (a test's StringIO): dropping is enough
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def pipe_safe(stream: TextIO) -> TextIO:
    """``stream`` wrapped once (wrapping twice would hide ``broken``)."""
    # PipeSafe is a TextIO by delegation (__getattr__), which the checker cannot see
    return stream if isinstance(stream, PipeSafe) else PipeSafe(stream)  # type: ignore[return-value]
