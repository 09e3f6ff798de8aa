"""Where the run may write its own files (JUnit, KTAP, .tsmseq), checked before the run starts
and without leaving anything behind: an interrupt before the run writes a file must not leave an
empty (invalid) one, and a directory made only for the check must go again.  Never inside a
configfs-tsm tree or /proc: a mkdir in a report group makes a report item."""

from __future__ import annotations

import os
import tempfile

from .target.live import REPORT_GROUP_FSTYPES, enclosing_report_group, mount_fstype


def _nearest_existing(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    return p


def _trial(directory: str, name: str | None) -> str | None:
    """Make ``directory`` (and its missing parents), create a file in it (``name``, else a temporary
    one: root passes access(), so really try), then undo all of it.  The OS error's text, or None."""
    existing = _nearest_existing(directory)
    if not os.path.isdir(existing):
        return f"{existing} is not a directory"
    fstype = mount_fstype(existing) or ""
    if fstype in REPORT_GROUP_FSTYPES or fstype == "proc":
        return f"{existing} is on {fstype}, not a place for files"
    real = os.path.realpath(existing)
    group = real if real.endswith("/tsm/report") else enclosing_report_group(real)
    if group:  # any filesystem (--any-filesystem): a directory made there would be a report item
        return f"{existing} is in a report group ({group}), not a place for files"
    made = []
    p = os.path.abspath(directory)
    while p != existing:
        made.append(p)
        p = os.path.dirname(p)
    try:
        os.makedirs(directory, exist_ok=True)
        if name is None:
            fd, probe = tempfile.mkstemp(dir=directory, prefix=".tsm-probe-")
            os.close(fd)
        else:
            probe = os.path.join(directory, name)
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.unlink(probe)
        return None
    except OSError as e:
        return e.strerror or str(e)
    finally:
        for d in made:  # deepest first: directories the run makes again when it writes there
            try:
                os.rmdir(d)
            except OSError:
                pass


def file_problem(path: str) -> str | None:
    """Why a report file (``--junit``, ``--ktap``) could not be written at ``path``, or None.  An
    existing file is opened for appending (nothing is written: its old content stays until the run)."""
    if os.path.exists(path):
        if not os.path.isfile(path):
            return "not a regular file"
        try:
            with open(path, "a", encoding="utf-8"):
                return None
        except OSError as e:
            return e.strerror or str(e)
    return _trial(os.path.dirname(os.path.abspath(path)), os.path.basename(path))


def dir_problem(directory: str) -> str | None:
    """Why files could not be written in ``directory`` (``--seq-dir``: made only when a check
    fails), or None."""
    return _trial(directory, None)
