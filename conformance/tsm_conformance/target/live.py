"""LiveTree: real syscalls on a directory that implements the configfs-tsm report ABI."""

from __future__ import annotations

import os

from .base import Stat


class LiveTree:
    kind = "live"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _p(self, path: str) -> str:
        if path.startswith("/") or ".." in path.split("/"):
            # Never touch anything outside the report group we were given.
            raise ValueError(f"path escapes the tree: {path!r}")
        return os.path.join(self.root, path) if path else self.root

    def describe(self) -> str:
        return f"live {self.root}"

    def kernel_release(self) -> str:
        return os.uname().release

    def mkdir(self, path: str) -> None:
        os.mkdir(self._p(path))

    def rmdir(self, path: str) -> None:
        if not path:
            raise ValueError("refusing to rmdir the tree root")
        os.rmdir(self._p(path))

    def listdir(self, path: str = "") -> list[str]:
        return os.listdir(self._p(path))

    def stat(self, path: str) -> Stat:
        st = os.stat(self._p(path))
        return Stat(st.st_mode, st.st_size)

    def open(self, path: str, flags: int) -> int:
        # O_CREAT is never wanted: a typo must not create files in a plain directory.
        return os.open(self._p(path), flags & ~os.O_CREAT)

    def close(self, fd: int) -> None:
        os.close(fd)

    def read(self, fd: int, n: int) -> bytes:
        return os.read(fd, n)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        return os.pread(fd, n, offset)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        return os.lseek(fd, offset, whence)
