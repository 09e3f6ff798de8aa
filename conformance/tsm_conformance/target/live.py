"""LiveTree: real syscalls on a directory that implements the configfs-tsm report ABI."""

from __future__ import annotations

import os

from .base import Stat


class LiveTree:
    kind = "live"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._prefix = self.root.rstrip("/") + "/"
        # fd operations are the syscalls themselves: no Python frame between a check and the kernel
        self.close, self.read, self.pread = os.close, os.read, os.pread
        self.write, self.pwrite, self.lseek = os.write, os.pwrite, os.lseek

    def _p(self, path: str) -> str:
        if not path:
            return self.root
        if path[0] == "/" or (".." in path and ".." in path.split("/")):
            # Never touch anything outside the report group we were given.
            raise ValueError(f"path escapes the tree: {path!r}")
        return self._prefix + path

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

