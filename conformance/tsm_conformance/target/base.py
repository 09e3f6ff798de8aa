"""The Tree protocol: the one interface every check, fuzzer and emulator frontend speaks.

Paths are relative to the report group (``""`` is the group itself, ``"r0"`` an item,
``"r0/inblob"`` an attribute).  Operations mirror syscalls one to one so that per-fd semantics
(buffered binary writes committed at close, per-fd read snapshots) stay observable.  Every error is
an ``OSError`` whose ``errno`` is what the kernel returned.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .control import HostControl, ProviderControl

#: Largest single read() the helpers issue; bigger than any outblob limit we probe by default.
READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Stat:
    mode: int  # full st_mode, file type bits included
    size: int

    @property
    def is_dir(self) -> bool:
        return (self.mode & 0o170000) == 0o040000

    @property
    def perm(self) -> int:
        return self.mode & 0o7777


class BoundOps:
    """The Tree operations as attributes bound per instance (to a kernel's own methods, or to a
    recording wrapper), with the protocol's signatures: declared once for both."""

    mkdir: Callable[[str], None]
    rmdir: Callable[[str], None]
    listdir: Callable[..., list[str]]
    stat: Callable[[str], Stat]
    open: Callable[[str, int], int]
    close: Callable[[int], None]
    read: Callable[[int, int], bytes]
    pread: Callable[[int, int, int], bytes]
    write: Callable[[int, bytes], int]
    pwrite: Callable[[int, bytes, int], int]
    lseek: Callable[[int, int, int], int]


class FileOps(Protocol):
    """The file operations of a directory of attributes (the report group, a measurement group).

    They take their arguments by position only (``/``): a tree may bind them to the syscalls
    themselves (LiveTree: os.read, os.write, ...), which accept no keywords."""

    def listdir(self, path: str = "", /) -> list[str]: ...
    def stat(self, path: str, /) -> Stat: ...
    def open(self, path: str, flags: int, /) -> int: ...
    def close(self, fd: int, /) -> None: ...
    def read(self, fd: int, n: int, /) -> bytes: ...
    def pread(self, fd: int, n: int, offset: int, /) -> bytes: ...
    def write(self, fd: int, data: bytes, /) -> int: ...
    def pwrite(self, fd: int, data: bytes, offset: int, /) -> int: ...
    def lseek(self, fd: int, offset: int, whence: int, /) -> int: ...


@runtime_checkable
class Tree(FileOps, Protocol):
    """A configfs-tsm report group, real or emulated.

    Besides the operations, every capability a check may use is declared here.  The optional
    ones default to "cannot": a tree that subclasses Tree (LiveTree, EmulatedTree) inherits these
    defaults and overrides what it can do, so callers read them without getattr."""

    #: "live", "emulated", "fuse" or "foreign" (target/live.py); recorded in reports.
    kind: str
    #: Loads, unloads and re-parameterises the tsm_test provider (target/control.py: a VM with
    #: ``run --module``, the emulated tsm_test); None elsewhere: the lifecycle checks are unsupported.
    control: ProviderControl | None = None
    #: Makes the host behind the provider (VMM, firmware) fail or stall (the emulator); None elsewhere.
    host: HostControl | None = None
    #: Behaviours this target cannot show, each with why (target/fuse_limits.py: a FUSE mount or
    #: another filesystem); checks ask ``Ctx.need_observable``.
    limits: Mapping[str, str] = MappingProxyType({})

    def hints(self) -> dict[str, int]:
        """Facts a live tree cannot tell (the emulator's generation counter width); checks use
        them only to decide applicability (checks.base.Facts.hints)."""
        return {}

    def trust_anchor_pems(self) -> list[bytes]:
        """Roots its reports verify against when the user gives none (the emulator's own)."""
        return []

    def measurements(self, where: str | None = None, counter: str | None = None) -> MrTree | None:
        """The provider's measurement-register group (tsm-mr, docs/abi-measurements.md), or None
        when this target has none.  ``where``: the group's directory the profile names (a live
        tree's sysfs path); ``counter``: a file counting the provider's refreshes, if it has one."""
        return None

    def describe(self) -> str:
        """One line naming the target, e.g. the root path or the emulator spec."""

    def kernel_release(self) -> str:
        """The kernel release the tree belongs to (``uname -r`` or the emulated era)."""

    def mkdir(self, path: str, /) -> None: ...
    def rmdir(self, path: str, /) -> None: ...


class MrTree(FileOps, Protocol):
    """A measurement-register group's directory: paths are register file names (``rtmr0:sha384``)."""

    def describe(self) -> str: ...
    def refreshes(self) -> int | None:
        """How many times the provider refreshed its registers, when the target can tell (the
        emulator; tsm_test's ``mr_refreshes`` parameter), else None."""


def read_all(tree: Tree, path: str, chunk: int = READ_CHUNK) -> bytes:
    """open + read() until EOF + close, as `cat` would."""
    fd = tree.open(path, os.O_RDONLY)
    try:
        parts = []
        while True:
            b = tree.read(fd, chunk)
            if not b:
                break
            parts.append(b)
        return b"".join(parts)
    finally:
        tree.close(fd)


def read_text(tree: Tree, path: str) -> str:
    return read_all(tree, path).decode("utf-8", "replace")


def write_once(tree: Tree, path: str, data: bytes) -> int:
    """open + one write() + close; returns write()'s count.  The write's errno propagates, but
    close() still runs (a failed binary write still commits at close, docs/abi.md §3)."""
    fd = tree.open(path, os.O_WRONLY)
    try:
        return tree.write(fd, data)
    finally:
        tree.close(fd)
