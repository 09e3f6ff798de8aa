"""Measurement registers (tsm-mr, Linux 6.16+), as the kernel serves them (docs/abi-measurements.md).

Two layers, as in the kernel:

* ``MrGroup``: what a provider registers (drivers/virt/coco/guest/tsm-mr.c's view of it): the
  registers, the provider's ``write`` (extend: the register's "hardware" value becomes
  H(hw || data)) and ``refresh`` (the live registers' cached values reloaded from hardware), and
  the one stale flag per group: set by a successful write, cleared by a refresh, which the next
  read of a live register triggers (§4).  Reports read the hardware values (``snapshot``).
* ``MrFiles``: the group's sysfs directory: open with the file's mode, the file position, and the
  write contract of kernfs + sysfs binary attributes + tsm-mr (§2): a write at or past the end is
  EFBIG, a longer one is cut to the register size, then anything but one whole register at
  offset 0 is EINVAL; a read past the end or of 0 bytes returns nothing without refreshing.

Quirks (emulator/quirks.py) put in the bug classes clients and providers have shipped:
``mr-overwrite`` (a write replaces instead of extending), ``mr-size-unchecked`` (a write of
another size or at another offset extends), ``mr-readonly-writable`` (a read-only register opens
for writing and extends), ``mr-refresh-always`` (every live read refreshes), ``mr-stale-report``
(reports read the cached values, not hardware), ``mr-no-suffix`` (file names without ``:ALGO``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

PAGE = 4096  # kernfs hands a write at most one page

_S_IFREG = 0o100000


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass
class Register:
    name: str  # without the hash suffix
    size: int
    hash: str | None  # "sha384", "sha256", ...; None: TSM_MR_F_NOHASH (no suffix, no extend algorithm)
    readable: bool = True
    writable: bool = False
    live: bool = False
    hw: bytearray = field(default_factory=bytearray)  # the provider's ("hardware") value
    value: bytearray = field(default_factory=bytearray)  # what the core serves (mr_value)

    def file_name(self, quirks: frozenset[str] = frozenset()) -> str:
        return self.name if self.hash is None or "mr-no-suffix" in quirks else f"{self.name}:{self.hash}"

    @property
    def perm(self) -> int:
        return (0o444 if self.readable else 0) | (0o200 if self.writable else 0)


def register(name: str, size: int, hash: str | None, initial: bytes = b"", *, writable: bool = False,
             live: bool = False) -> Register:
    v = bytes(initial).ljust(size, b"\0")[:size]
    return Register(name, size, hash, True, writable, live, bytearray(v), bytearray(v))


class MrGroup:
    """A provider's registered measurement group (tsm_measurements)."""

    def __init__(self, registers: list[Register], quirks: Callable[[], frozenset[str]]) -> None:
        self.registers = registers
        self._quirks = quirks  # the provider's quirks, read when used (set after registration)
        self.lock = threading.RLock()  # the group's rwsem, and what a report's snapshot takes
        self.stale = True  # tsm-mr starts stale: the first live read refreshes
        self.refreshes = 0  # how many times refresh ran (tsm_test's mr_refreshes parameter)

    @property
    def quirks(self) -> frozenset[str]:
        return self._quirks()

    def files(self) -> dict[str, Register]:
        q = self.quirks
        return {r.file_name(q): r for r in self.registers}

    def extend(self, reg: Register, data: bytes) -> None:
        """The provider's write callback: hw = H(hw || data) (TDG.MR.RTMR.EXTEND on TDX)."""
        with self.lock:
            if "mr-overwrite" in self.quirks:
                reg.hw[:] = bytes(data).ljust(reg.size, b"\0")[:reg.size]
            else:
                reg.hw[:] = hashlib.new(reg.hash or "sha384", bytes(reg.hw) + bytes(data)).digest()[:reg.size]
            self.stale = True

    def refresh(self) -> None:
        with self.lock:
            self.refreshes += 1
            for r in self.registers:
                if r.live:
                    r.value[:] = r.hw
            self.stale = False

    def value(self, reg: Register) -> bytes:
        """What a read of ``reg`` serves, refreshing first when tsm-mr would (§4)."""
        with self.lock:
            if reg.live and (self.stale or "mr-refresh-always" in self.quirks):
                self.refresh()
            return bytes(reg.value)

    def snapshot(self) -> dict[str, bytes]:
        """The registers as a report sees them: the hardware values, taken under the group lock."""
        with self.lock:
            stale_report = "mr-stale-report" in self.quirks
            return {r.name: bytes(r.value if stale_report else r.hw) for r in self.registers}


