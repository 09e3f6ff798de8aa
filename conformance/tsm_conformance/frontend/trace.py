"""The operation trace of a FUSE mount (``tsm-conformance emulate ... --trace FILE``): every
operation on the report tree as one JSON line, for judging a client (``tsm-conformance client``).

One record a line, keys in this order, only those that apply:

* ``t``: seconds since the mount (monotonic, 6 decimals); ``pid``: the calling process (the thread
  group of the thread FUSE names; 0 when FUSE gives none, as for RELEASE); ``op``: ``mkdir``,
  ``rmdir``, ``getattr``, ``readdir``, ``open``, ``read``, ``write``, ``close`` (FLUSH: every
  close() of the caller) or ``release`` (the last close of the open file, asynchronous);
  ``path``: relative to the report group (``""`` the group, ``NAME``, ``NAME/ATTR``; ``null`` for an
  fd operation whose file was not found);
* ``fh``: the FUSE file handle (open's result, and read/write/close/release);
  ``flags``: open's flags as text (``O_WRONLY|O_TRUNC``);
* ``offset``, ``size``: read and write (a write's size is its data's length);
* writes: ``data`` (hex of the first 256 bytes at most), ``sha1`` and ``len`` (of all the data);
* ``result``: an int on success (open: the handle; read: the bytes returned, also given as
  ``len``; write: the count written; others 0), or the errno name (``"EINVAL"``) on failure.

Bounded: after ``MAX_RECORDS`` records or ``MAX_BYTES`` bytes the trace ends with one line
``{"op": "#truncated"}`` and records nothing more.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import threading
import time
from typing import IO, Any

MAX_RECORDS = 100_000
MAX_BYTES = 64 << 20
DATA_HEX = 256  # bytes of a write's data given in full

_ACCMODE = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
_FLAG_NAMES = ("O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DSYNC", "O_DIRECT",
               "O_LARGEFILE", "O_DIRECTORY", "O_NOFOLLOW", "O_NOATIME", "O_CLOEXEC", "O_SYNC", "O_PATH",
               "O_TMPFILE")


# The kernel hands FUSE O_LARGEFILE (forced on 64-bit opens) as its own bit, which Python's os
# spells 0 on 64-bit machines: x86's value, named so.
_KERNEL_LARGEFILE = 0o100000 if getattr(os, "O_LARGEFILE", 0) == 0 and platform.machine() in (
    "x86_64", "i386", "i686") else 0


def flags_text(flags: int) -> str:
    """``O_WRONLY|O_TRUNC``: the access mode, then every other known flag, then unknown bits in hex."""
    parts = [_ACCMODE.get(flags & os.O_ACCMODE, hex(flags & os.O_ACCMODE))]
    rest = flags & ~os.O_ACCMODE
    for name in _FLAG_NAMES:
        bit = getattr(os, name, 0)
        if bit and rest & bit == bit:
            parts.append(name)
            rest &= ~bit
    if _KERNEL_LARGEFILE and rest & _KERNEL_LARGEFILE:
        parts.append("O_LARGEFILE")
        rest &= ~_KERNEL_LARGEFILE
    if rest:
        parts.append(hex(rest))
    return "|".join(parts)


def errno_text(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def thread_group(tid: int) -> int:
    """The process of thread ``tid`` (FUSE names the calling thread); ``tid`` itself when gone."""
    if tid <= 0:
        return tid
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return tid


class Trace:
    """An append-only JSON-lines sink, safe for libfuse's threads, bounded."""

    def __init__(self, path: str) -> None:
        self._f: IO[str] | None = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.records = 0
        self.bytes = 0

    def record(self, pid: int, op: str, path: str | None, **fields: Any) -> None:
        rec: dict[str, Any] = {"t": round(time.monotonic() - self._t0, 6), "pid": pid, "op": op, "path": path}
        rec.update(fields)
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self._lock:
            if self._f is None:
                return
            if self.records >= MAX_RECORDS or self.bytes + len(line) > MAX_BYTES:
                self._f.write('{"op":"#truncated"}\n')
                self._f.close()
                self._f = None
                return
            self._f.write(line)
            self._f.flush()
            self.records += 1
            self.bytes += len(line)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def write_fields(data: bytes) -> dict[str, Any]:
    return {"data": data[:DATA_HEX].hex(), "sha1": hashlib.sha1(data).hexdigest(), "len": len(data)}
