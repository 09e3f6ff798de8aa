"""LiveTree: real syscalls on a directory that implements the configfs-tsm report ABI."""

from __future__ import annotations

import os

from .base import Stat
from .fuse_limits import FUSE_LIMITS


def mount_fstype(path: str) -> str | None:
    """The filesystem type of the mount holding ``path``, from /proc/self/mountinfo (statvfs has no
    f_type in Python).  None when it cannot be told."""
    real = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                fields = left.split()
                if not sep or len(fields) < 5 or not right:
                    continue
                mnt = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
                mnt = mnt.replace("\\134", "\\")
                inside = mnt == "/" or real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):  # the last of stacked mounts wins
                    best, fstype = mnt, right.split()[0]
    except OSError:
        return None
    return fstype


#: Filesystems a report group may be on: configfs, or a `tsm-conformance emulate` mount (its FUSE
#: subtype is "tsm", frontend/fuse.py).  Anything else is not ours to mkdir or rmdir in.
REPORT_GROUP_FSTYPES = ("configfs", "fuse.tsm")


def report_group_problem(root: str) -> str | None:
    """Why ``root`` is not a configfs-tsm report group we may make and remove items in, or None.
    Checked before any write (run and detect probe with a mkdir; clean removes)."""
    fstype = mount_fstype(root) or "?"
    if fstype not in REPORT_GROUP_FSTYPES:
        return (f"{root} is on {fstype}, not configfs (nor a `tsm-conformance emulate` mount): "
                "not a configfs-tsm report group, so nothing is made or removed there")
    if not os.path.realpath(root).rstrip("/").endswith("/tsm/report"):
        return f"{root} is not a configfs-tsm report group (expected .../tsm/report)"
    return None


class LiveTree:
    #: "live", or "fuse" on a FUSE mount (e.g. ``tsm-conformance emulate --mount``)
    kind = "live"
    #: behaviours this target cannot show (target/fuse_limits.py); checks ask Ctx.need_observable
    limits: dict[str, str] = {}

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._prefix = self.root.rstrip("/") + "/"
        fstype = mount_fstype(self.root) or ""
        if fstype in ("fuse", "fuseblk") or fstype.startswith("fuse."):
            self.kind, self.limits = "fuse", FUSE_LIMITS
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
        return f"{self.kind} {self.root}"

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