@dataclass
class _Fd:
    reg: Register
    flags: int
    pos: int = 0


class MrFiles:
    """The group's sysfs directory as syscalls see it; fds are this object's own."""

    FD_BASE = 1 << 20  # apart from the report tree's fds

    def __init__(self, group: MrGroup) -> None:
        self.group = group
        self._fds: dict[int, _Fd] = {}
        self._next = self.FD_BASE

    def _reg(self, path: str) -> Register:
        reg = self.group.files().get(path.strip("/"))
        if reg is None:
            raise _err(errno.ENOENT)
        return reg

    def listdir(self, path: str = "") -> list[str]:
        if path.strip("/") not in ("", "."):
            raise _err(errno.ENOTDIR if path.strip("/") in self.group.files() else errno.ENOENT)
        return sorted(self.group.files())

    def stat(self, path: str) -> tuple[int, int]:
        """(st_mode, st_size)."""
        if path.strip("/") in ("", "."):
            return 0o040755, 0
        reg = self._reg(path)
        return _S_IFREG | reg.perm, reg.size

    def open(self, path: str, flags: int) -> int:
        reg = self._reg(path)
        acc = flags & os.O_ACCMODE
        writable = reg.writable or "mr-readonly-writable" in self.group.quirks
        if (acc in (os.O_RDONLY, os.O_RDWR) and not reg.readable) or \
                (acc in (os.O_WRONLY, os.O_RDWR) and not writable):
            raise _err(errno.EACCES)
        fd = self._next
        self._next += 1
        self._fds[fd] = _Fd(reg, flags)
        return fd

    def _fd(self, fd: int) -> _Fd:
        f = self._fds.get(fd)
        if f is None:
            raise _err(errno.EBADF)
        return f

    def close(self, fd: int) -> None:
        self._fd(fd)
        del self._fds[fd]

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        f = self._fd(fd)
        if f.flags & os.O_ACCMODE == os.O_WRONLY:
            raise _err(errno.EBADF)
        if offset < 0:
            raise _err(errno.EINVAL)
        reg = f.reg
        if n <= 0 or offset >= reg.size:  # sysfs answers before tsm-mr runs: no refresh
            return b""
        return self.group.value(reg)[offset:offset + min(n, reg.size - offset)]

    def read(self, fd: int, n: int) -> bytes:
        f = self._fd(fd)
        data = self.pread(fd, n, f.pos)
        f.pos += len(data)
        return data

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        f = self._fd(fd)
        if f.flags & os.O_ACCMODE == os.O_RDONLY:
            raise _err(errno.EBADF)
        if offset < 0:
            raise _err(errno.EINVAL)
        reg = f.reg
        if offset >= reg.size:  # sysfs_kf_bin_write
            raise _err(errno.EFBIG)
        count = min(len(data), PAGE, reg.size - offset)
        if count == 0:
            return 0
        if (offset != 0 or count != reg.size) and "mr-size-unchecked" not in self.group.quirks:
            raise _err(errno.EINVAL)  # tm_digest_write: one whole register at offset 0, nothing else
        self.group.extend(reg, bytes(data[:count]))
        return count

    def write(self, fd: int, data: bytes) -> int:
        f = self._fd(fd)
        n = self.pwrite(fd, data, f.pos)
        f.pos += n
        return n

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        f = self._fd(fd)
        base = {os.SEEK_SET: 0, os.SEEK_CUR: f.pos, os.SEEK_END: f.reg.size}.get(whence)
        if base is None or base + offset < 0:
            raise _err(errno.EINVAL)
        f.pos = base + offset
        return f.pos
