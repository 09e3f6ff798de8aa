"""Processes by pid, the one place: whether one still runs, and signalling a process group."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (one of another user's counts; a zombie does not: it
    can no longer use anything, only its parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # gone meanwhile (or no /proc: kill() said it exists)
        return not Path("/proc").is_dir()


def killpg(pgid: int, sig: int) -> bool:
    """Signal process group ``pgid``; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True
