"""Mount the in-process emulator as a real filesystem: ``tsm-conformance emulate SPEC --mount DIR``.

Layout: DIR is the configfs top, like ``/sys/kernel/config``; ``DIR/tsm/report`` is the report group
(``tsm-conformance run --root DIR/tsm/report``).  ``DIR`` and ``DIR/tsm`` are fixed directories:
mkdir and rmdir there fail with EPERM, as configfs' root and subsystem groups do.

Every operation under the report group is one call into ``emulator.Kernel`` with the path relative
to the group; an ``OSError`` from the emulator becomes the same errno for the caller:

* getattr -> ``Kernel.stat``; readdir -> ``listdir``; mkdir/rmdir -> ``mkdir``/``rmdir``
* open -> ``Kernel.open`` with the caller's flags (a FUSE file handle names the emulator fd)
* read/write -> ``read``/``write`` when the kernel-supplied offset is the emulator fd's position,
  else ``pread``/``pwrite`` (see ``read``); the emulator keeps the configfs per-fd state (text
  stores per write(), binary writes buffered, per-fd read snapshots)
* flush -> ``close``.  configfs commits a buffered inblob at release, but FUSE sends RELEASE
  asynchronously: close() returns before the daemon handles it, so a generation read right after
  close() can still show the old value (seen: 1 in 2000 under load).  FLUSH is sent synchronously
  from every close(), so the emulator fd is closed (and the inblob committed) there.  An open file
  shared by dup()/fork() (a shell redirection) gets a new emulator fd, opened with the same flags,
  if another copy is used after one copy's close(); release closes whatever is left.
* interrupts: mounted with ``intr``; a request whose caller got a signal is marked interrupted,
  and the emulator's long waits (quirk report-hangs) poll ``fuse_interrupted()`` and fail EINTR,
  as the TDX driver's interruptible wait does, so a caller's deadline can end a hung request.
  Lock waits (tsm_rwsem, frag_sem, the group's inode lock) fail EINTR too, though the kernel's are
  uninterruptible: an rmdir waiting behind a hung read would otherwise keep its caller blocked for
  good, since after INTERRUPT the kernel waits for our reply only killably (emulator/locks.py).
* truncate (O_TRUNC without atomic_o_trunc, ftruncate) succeeds and changes nothing, as configfs'
  ``simple_setattr`` does for attribute data; create -> EACCES (configfs dirs have no ->create),
  mknod/unlink/rename/symlink -> EPERM.

Measurement registers (emulator/measurements.py, docs/abi-measurements.md): when the registered
provider has a group (``kernel.provider.mr``, looked up on every operation: re-registering the
provider replaces it), ``DIR/measurements`` is its sysfs directory and ``DIR/.mr-refreshes`` (0444)
its refresh count as decimal text and a newline, fixed at open.  Register files go to one
``MrFiles`` per group: open (EACCES by the file's mode, even for root, as kernfs), pread/pwrite at
the offset FUSE gives (sysfs too works at ki_pos only), release -> close (nothing to commit, so
flush does nothing); an O_APPEND write goes to the caller's position (FUSE would put it at
st_size, always EFBIG, where kernfs ignores O_APPEND); a handle whose group is gone is ENODEV.
Without a group the top directory holds only ``tsm``.

Mount options: ``direct_io`` on every file, so the page cache neither hides per-read semantics nor
caps reads at st_size (binary attributes report size 0); ``attr_timeout``, ``entry_timeout`` and
``negative_timeout`` are 0, so mkdir/rmdir and visibility changes show at once.  fd operations
of a removed item arrive without a path and still reach the emulator (ENOENT, like frag_dead).

Trace (``emulate ... --trace FILE``, frontend/trace.py): every operation on the report tree as one
JSON line, with the calling process (mfusepy's ``fuse_get_context``), for ``tsm-conformance client``.
The traced methods are wrapped on the instance (``TRACED``); outside the report group nothing is
recorded.

Why mfusepy: it is a pure-ctypes binding to libfuse3 (no compiler, no libfuse3-dev, no trio), and
its high-level API runs libfuse's multi-threaded loop, so concurrent syscalls reach the emulator
concurrently, which the concurrency checks need.  pyfuse3 would need libfuse3-dev, a C build and
trio.  What FUSE itself cannot carry (zero-length writes, lseek) is listed in target/fuse_limits.py.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import signal
import stat as st
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..emulator import Kernel, boot, parse_spec
from ..emulator.measurements import MrFiles, MrGroup
from .trace import Trace, errno_text, flags_text, thread_group, write_fields

REPORT = "/tsm/report"
FIXED_DIRS = ("/", "/tsm")
MEASUREMENTS = "/measurements"  # the provider's register group, when it has one (target/live.py finds it)
REFRESHES = "/.mr-refreshes"  # the group's refresh count, as tsm_test's mr_refreshes parameter gives it
MAX_THREADS = 16  # libfuse worker threads: concurrent syscalls reach the emulator concurrently


class FuseUnavailable(Exception):
    """FUSE cannot be used here (one line, for the CLI's exit 2)."""


def _load_mfusepy() -> Any:
    # Prefer libfuse3 even when libfuse2 is installed too (mfusepy looks for "fuse" first).
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy
    except ImportError as e:
        raise FuseUnavailable(f"mfusepy is not installed ({e})") from None
    except (OSError, AttributeError) as e:  # no libfuse, or one mfusepy cannot use
        raise FuseUnavailable(f"libfuse3 not found by ctypes ({e}): apt-get install fuse3") from None
    return mfusepy


def unavailable_reason(mountpoint: str | None = None) -> str | None:
    """Why a mount cannot work here (None when it should): checked before libfuse prints its own."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse (modprobe fuse; in a container pass --device /dev/fuse)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"cannot open /dev/fuse ({os.strerror(e.errno or 0)})"
    try:
        _load_mfusepy()
    except FuseUnavailable as e:
        return str(e)
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        return "not root and fusermount3 is not installed (apt-get install fuse3)"
    return None if mountpoint is None else mountpoint_problem(mountpoint)


def mountpoint_problem(mountpoint: str) -> str | None:
    """Why ``mountpoint`` cannot take the mount (a usage mistake, not missing FUSE), or None."""
    if not os.path.exists(mountpoint):
        return f"{mountpoint} does not exist: give an empty directory"
    if not os.path.isdir(mountpoint):
        return f"{mountpoint} is not a directory"
    if os.listdir(mountpoint):
        return f"{mountpoint} is not empty: give an empty directory"
    if os.path.ismount(mountpoint):
        return f"{mountpoint} is already a mount point"
    return None


def _err(num: int) -> OSError:
    return OSError(num, os.strerror(num))


class EmulatorFS:
    """The FUSE operations over one emulated Kernel (mfusepy calls these from libfuse threads)."""

    use_ns = True

    def __init__(self, kernel: Kernel, on_mounted: Callable[[], None] | None = None,
                 trace: Trace | None = None, context: Callable[[], tuple[int, int, int]] | None = None) -> None:
        self.k = kernel
        self.on_mounted = on_mounted
        self.trace = trace
        self.context = context or (lambda: (0, 0, 0))  # (uid, gid, pid) of the caller: mfusepy.fuse_get_context
        self.now = time.time_ns()
        self._files: dict[int, _Handle | _MrHandle | _TextHandle] = {}  # FUSE file handle -> open file
        self._dirs: dict[int, str] = {}  # FUSE directory handle -> its path (readdir gets none)
        self._fhs = itertools.count(1)
        self._lock = threading.Lock()
        self._mr: MrFiles | None = None  # the group's sysfs directory, for the group it was made for
        self._mr_lock = threading.Lock()  # MrFiles' fd table is not thread-safe: open/close under it
        if trace is not None:  # mfusepy looks the operations up on the instance at every call
            for op in TRACED:
                setattr(self, op, self._traced(op, getattr(self, op)))

    # ---------------------------------------------------------------- the trace (frontend/trace.py)
    def _trace_path(self, path: str | None, fh: int | None) -> str | None | object:
        """The operation's path relative to the report group (None: an fd operation whose file is
        unknown), or _UNTRACED for everything outside the group."""
        if path is None and fh is not None:
            h = self._files.get(fh)
            if isinstance(h, _Handle):
                return h.rel
            path = self._dirs.get(fh)
            if path is None:
                return _UNTRACED if h is not None else None
        if path is None:
            return None
        try:
            rel = self._rel(path)
        except OSError:
            return _UNTRACED
        return _UNTRACED if rel is None else rel

    def _traced(self, op: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        trace = self.trace
        assert trace is not None
        name = TRACED[op]

        def call(*args: Any) -> Any:
            path, fh = args[0], (args[-1] if op in FH_LAST else None)
            if op in ("getattr", "readdir") and len(args) > 1:
                fh = args[1]
            rel = self._trace_path(path, fh)
            if rel is _UNTRACED:
                return fn(*args)
            fields: dict[str, Any] = {}
            if op in FH_LAST:
                fields["fh"] = fh
            if op == "open":
                fields["flags"] = flags_text(args[1])
            elif op == "read":
                fields.update(offset=args[2], size=args[1])
            elif op == "write":
                fields.update(offset=args[2], size=len(args[1]), **write_fields(args[1]))
            pid = thread_group(self.context()[2])
            try:
                result = fn(*args)
            except OSError as e:
                trace.record(pid, name, rel, **fields, result=errno_text(e))  # type: ignore[arg-type]
                raise
            if op == "open":
                fields["fh"] = result
            if op == "read":
                trace.record(pid, name, rel, **fields, len=len(result), result=len(result))  # type: ignore[arg-type]
            elif op == "readdir":
                trace.record(pid, name, rel, names=[n for n in result if n not in (".", "..")],  # type: ignore[arg-type]
                             result=0)
            else:
                trace.record(pid, name, rel, **fields, result=result if isinstance(result, int) else 0)  # type: ignore[arg-type]
            return result
        return call

    # ---------------------------------------------------------------- paths
    @staticmethod
    def _rel(path: str) -> str | None:
        """The path relative to the report group, or None for the fixed directories above it."""
        if path == REPORT:
            return ""
        if path.startswith(REPORT + "/"):
            return path[len(REPORT) + 1:]
        if path in FIXED_DIRS:
            return None
        raise _err(errno.ENOENT)

    @staticmethod
    def _mr_name(path: str) -> str | None:
        """The path relative to measurements/ ("" for the directory), or None outside it."""
        if path == MEASUREMENTS:
            return ""
        if path.startswith(MEASUREMENTS + "/"):
            return path[len(MEASUREMENTS) + 1:]
        return None

    def _group(self) -> MrGroup | None:
        """The registered provider's group, looked up on every operation: re-registering the
        provider (the emulator's control) replaces it."""
        return getattr(self.k.provider, "mr", None)

    def _mr_files(self) -> MrFiles:
        """The sysfs directory of the current group (ENOENT without one); one MrFiles per group."""
        group = self._group()
        if group is None:
            raise _err(errno.ENOENT)
        with self._lock:
            if self._mr is None or self._mr.group is not group:
                self._mr = MrFiles(group)
            return self._mr

    def _refreshes_text(self) -> bytes:
        group = self._group()
        if group is None:
            raise _err(errno.ENOENT)
        return b"%d\n" % group.refreshes

    def _dirattr(self) -> dict[str, int]:
        return self._attrs(st.S_IFDIR | 0o755, 0)

    def _attrs(self, mode: int, size: int) -> dict[str, int]:
        t = self.now
        return {"st_mode": mode, "st_size": size, "st_nlink": 2 if st.S_ISDIR(mode) else 1,
                "st_uid": 0, "st_gid": 0, "st_atime": t, "st_mtime": t, "st_ctime": t, "st_blksize": 4096}

    # ---------------------------------------------------------------- lifecycle
    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is not None:  # also given as -o options; set here in case libfuse ignored them
            config.entry_timeout = config.attr_timeout = config.negative_timeout = 0.0
            config.direct_io = 1
            # Answer FUSE_INTERRUPT: a caller whose syscall got a signal (the suite's deadline)
            # waits only killably until we reply, so the emulator's long waits poll
            # fuse_interrupted() and fail EINTR.  libfuse also pthread_kill()s the worker with
            # intr_signal; serve() ignores it (the poll, not the signal, ends the wait).
            config.intr = 1
            config.intr_signal = signal.SIGUSR1
            # Operations on an open file get no path, so libfuse takes no path lock for them: its
            # locks would make an rmdir wait, inside libfuse and deaf to INTERRUPT, for a hung read
            # on one of the item's files.  The emulator's own frag_sem makes it wait as configfs
            # does, interruptibly (emulator/locks.py).
            config.nullpath_ok = 1
        if self.on_mounted:
            self.on_mounted()

    def destroy(self, path: str) -> None:
        if self.trace is not None:
            self.trace.close()
        with self._lock:
            handles, self._files = list(self._files.values()), {}
        for h in handles:
            try:
                self._close(h)
            except OSError:
                pass

    # ---------------------------------------------------------------- metadata
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        if path is None:  # fstat (nullpath_ok: libfuse gives no path with a handle)
            if fh is None:
                raise _err(errno.ENOENT)
            path = self._dirs[fh] if fh in self._dirs else self._handle(fh).path
        name = self._mr_name(path)
        if name is not None:
            return self._attrs(*self._mr_files().stat(name))
        if path == REFRESHES:
            return self._attrs(st.S_IFREG | 0o444, len(self._refreshes_text()))
        rel = self._rel(path)
        if rel is None:
            return self._dirattr()
        mode, size = self.k.stat(rel)
        return self._attrs(mode, size)

    def readdir(self, path: str | None, fh: int) -> list[str]:
        if path is None:
            path = self._dirs.get(fh)
            if path is None:
                raise _err(errno.EBADF)
        name = self._mr_name(path)
        if name is not None:
            return [".", "..", *self._mr_files().listdir(name)]
        if path == REFRESHES:
            raise _err(errno.ENOTDIR)
        rel = self._rel(path)
        if rel is None:
            if path != "/":
                return [".", "..", "report"]
            return [".", "..", "tsm", *(("measurements", ".mr-refreshes") if self._group() is not None else ())]
        return [".", "..", *self.k.listdir(rel)]

    def opendir(self, path: str) -> int:
        name = self._mr_name(path)
        if name is not None:
            self._mr_files().listdir(name)  # ENOENT without a group, ENOTDIR for a register
        elif path == REFRESHES:
            self._refreshes_text()
            raise _err(errno.ENOTDIR)
        elif (rel := self._rel(path)) is not None:
            self.k.listdir(rel)  # ENOENT / ENOTDIR as the emulator says
        with self._lock:
            fh = next(self._fhs)
            self._dirs[fh] = path
        return fh

    def releasedir(self, path: str | None, fh: int) -> int:
        with self._lock:
            self._dirs.pop(fh, None)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    # ---------------------------------------------------------------- directories
    def mkdir(self, path: str, mode: int) -> int:
        if path in FIXED_DIRS or path == REPORT:
            raise _err(errno.EEXIST)
        name = self._mr_name(path)
        if (name == "" or path == REFRESHES) and self._group() is not None:
            raise _err(errno.EEXIST)
        if name:  # sysfs: kernfs directories without syscall ops refuse mkdir
            self._mr_files()
            raise _err(errno.EPERM)
        if os.path.dirname(path) in FIXED_DIRS:  # configfs' root and the tsm subsystem: no make_item
            raise _err(errno.EPERM)
        rel = self._rel(path)
        assert rel is not None
        self.k.mkdir(rel)
        return 0

    def rmdir(self, path: str) -> int:
        name = self._mr_name(path)
        if name is not None or path == REFRESHES:
            mode = self.getattr(path)["st_mode"]  # ENOENT without a group or for an unknown register
            raise _err(errno.EPERM if st.S_ISDIR(mode) else errno.ENOTDIR)  # sysfs: no rmdir
        rel = self._rel(path)
        if rel is None or rel == "":
            raise _err(errno.EPERM)  # the configfs root, the subsystem, the default group
        self.k.rmdir(rel)
        return 0

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        raise _err(errno.EACCES)  # configfs directories have no ->create

    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise _err(errno.EPERM)

    def unlink(self, path: str) -> int:
        raise _err(errno.EPERM)

    def rename(self, old: str, new: str) -> int:
        raise _err(errno.EPERM)

    def symlink(self, target: str, source: str) -> int:
        raise _err(errno.EPERM)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        if path is not None:  # existence only: configfs' simple_setattr leaves the attribute be
            self.getattr(path)
        return 0

    # ---------------------------------------------------------------- files
    def open(self, path: str, flags: int) -> int:
        name = self._mr_name(path)
        h: _Handle | _MrHandle | _TextHandle
        if name == "":
            self._mr_files()
            raise _err(errno.EISDIR)
        if name is not None:
            files = self._mr_files()
            with self._mr_lock:  # EACCES by the file's mode, as kernfs does even for root
                h = _MrHandle(path, files, files.open(name, flags), flags)
        elif path == REFRESHES:
            text = self._refreshes_text()  # generated now; direct_io keeps reads from going stale
            if flags & os.O_ACCMODE != os.O_RDONLY:
                raise _err(errno.EACCES)  # 0444, and sysfs checks the mode even for root
            h = _TextHandle(path, text)
        else:
            rel = self._rel(path)
            if rel is None:
                raise _err(errno.EISDIR)
            h = _Handle(path, rel, flags, self.k.open(rel, flags))
        with self._lock:
            fh = next(self._fhs)
            self._files[fh] = h
        return fh

    def _efd(self, fh: int) -> int:
        """The emulator fd behind a FUSE handle; reopened when an earlier flush closed it (the
        handle is shared by dup()/fork() and another copy is still in use)."""
        h = self._report_handle(fh)
        with h.lock:
            if h.efd is None:
                if h.reopen_errno:
                    raise _err(h.reopen_errno)
                try:
                    h.efd = self.k.open(h.rel, h.flags & ~(os.O_TRUNC | os.O_CREAT | os.O_EXCL))
                    h.pos = 0
                except OSError as e:
                    h.reopen_errno = e.errno or errno.EIO
                    raise
            return h.efd

    def _handle(self, fh: int) -> _Handle | _MrHandle | _TextHandle:
        try:
            return self._files[fh]
        except KeyError:
            raise _err(errno.EBADF) from None

    def _report_handle(self, fh: int) -> _Handle:
        h = self._handle(fh)
        if not isinstance(h, _Handle):
            raise _err(errno.EBADF)
        return h

    def _live(self, h: _MrHandle) -> MrFiles:
        """The handle's directory while its group is still registered; after the provider went
        (or was re-registered) kernfs has deactivated the file: ENODEV, as kernfs_get_active."""
        if self._group() is not h.files.group:
            raise _err(errno.ENODEV)
        return h.files

    # FUSE gives every read and write an offset, whether the caller used read() or pread().  configfs
    # sees only ki_pos too, so for faithful emulation the two are the same; but quirks (pread-ignores-
    # offset, inblob-last-write-wins, ...) are written against the emulator's file position.  So an
    # access at the position the emulator's fd is at goes through read()/write(), which move it as the
    # caller's file position moved; any other offset is a pread()/pwrite().
    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        m = self._handle(fh)
        if isinstance(m, _MrHandle):  # sysfs reads at ki_pos, which is the offset FUSE gives
            data = self._live(m).pread(m.fd, size, offset)
            m.pos = offset + len(data)
            return data
        if isinstance(m, _TextHandle):
            return m.data[offset:offset + size]
        efd, h = self._efd(fh), self._report_handle(fh)
        if offset != h.pos:
            return self.k.pread(efd, size, offset)
        data = self.k.read(efd, size)
        h.pos += len(data)
        return data

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        m = self._handle(fh)
        if isinstance(m, _MrHandle):
            files = self._live(m)
            if m.flags & os.O_APPEND:
                # FUSE puts an O_APPEND write at st_size (generic_write_checks), which would always
                # be EFBIG; kernfs ignores O_APPEND and writes at f_pos, which the handle tracks
                # (the last read's end, or the last write's): `>>` extends as on sysfs.
                offset = m.pos
            n = files.pwrite(m.fd, data, offset)
            m.pos = offset + n
            return n
        if isinstance(m, _TextHandle):
            raise _err(errno.EBADF)  # opened read-only
        efd, h = self._efd(fh), self._report_handle(fh)
        if offset != h.pos:
            return self.k.pwrite(efd, data, offset)
        n = self.k.write(efd, data)
        h.pos += n
        return n

    def flush(self, path: str | None, fh: int) -> int:
        """Every close(): close the emulator fd now (the binary-write commit point; its result is
        dropped, as configfs drops it), because RELEASE would arrive too late (module docstring).
        Register files and the refresh count have nothing to commit: their handles last until
        release."""
        m = self._handle(fh)
        if not isinstance(m, _Handle):
            return 0
        h = m
        with h.lock:
            efd, h.efd = h.efd, None
        if efd is not None:
            self.k.close(efd)
        return 0

    def release(self, path: str | None, fh: int) -> int:
        with self._lock:
            h = self._files.pop(fh, None)
        self._close(h)
        return 0

    def _close(self, h: _Handle | _MrHandle | _TextHandle | None) -> None:
        if isinstance(h, _MrHandle):
            with self._mr_lock:
                h.files.close(h.fd)
        elif isinstance(h, _Handle) and h.efd is not None:
            self.k.close(h.efd)

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        return 0


#: the traced operations (method -> the trace's op name) and those whose last argument is the handle
TRACED = {"mkdir": "mkdir", "rmdir": "rmdir", "getattr": "getattr", "readdir": "readdir", "open": "open",
          "read": "read", "write": "write", "flush": "close", "release": "release"}
FH_LAST = frozenset({"read", "write", "flush", "release"})
_UNTRACED = object()


class _Handle:
    """One open file description: its path, flags and current emulator fd."""

    __slots__ = ("path", "rel", "flags", "efd", "pos", "reopen_errno", "lock")

    def __init__(self, path: str, rel: str, flags: int, efd: int) -> None:
        self.path, self.rel, self.flags = path, rel, flags
        self.efd: int | None = efd  # None once flush closed it (reopened by _efd when used again)
        self.pos = 0  # where the emulator fd's file position is
        self.reopen_errno = 0
        self.lock = threading.Lock()


class _MrHandle:
    """An open register file: its group's MrFiles and fd there, and the caller's file position
    as the offsets FUSE sent show it (used for O_APPEND writes only)."""

    __slots__ = ("path", "files", "fd", "flags", "pos")

    def __init__(self, path: str, files: MrFiles, fd: int, flags: int) -> None:
        self.path, self.files, self.fd, self.flags = path, files, fd, flags
        self.pos = 0


class _TextHandle:
    """An open read-only text file whose content was fixed at open (``.mr-refreshes``)."""

    __slots__ = ("path", "data")

    def __init__(self, path: str, data: bytes) -> None:
        self.path, self.data = path, data


def serve(spec: str, mountpoint: str, announce: Callable[[str], None] | None = None,
          debug: bool = False, trace: str | None = None) -> None:
    """Mount ``spec``'s emulator at ``mountpoint`` and serve in the foreground until SIGINT/SIGTERM
    (libfuse's handlers end the loop and unmount).  FuseUnavailable or ValueError (bad spec).
    ``trace``: a file to write the operation trace to (frontend/trace.py)."""
    kernel = boot(parse_spec(spec))  # ValueError for a bad spec, before anything is mounted
    why = unavailable_reason()
    if why:
        raise FuseUnavailable(why)
    why = mountpoint_problem(mountpoint)
    if why:
        raise ValueError(f"--mount {why}")
    mfusepy = _load_mfusepy()
    mnt = os.path.abspath(mountpoint)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # libfuse's intr_signal (see init_with_config)
    interrupted = getattr(getattr(mfusepy, "_libfuse", None), "fuse_interrupted", None)
    if interrupted is not None:  # called from the libfuse thread serving the request
        kernel.interrupted = lambda: bool(interrupted())

    was_mounted = threading.Event()

    def mounted() -> None:
        was_mounted.set()
        if announce:
            announce(f"mounted {spec} at {mountpoint} (Ctrl-C to unmount)")

    sink = None
    if trace is not None:
        try:
            sink = Trace(trace)
        except OSError as e:
            raise ValueError(f"--trace {trace}: {e.strerror}") from None
    ops = EmulatorFS(kernel, mounted, trace=sink, context=mfusepy.fuse_get_context)
    try:
        mfusepy.FUSE(ops, mnt, foreground=True, nothreads=False, debug=debug,
                     fsname="tsm-emulator", subtype="tsm",
                     attr_timeout=0, entry_timeout=0, negative_timeout=0, direct_io=True,
                     max_threads=MAX_THREADS, max_idle_threads=MAX_THREADS)
    except RuntimeError as e:
        # fuse_main_real's status: 1-6 before or while mounting (libfuse printed why); 8 when the
        # loop ended with an error, which includes every SIGINT/SIGTERM: a normal end once mounted.
        if not was_mounted.is_set():
            raise FuseUnavailable(f"mounting {mnt} failed (libfuse status {e}; its message is above)") from None
    finally:
        if sink is not None:
            sink.close()
        sys.stdout.flush()
