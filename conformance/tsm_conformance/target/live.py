"""LiveTree: real syscalls on a directory that implements the configfs-tsm report ABI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .base import Stat, Tree
from .fuse_limits import FUSE_LIMITS, OTHER_FS_LIMITS

if TYPE_CHECKING:
    from .control import ProviderControl


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
#: subtype is "tsm", frontend/fuse.py).  Anything else is not ours to mkdir or rmdir in, unless the
#: user opts in with --any-filesystem (ANY_FILESYSTEM_OPTION).
REPORT_GROUP_FSTYPES = ("configfs", "fuse.tsm")

#: The opt-in for a report group on any other filesystem: another implementation of the ABI (a FUSE
#: daemon, another OS's configfs over virtiofs, a userspace shim).
ANY_FILESYSTEM_OPTION = "--any-filesystem"

#: Kernel pseudo-filesystems that are never a report group, even with the opt-in: a mkdir or rmdir
#: there changes the kernel itself (cgroups, tracing instances, bpf pins), not an implementation.
NEVER_REPORT_GROUP = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs", "cgroup", "cgroup2",
    "bpf", "pstore", "efivarfs", "selinuxfs", "smackfs", "apparmorfs", "hugetlbfs", "mqueue",
    "binfmt_misc", "fusectl", "autofs", "rpc_pipefs", "nsfs", "pipefs", "sockfs", "resctrl",
})

#: FUSE in the kernel, whoever serves it (virtiofs is FUSE over virtio): the same calls are answered
#: by the kernel's fuse module before the server sees them (fuse_limits.FUSE_LIMITS).
FUSE_FSTYPES = ("fuse", "fuseblk", "virtiofs")


def is_fuse(fstype: str) -> bool:
    return fstype in FUSE_FSTYPES or fstype.startswith(("fuse.", "fuseblk."))


def _ends_in_report_group(path: str) -> bool:
    return path.rstrip("/").endswith("/tsm/report")


def enclosing_report_group(path: str) -> str | None:
    """The nearest directory above ``path`` (resolved) whose path ends in tsm/report, or None: with
    --any-filesystem any such directory may be a report group, where a mkdir makes a report item."""
    parent = os.path.dirname(os.path.realpath(path))
    while parent != os.path.dirname(parent):
        if _ends_in_report_group(parent):
            return parent
        parent = os.path.dirname(parent)
    return None


def report_group_problem(root: str, any_filesystem: bool = False) -> str | None:
    """Why ``root`` is not a configfs-tsm report group we may make and remove items in, or None.
    The one place that decides it (run, detect, replay, fuzz --root, clean), before any write: the
    probe's mkdir and clean's rmdir happen only in a directory that passed.  ``any_filesystem``:
    the --any-filesystem opt-in (any filesystem but the kernel's pseudo-filesystems)."""
    fstype = mount_fstype(root)
    if fstype is None:  # mountinfo unreadable: it could be /proc for all we know
        return f"{root}: cannot tell its filesystem (no /proc/self/mountinfo): nothing is made or removed there"
    if fstype in NEVER_REPORT_GROUP:
        return f"{root} is on {fstype}, not a configfs-tsm report group: nothing is made or removed there"
    if fstype not in REPORT_GROUP_FSTYPES and not any_filesystem:
        return (f"{root} is on {fstype}, not configfs (nor a `tsm-conformance emulate` mount): nothing is made "
                f"or removed there (another implementation's .../tsm/report: add {ANY_FILESYSTEM_OPTION})")
    real = os.path.realpath(root)
    if not _ends_in_report_group(real):
        return f"{root} is not a configfs-tsm report group (expected .../tsm/report)"
    outer = enclosing_report_group(real)  # never inside a report item (.../tsm/report/ITEM/.../tsm/report)
    if outer:
        return f"{root} is inside the report group {outer}: give the report group itself"
    return None


class _Syscalls:
    """The operations as the syscalls on a directory's files (``_p``: a path in it), shared by the
    report group (LiveTree) and a measurement group (LiveMr)."""

    # fd operations are the syscalls themselves: no Python frame between a check and the kernel
    close = staticmethod(os.close)
    read = staticmethod(os.read)
    pread = staticmethod(os.pread)
    write = staticmethod(os.write)
    pwrite = staticmethod(os.pwrite)
    lseek = staticmethod(os.lseek)

    def _p(self, path: str) -> str:
        raise NotImplementedError

    def listdir(self, path: str = "") -> list[str]:
        return os.listdir(self._p(path))

    def stat(self, path: str) -> Stat:
        st = os.stat(self._p(path))
        return Stat(st.st_mode, st.st_size)

    def open(self, path: str, flags: int) -> int:
        # O_CREAT is never wanted: a typo must not create files in a plain directory.
        return os.open(self._p(path), flags & ~os.O_CREAT)


class LiveTree(_Syscalls, Tree):
    #: "live" (configfs), "fuse" on a FUSE mount (e.g. ``tsm-conformance emulate --mount``), or
    #: "foreign": another filesystem, allowed by --any-filesystem
    kind = "live"
    #: behaviours this target cannot show (target/fuse_limits.py); checks ask Ctx.need_observable
    limits: Mapping[str, str] = {}

    def __init__(self, root: str, any_filesystem: bool = False, control: ProviderControl | None = None) -> None:
        """``control``: the provider's lifecycle (a VM's tsm_test module: runstate.module_control)."""
        self.root = os.path.abspath(root)
        self.control = control
        self._prefix = self.root.rstrip("/") + "/"
        fstype = mount_fstype(self.root) or ""
        #: the filesystem, when it is not one we recognise (configfs, our emulate mount): the run
        #: was opted in with --any-filesystem, and a rerun needs the same option (describe())
        self.foreign_fstype = fstype if any_filesystem and fstype not in REPORT_GROUP_FSTYPES else None
        if is_fuse(fstype):
            self.kind, self.limits = "fuse", FUSE_LIMITS
        elif self.foreign_fstype:
            # Not FUSE, not configfs (9p, NFS, a shim's tmpfs...).  Whatever it is, the local kernel
            # answers a zero-length write and lseek itself, as on FUSE (generic_write_checks,
            # generic_file_llseek), so those checks are skip-unsupported rather than a verdict on
            # the implementation; its own kind, so reports do not call it FUSE.
            self.kind, self.limits = "foreign", OTHER_FS_LIMITS

    def _p(self, path: str) -> str:
        if not path:
            return self.root
        if path[0] == "/" or (".." in path and ".." in path.split("/")):
            # Never touch anything outside the report group we were given.
            raise ValueError(f"path escapes the tree: {path!r}")
        return self._prefix + path

    def describe(self) -> str:
        # report_text.rerun_options reads the option back from this: keep the two in step
        if self.foreign_fstype:
            return f"{self.kind} {self.root} ({self.foreign_fstype}, {ANY_FILESYSTEM_OPTION})"
        return f"{self.kind} {self.root}"

    def kernel_release(self) -> str:
        return os.uname().release

    def mkdir(self, path: str) -> None:
        os.mkdir(self._p(path))

    def rmdir(self, path: str) -> None:
        if not path:
            raise ValueError("refusing to rmdir the tree root")
        os.rmdir(self._p(path))


    def measurements(self, where: str | None = None, counter: str | None = None) -> LiveMr | None:
        return _live_measurements(self, where, counter)



class LiveMr(_Syscalls):
    """MrTree over a measurement group's sysfs directory (docs/abi-measurements.md §1): only the
    register files in it, by name; nothing is ever created."""

    def __init__(self, directory: str, counter: str | None = None) -> None:
        self.dir, self.counter = directory, counter

    def _p(self, name: str) -> str:
        if "/" in name or name in ("..", "."):
            raise ValueError(f"not a register file name: {name!r}")
        return os.path.join(self.dir, name) if name else self.dir

    def describe(self) -> str:
        return self.dir

    def refreshes(self) -> int | None:
        if not self.counter:
            return None
        try:
            with open(self.counter, "rb") as f:
                return int(f.read(64).strip() or b"-1")
        except (OSError, ValueError):
            return None



def _live_measurements(tree: LiveTree, where: str | None, counter: str | None) -> LiveMr | None:
    """A FUSE mount of the emulator shows its group beside tsm/ (``MOUNT/measurements``); on
    configfs the group is where the profile says (sysfs)."""
    if tree.kind == "fuse":
        top = os.path.dirname(os.path.dirname(tree.root.rstrip("/")))
        fuse_dir = os.path.join(top, "measurements")  # frontend/fuse.py; its refresh count beside it
        return LiveMr(fuse_dir, os.path.join(top, ".mr-refreshes")) if os.path.isdir(fuse_dir) else None
    if where and os.path.isdir(where):
        return LiveMr(where, counter if counter and os.path.exists(counter) else None)
    return None

