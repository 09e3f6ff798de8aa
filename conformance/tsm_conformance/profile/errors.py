"""Profile errors and where they point: the bottom of ``profile/``, importing nothing above it.

Owns ``ProfileError`` (one line ``FILE:LINE:COL: KEYPATH: message``) and ``ProfileLookupError``,
the ``Mark`` of one key (file, line, column) and the ``Marks`` map from dotted keypath to mark,
and the small helpers every other profile module uses to word a message: ``show`` (a value as
the user wrote it), ``join`` (extend a keypath) and ``error_at`` (an error at a keypath's mark).
"""

from __future__ import annotations

from dataclasses import dataclass


class ProfileError(Exception):
    """A profile problem, located at ``file:line:col`` and a dotted ``keypath``."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 col: int | None = None, keypath: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.keypath = keypath

    def __str__(self) -> str:
        if not self.file:
            return one_line(self.message)
        if not self.line:  # the file itself is the problem (unreadable, missing)
            return one_line(f"{self.file}: {self.message}")
        where = f"{self.file}:{self.line}:{self.col or 1}"
        return one_line(f"{where}: {self.keypath or '(top level)'}: {self.message}")


class ProfileLookupError(ProfileError, LookupError):
    """No profile by that name, or none (or several) fit the probed provider."""


@dataclass(frozen=True)
class Mark:
    """Where one key was written: file as displayed, 1-based line and column."""

    file: str
    line: int
    col: int

    def short(self) -> str:
        return f"{self.file}:{self.line}"


Marks = dict[str, Mark]


def one_line(s: str) -> str:
    return " ".join(s.split())


def show(v: object) -> str:
    """A value as the user wrote it, shortened for one-line messages."""
    if isinstance(v, bool):
        s = "true" if v else "false"
    elif v is None:
        s = "null"
    elif isinstance(v, dict):
        s = "a mapping {" + ", ".join(map(str, v)) + "}"
    elif isinstance(v, list):
        s = f"a list of {len(v)} item(s)"
    else:
        s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def join(kp: str, key: object) -> str:
    return f"{kp}.{key}" if kp else str(key)


def error_at(marks: Marks, keypath: str, message: str) -> ProfileError:
    """Error at the mark of ``keypath`` (or its nearest marked ancestor)."""
    k = keypath
    while k not in marks and k:
        k = k.rpartition(".")[0]
    m = marks.get(k) or marks[""]
    return ProfileError(message, file=m.file, line=m.line, col=m.col, keypath=keypath)
