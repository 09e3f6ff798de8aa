"""The one errno table of the project: names <-> numbers, and OSError helpers.

Profiles, checks, the emulator and failure messages all name errno values through this module so
that a spelling appears in exactly one place.
"""

from __future__ import annotations

import errno as _errno
import os

#: Every errno name the configfs-tsm ABI can produce (docs/abi.md §1c, docs/real-kernels.md), plus the ones the
#: suite itself reasons about.  Profiles may only name these.
ABI_ERRNOS: tuple[str, ...] = (
    "EPERM", "ENOENT", "EINTR", "EIO", "ENXIO", "ENOMEM", "EACCES", "EFAULT", "EBUSY",
    "EEXIST", "ENOTDIR", "EINVAL", "ENOTTY", "ETXTBSY", "EFBIG", "ESPIPE", "ERANGE",
    "ENAMETOOLONG", "ETIMEDOUT", "ENODATA", "EAGAIN", "EOPNOTSUPP",
)


def number(name: str) -> int:
    """errno number for a name such as ``"EINVAL"``; KeyError for an unknown name."""
    if name not in ABI_ERRNOS:
        raise KeyError(name)
    return int(getattr(_errno, name))


def name(num: int | None) -> str:
    """Symbolic name for an errno number (``22`` -> ``"EINVAL"``)."""
    if num is None:
        return "?"
    return _errno.errorcode.get(num, f"E#{num}")


def oserror(num: int, what: str = "") -> OSError:
    """An OSError shaped like the one a failing syscall raises."""
    return OSError(num, os.strerror(num), what) if what else OSError(num, os.strerror(num))


def known(name_: str) -> bool:
    return name_ in ABI_ERRNOS
