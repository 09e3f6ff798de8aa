"""The emulated kernel: the configfs-tsm report core (drivers/virt/coco/guest/report.c) and the
configfs file mechanics it relies on (fs/configfs/file.c, dir.c), modelled from docs/abi.md and
docs/real-kernels.md, never from the profiles.

Layers inside this module, bottom up:
* ``ReportItem``: one ``tsm_report_state`` (generation pair, desc, cached blobs, frag_sem/dead).
* ``Kernel`` tsm core methods (``_show``, ``_store``, ``_inblob_write``, ``_report_read``): the
  attribute callbacks, under one global ``tsm_rwsem``.
* ``Kernel`` VFS methods (``mkdir`` ... ``close``): configfs semantics per fd: text stores on every
  write(), binary writes buffered and committed at final close with the result dropped, binary
  reads sized then filled under separate lock acquisitions (the size-then-fill race stays real).

Quirks (named faults, ``quirks.py``) are checked inline where the faithful code would differ.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from dataclasses import dataclass

from . import kstrtox
from .era import Era
from .. import coop
from .locks import Interrupted, RWLock, locked, mutex
from .providers import BIN_ATTRS, DEFAULT_TYPE, EXTRA_TYPE, TEXT_ATTRS, Blobs, Desc, Provider

NAME_MAX = 255
SIMPLE_ATTR_SIZE = 4096
INBLOB_MAX = 64
PRIVLEVEL_MAX = 3
SLOW_PROVIDER_SECONDS = 3.0  # client_fault=slow: how long the first report of an item takes
PREEMPT_WINDOW = 0.0002  # seconds between sizing and filling a binary read, when threads compete
HANG_SECONDS = 3600.0  # quirk report-hangs: far past any operation deadline
RO_TEXT = ("generation", "provider", "privlevel_floor")
S_IFDIR, S_IFREG = 0o040000, 0o100000
O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = os.O_ACCMODE, os.O_RDONLY, os.O_WRONLY, os.O_RDWR  # (names read per open)
READS, WRITES = frozenset((O_RDONLY, O_RDWR)), frozenset((O_WRONLY, O_RDWR))  # access modes that read, write


class KernelOops(Exception):
    """A NULL dereference the real kernel would oops on (pre-6.16 provider-gone paths)."""


def _err(num: int) -> OSError:
    return OSError(num, os.strerror(num))


@dataclass(slots=True)
class Gen:
    write: int = 0
    read: int = 0


class ReportItem:
    """One tsm_report_state (a plain class: a dataclass's default factories cost most of a mkdir)."""

    __slots__ = ("name", "visible", "gen", "desc", "blobs", "dead", "frag_sem", "subdirs", "report_lock")

    def __init__(self, name: str, visible: tuple[str, ...], gen: Gen) -> None:
        self.name, self.visible, self.gen = name, visible, gen
        self.desc = Desc()
        self.blobs: Blobs | None = None
        self.dead = False
        self.frag_sem = RWLock()
        self.subdirs: set[str] = set()
        self.report_lock = threading.Lock()  # quirk per-item-lock


class OpenFile:
    """struct configfs_buffer plus the file position."""

    __slots__ = ("item", "attr", "kind", "rd", "wr", "mutex", "pos", "needs_read_fill", "page", "bin_buffer",
                 "read_in_progress", "write_in_progress", "stored_once")

    def __init__(self, item: ReportItem | None, attr: str, kind: str, rd: bool, wr: bool) -> None:
        self.item, self.attr, self.kind = item, attr, kind  # kind: text | binary | dir
        self.rd, self.wr = rd, wr
        self.mutex = threading.Lock()
        self.pos = 0
        self.needs_read_fill = True
        self.page = b""
        self.bin_buffer: bytearray | None = None
        self.read_in_progress = False
        self.write_in_progress = False
        self.stored_once = False


def attr_kind(attr: str) -> str:
    return "binary" if attr in BIN_ATTRS else "text"


WRITE_ONLY = frozenset(("inblob", "privlevel", "service_provider", "service_guid", "service_manifest_version"))


def attr_mode(attr: str) -> int:
    """CONFIGFS_ATTR_RO/CONFIGFS_BIN_ATTR_RO give 0444, *_WO give 0200 (include/linux/configfs.h)."""
    return 0o200 if attr in WRITE_ONLY else 0o444


class Kernel:
    def __init__(self, era: Era, quirks: frozenset[str] = frozenset(), gen_bits: int = 64,
                 init_on_alloc: bool = True, size_fill_fix: bool = False, client_fault: str = "none") -> None:
        self.era = era
        self.client_fault = client_fault  # params.py: what a client's first outblob read meets
        # No kernel has a fix for the size-then-fill race yet (docs/abi.md §8.14); this models one.
        self.size_fill_fix = size_fill_fix
        self.q = quirks
        self.gen_mask = (1 << gen_bits) - 1
        self.gen_bits = gen_bits
        self.init_on_alloc = init_on_alloc
        self._visible_of: dict[tuple[type, frozenset[tuple[str, str]]], tuple[str, ...]] = {}  # _visible_set's
        self.reset(None)
        # Set by a frontend that learns when the caller gave up (FUSE: fuse_interrupted()); long
        # waits poll it and fail EINTR, as the TDX driver's interruptible quote wait does, and so
        # do lock waits (locks.py says why a FUSE mount needs that).
        self.interrupted: Interrupted = None

    def reset(self, provider: Provider | None) -> None:
        """Back to the state a boot leaves, with ``provider`` registered (None: no provider): no
        items, open files or log lines, no quirk state, new locks and fd numbers from 3 again; the
        configuration (era, quirks, generation width, init_on_alloc, the size-then-fill fix, the
        frontend's ``interrupted``) stays.  Cheaper than booting anew for callers that run many
        short programs (the fuzz targets); no other thread may still be inside the kernel (after a
        hang, boot a new one instead).  ``provider`` should be a fresh one: a provider carries state
        of its own (report counters, parameters changed at run time)."""
        self.tsm_rwsem = RWLock()
        self.provider: Provider | None = None
        self._visible: tuple[Provider, tuple[str, ...]] | None = None  # _visible_set's answer
        self.provider_count = 0  # 6.16+ atomic_t provider.count
        self.items: dict[str, ReportItem] = {}
        self.dmesg: list[str] = []
        self._shared_gen = Gen()  # quirk shared-generation
        self._taken: set[str] = set()  # quirk rmdir-name-leak
        self._removed: set[str] = set()  # names rmdir'ed (quirk rmdir-read-eio)
        self._graveyard: dict[str, ReportItem] = {}  # quirk rmdir-keeps-state
        self._dir_lock = threading.Lock()  # the report group's inode lock (VFS mkdir/rmdir)
        self._racers: dict[str, int] = {}  # quirk mkdir-race: mkdirs past their lookup, per name
        # (a Condition costs more than the rest of a reset: only the quirk's kernels have one)
        self._race_cond = threading.Condition() if "mkdir-race" in self.q else None
        self._shared_desc = Desc()  # quirk shared-inblob
        self._fds: dict[int, OpenFile] = {}
        self._faulted: set[int] = set()  # items (id) whose first outblob read met the client fault
        self._name_taken = False  # client_fault=name-taken: the first new name was taken
        self._fd_lock = threading.Lock()
        self._next_fd = itertools.count(3)
        self._callers: set[int] = set()  # threads that have called in (_competing)
        if provider is not None:
            self.register(provider)

    # ---------------------------------------------------------------- provider registration
    def register(self, provider: Provider) -> None:
        with self.tsm_rwsem.write(self.interrupted):
            if self.provider is not None:
                self.dmesg.append(f'{self.era.core_module}: "{self.provider.name}" ops already registered')
                raise _err(errno.EBUSY)
            if self.era.provider_refcount_fix and self.provider_count:
                self.dmesg.append(f"{self.era.core_module}: configfs/tsm/report not empty")
                raise _err(errno.EBUSY)
            provider.quirks = self.q
            self.provider = provider

    def unregister(self) -> None:
        with self.tsm_rwsem.write(self.interrupted):
            if self.provider is None:
                raise _err(errno.EBUSY)
            if self.provider_count:
                self.dmesg.append(f'{self.era.core_module}: "{self.provider.name}" unregistered '
                                  "with items present in configfs/tsm/report")
            self.provider = None

    def _competing(self) -> bool:
        """Whether more than one thread has called into this kernel since boot or reset: only
        then is a preemption window worth giving (Python threads switch only on blocking calls or
        every few ms).  Threads of the process that never call in (a watchdog) do not count; the
        programs of a cooperative schedule (coop.py) share one thread and always compete."""
        return len(self._callers) > 1 or coop.current() is not None

    def wait_interruptible(self, seconds: float) -> None:
        """Sleep like an interruptible kernel wait: EINTR as soon as ``interrupted`` says so."""
        s = coop.current()
        if s is not None:  # a cooperative schedule's program: the others run meanwhile
            s.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.interrupted is not None and self.interrupted():
                raise _err(errno.EINTR)
            time.sleep(min(left, 0.05))

    def _oops(self, where: str) -> KernelOops:
        self.dmesg.append(f"BUG: kernel NULL pointer dereference in {where}")
        return KernelOops(f"NULL pointer dereference in {where} (provider gone, pre-6.16 kernel)")

    # ---------------------------------------------------------------- generation
    def _advance(self, item: ReportItem) -> None:
        """try_advance_write_generation(): EBUSY when one more write would make the counters
        equal by wrap-around without an interim read; caller holds tsm_rwsem for write."""
        g = item.gen
        if g.write == (g.read - 1) & self.gen_mask and "wrap-guard-missing" not in self.q:
            raise _err(errno.EBUSY)
        g.write = (g.write + 1) & self.gen_mask

    # ---------------------------------------------------------------- text attribute callbacks
    def _show(self, item: ReportItem, attr: str) -> bytes:
        with self.tsm_rwsem.read(self.interrupted):
            if attr == "generation":
                extra = 1 if "generation-starts-at-1" in self.q else 0
                return b"%d\n" % (item.gen.write + extra)
            if attr in ("provider", "privlevel_floor"):
                p = self.provider
                if p is None:
                    if self.era.provider_refcount_fix:
                        raise _err(errno.ENXIO)
                    raise self._oops(f"tsm_report_{attr}_show")
                if attr == "provider":
                    return p.name.encode() + (b"" if "provider-no-newline" in self.q else b"\n")
                nl = b"" if "provider-no-newline" in self.q else b"\n"
                return b"%d" % p.privlevel_floor + nl
            if attr == "debug":  # quirk extra-attribute
                return b"0\n"
            # quirk wo-readable: a write-only attribute leaks its stored value
            d = item.desc
            if attr == "privlevel":
                return b"%d\n" % d.privlevel
            if attr == "service_provider":
                return (d.service_provider or b"") + b"\n"
            if attr == "service_manifest_version":
                return b"%d\n" % d.service_manifest_version
            return d.service_guid.hex().encode() + b"\n"

    def _parse_uint(self, buf: bytes) -> int:
        """kstrtouint(buf, 0) for privlevel and service_manifest_version, or a quirk's parser."""
        if "kstrtouint-lenient" in self.q:  # simple_strtoul-like: whitespace and junk ignored
            digits = buf.split(b"\0")[0].strip().lstrip(b"+")
            n = len(digits) - len(digits.lstrip(b"0123456789"))
            if not n:
                raise _err(errno.EINVAL)
            return int(digits[:n]) & 0xFFFFFFFF
        if "privlevel-decimal-only" in self.q:
            return kstrtox.kstrtouint(buf, 10)
        if "privlevel-overflow-wraps" in self.q:
            return kstrtox.kstrtoull(buf) & 0xFFFFFFFF
        return kstrtox.kstrtouint(buf, 0)

    def _store(self, item: ReportItem, attr: str, buf: bytes) -> int:
        if attr == "privlevel":
            val = self._parse_uint(buf)
            if not self.era.provider_refcount_fix:
                p = self.provider  # read without tsm_rwsem before the fix (docs/abi.md §8.2)
                if p is None:
                    raise self._oops("tsm_report_privlevel_store")
                with self.tsm_rwsem.write(self.interrupted):
                    self._privlevel_locked(item, p, val)
                return len(buf)
            with self.tsm_rwsem.write(self.interrupted):
                if self.provider is None:
                    raise _err(errno.ENXIO)
                self._privlevel_locked(item, self.provider, val)
            return len(buf)
        if attr == "service_provider":
            with self.tsm_rwsem.write(self.interrupted):
                self._advance(item)
                sp = buf[:-1] if buf.endswith(b"\n") else buf
                item.desc.service_provider = sp.split(b"\0")[0]  # kstrndup stops at NUL
            return len(buf)
        if attr == "service_guid":
            with self.tsm_rwsem.write(self.interrupted):
                if "guid-reject-no-bump" in self.q:
                    item.desc.service_guid = kstrtox.guid_parse(buf)
                    self._advance(item)
                    return len(buf)
                self._advance(item)  # bumped and reset before parsing (docs/abi.md §8.5)
                item.desc.service_guid = kstrtox.GUID_NULL
                item.desc.service_guid = kstrtox.guid_parse(buf)
            return len(buf)
        if attr == "service_manifest_version":
            val = self._parse_uint(buf)
            with self.tsm_rwsem.write(self.interrupted):
                self._advance(item)
                item.desc.service_manifest_version = val
            return len(buf)
        return len(buf)  # quirk ro-writable: the write is swallowed

    def _privlevel_locked(self, item: ReportItem, p: Provider, val: int) -> None:
        if "privlevel-reject-bumps" in self.q:
            self._advance(item)
        lo = 0 if "privlevel-floor-unchecked" in self.q else p.privlevel_floor
        hi = 1 << 32 if "privlevel-max-unchecked" in self.q else PRIVLEVEL_MAX
        if not lo <= val <= hi:
            raise _err(errno.EINVAL)
        if "privlevel-no-generation" not in self.q and "privlevel-reject-bumps" not in self.q:
            self._advance(item)
        item.desc.privlevel = val

    # ---------------------------------------------------------------- binary attribute callbacks
    def _inblob_write(self, item: ReportItem, data: bytes, intr: bool = True) -> None:
        with self.tsm_rwsem.write(self.interrupted if intr else None):
            self._advance(item)
            item.desc.inblob_len = len(data)
            item.desc.inblob[: len(data)] = data  # the tail keeps older bytes (verified N1)

    def _select(self, item: ReportItem, attr: str) -> bytes:
        b = item.blobs
        assert b is not None
        blob = {"outblob": b.outblob, "auxblob": b.auxblob, "manifestblob": b.manifestblob}[attr]
        return blob or b""

    def _cached_ok(self, item: ReportItem, attr: str) -> bool:
        b = item.blobs
        if b is None or b.outblob is None or "no-cache" in self.q:
            return False
        if attr == "auxblob" and "auxblob-regenerates" in self.q:
            return False
        return item.gen.read == item.gen.write or "stale-outblob" in self.q

    def _report_read(self, item: ReportItem, attr: str) -> bytes:
        """tsm_report_read(): the cached fast path under the read lock, else regenerate under the
        write lock.  Returns the selected blob; the configfs layer takes len() or the bytes."""
        with self.tsm_rwsem.read(self.interrupted):
            if not item.desc.inblob_len:
                raise _err(errno.ENODATA if "read-before-inblob-enodata" in self.q else errno.EINVAL)
            if "unregister-drops-cache" in self.q and self.provider is None:
                raise _err(errno.ENXIO)
            if self._cached_ok(item, attr):
                return self._select(item, attr)
        if "unlocked-generation" in self.q:
            return self._report_read_unlocked(item, attr)
        lock = (locked(item.report_lock, self.interrupted) if "per-item-lock" in self.q
                else self.tsm_rwsem.write(self.interrupted))
        with lock:
            p = self.provider
            if p is None:
                raise _err(errno.ENXIO if self.era.provider_refcount_fix else errno.ENOTTY)
            if not item.desc.inblob_len:
                raise _err(errno.EINVAL)
            if self._cached_ok(item, attr):  # another thread already generated it
                return self._select(item, attr)
            item.blobs = None
            if "report-hangs" in self.q:  # a host that never answers, under the write lock
                self.wait_interruptible(HANG_SECONDS)
            coop.point()  # the provider waits for the firmware: another task may run
            try:
                item.blobs = p.report_new(item.desc)
            except OSError as e:
                if "report-errno-eio" in self.q:
                    raise _err(errno.EIO) from e
                raise
            item.gen.read = item.gen.write
            if "read-bumps-generation" in self.q:
                item.gen.write = (item.gen.write + 1) & self.gen_mask
                item.gen.read = item.gen.write
            return self._select(item, attr)

    def _report_read_unlocked(self, item: ReportItem, attr: str) -> bytes:
        """Quirk unlocked-generation: report_new runs outside tsm_rwsem and the result is stamped
        with the generation current afterwards, so a write during generation goes unnoticed."""
        with self.tsm_rwsem.read(self.interrupted):
            p, desc = self.provider, Desc(item.desc.privlevel, bytearray(item.desc.inblob), item.desc.inblob_len,
                                          item.desc.service_provider, item.desc.service_guid,
                                          item.desc.service_manifest_version)
        if p is None:
            raise _err(errno.ENXIO)
        blobs = p.report_new(desc)
        s = coop.current()
        if s is not None:  # the other programs run until one wrote
            seen = item.gen.write
            s.window(lambda: item.gen.write != seen)
        elif self._competing():
            # The window the missing lock opens: a fixed 0.2 ms missed every writer on a loaded
            # machine, so wait (at most 20 ms) for a write to land in it.
            seen, end = item.gen.write, time.monotonic() + 0.02
            while item.gen.write == seen and time.monotonic() < end:
                time.sleep(PREEMPT_WINDOW)
        with self.tsm_rwsem.write(self.interrupted):
            item.blobs = blobs
            item.gen.read = item.gen.write
            return self._select(item, attr)

    # ---------------------------------------------------------------- path resolution
    def _split(self, path: str) -> list[str]:
        if not path:
            return []
        parts = path.split("/")
        return parts if "" not in parts else [p for p in parts if p]

    def _item(self, name: str) -> ReportItem:
        try:
            return self.items[name]
        except KeyError:
            raise _err(errno.ENOENT) from None

    def _name_ok(self, name: str) -> None:
        limit = 64 if "name-max-64" in self.q else NAME_MAX
        if len(name.encode()) > limit:
            raise _err(errno.ENAMETOOLONG)

    # ---------------------------------------------------------------- VFS operations
    def mkdir(self, path: str) -> None:
        self._callers.add(threading.get_ident())
        if "mkdir-race" in self.q:
            return self._mkdir(path)
        with locked(self._dir_lock, self.interrupted):
            return self._mkdir(path)

    def _race_window(self, name: str) -> None:
        """Quirk mkdir-race: the window between lookup and create.  Hoping the scheduler switches
        threads inside it misses under load, so a mkdir from a worker thread (the racers of
        concurrency.mkdir.one_winner; the main thread's mkdirs do not race) waits there until a
        second mkdir of the same name has passed its lookup too, for at most 1 s."""
        s = coop.current()
        if s is not None:  # a cooperative schedule: the other programs run until one got here too
            self._racers[name] = self._racers.get(name, 0) + 1
            s.window(lambda: self._racers[name] >= 2)
            return
        if threading.current_thread() is threading.main_thread():
            return
        assert self._race_cond is not None
        with self._race_cond:
            self._racers[name] = self._racers.get(name, 0) + 1
            self._race_cond.notify_all()
            self._race_cond.wait_for(lambda: self._racers[name] >= 2, timeout=1.0)

    def _mkdir(self, path: str) -> None:
        parts = self._split(path)
        for p in parts:
            self._name_ok(p)
        if not parts:
            raise _err(errno.EEXIST)
        if len(parts) == 1:
            name = parts[0]
            if name in (".", ".."):
                raise _err(errno.EEXIST)
            if name in self.items:
                if "mkdir-duplicate-ok" in self.q:
                    return
                raise _err(errno.EEXIST)
            if name in self._taken:
                raise _err(errno.EEXIST)
            if self.client_fault == "name-taken" and not self._name_taken:
                self._name_taken = True  # another process's mkdir of this name got there first
                self._make_item(name)
                raise _err(errno.EEXIST)
            if "mkdir-race" in self.q:
                self._race_window(name)  # lookup and create no longer atomic
            self._make_item(name)
            self._removed.discard(name)
            return
        item = self._item(parts[0])
        if len(parts) == 2:
            if parts[1] in item.visible or parts[1] in item.subdirs:
                raise _err(errno.EEXIST)
            if "nested-mkdir-allowed" in self.q:
                item.subdirs.add(parts[1])
                return
            raise _err(errno.EPERM)  # report items are items, not groups
        if parts[1] in item.visible:
            raise _err(errno.ENOTDIR)
        raise _err(errno.ENOENT)

    def _visible_set(self, p: Provider) -> tuple[str, ...]:
        """The attributes populate_attrs gives a new item.  The kernel asks is_visible at every
        mkdir; a provider's answers depend only on its class, its load-time parameters and the
        quirks it was registered with (this kernel's), so they are asked once per configuration,
        also across ``reset`` (a rebooted fuzz tree registers a provider configured alike)."""
        hit = self._visible
        if hit is not None and hit[0] is p:
            return hit[1]
        key = (type(p), frozenset(p.params.items()))
        out = self._visible_of.get(key)
        if out is None:
            if not self.era.visibility_hooks:
                out = EXTRA_TYPE if p.extra_type else DEFAULT_TYPE
            else:
                out = tuple(a for a in TEXT_ATTRS + BIN_ATTRS if (v := p.attr_visible(a)) is None or v)
            self._visible_of[key] = out
        self._visible = (p, out)
        return out

    def _make_item(self, name: str) -> None:
        with self.tsm_rwsem.read(self.interrupted):  # tsm_report_make_item + populate_attrs' is_visible
            p = self.provider
            if p is None:
                raise _err(errno.ENXIO)
            visible = self._visible_set(p)
            if "extra-attribute" in self.q:
                visible += ("debug",)
            gen = self._shared_gen if "shared-generation" in self.q else Gen()
            item = ReportItem(name, visible, gen)
            if "shared-inblob" in self.q:
                item.desc = self._shared_desc
            old = self._graveyard.pop(name, None)
            if old is not None:  # quirk rmdir-keeps-state
                item.gen, item.desc, item.blobs = old.gen, old.desc, old.blobs
            if self.era.provider_refcount_fix:
                self.provider_count += 1
            self.items[name] = item

    def rmdir(self, path: str) -> None:
        self._callers.add(threading.get_ident())
        with locked(self._dir_lock, self.interrupted):
            return self._rmdir(path)

    def _rmdir(self, path: str) -> None:
        parts = self._split(path)
        if not parts:
            raise _err(errno.EPERM)  # the default group tsm/report
        item = self._item(parts[0])
        if len(parts) > 1:
            if parts[1] in item.subdirs and len(parts) == 2:
                item.subdirs.discard(parts[1])
                return
            raise _err(errno.ENOTDIR if parts[1] in item.visible else errno.ENOENT)
        if "rmdir-silent-fail" in self.q:
            return
        with item.frag_sem.write(self.interrupted):  # waits for in-flight callbacks (docs/abi.md §4)
            item.dead = True
        del self.items[parts[0]]
        if self.era.provider_refcount_fix:
            self.provider_count -= 1
        self._removed.add(parts[0])
        if "rmdir-name-leak" in self.q:
            self._taken.add(parts[0])
        if "rmdir-keeps-state" in self.q:
            self._graveyard[parts[0]] = item

    def listdir(self, path: str = "") -> list[str]:
        parts = self._split(path)
        if not parts:
            return list(self.items)
        item = self._item(parts[0])
        if len(parts) == 1:
            return list(item.visible) + sorted(item.subdirs)
        if len(parts) == 2 and parts[1] in item.subdirs:
            return []
        raise _err(errno.ENOTDIR if parts[1] in item.visible else errno.ENOENT)

    def stat(self, path: str) -> tuple[int, int]:
        parts = self._split(path)
        if not parts:
            return S_IFDIR | 0o755, 0
        item = self._item(parts[0])
        if len(parts) == 1:
            return S_IFDIR | (0o700 if "item-mode-0700" in self.q else 0o755), 0
        a = parts[1]
        if len(parts) == 2 and a in item.subdirs:
            return S_IFDIR | 0o755, 0
        if len(parts) > 2 or a not in item.visible:
            raise _err(errno.ENOENT)
        mode = attr_mode(a)
        if a == "outblob" and "mode-outblob-0644" in self.q:
            mode = 0o644
        return S_IFREG | mode, (0 if attr_kind(a) == "binary" else SIMPLE_ATTR_SIZE)

    # ---------------------------------------------------------------- file operations
    def _dead(self, item: ReportItem) -> bool:
        """frag_dead: set by rmdir; callbacks on open fds then fail ENOENT."""
        return item.dead and "rmdir-fd-alive" not in self.q

    def _file(self, fd: int) -> OpenFile:
        try:
            return self._fds[fd]
        except KeyError:
            raise _err(errno.EBADF) from None

    def open(self, path: str, flags: int) -> int:
        self._callers.add(threading.get_ident())
        parts = self._split(path)
        if "rmdir-read-eio" in self.q and len(parts) == 2 and parts[0] in self._removed:
            raise _err(errno.EIO)  # the quirk: a removed item's files fail EIO, not ENOENT
        acc = flags & O_ACCMODE
        item = self._item(parts[0]) if parts else None  # (ENOENT for an item that is not there)
        if item is None or len(parts) == 1 or (len(parts) == 2 and parts[1] in item.subdirs):
            if acc != O_RDONLY:  # the group, an item, a nested directory (quirk nested-mkdir-allowed)
                raise _err(errno.EISDIR)
            f = OpenFile(None, "", "dir", True, False)
        else:
            attr = parts[1]
            if len(parts) > 2:
                raise _err(errno.ENOTDIR if attr in item.visible else errno.ENOENT)
            if attr not in item.visible:
                raise _err(errno.EACCES if flags & os.O_CREAT else errno.ENOENT)
            if flags & os.O_DIRECTORY:
                raise _err(errno.ENOTDIR)
            wants_rd, wants_wr = acc in READS, acc in WRITES
            writable = attr_mode(attr) & 0o222 != 0
            readable = not writable
            with item.frag_sem.read(self.interrupted):
                if item.dead:
                    raise _err(errno.ENOENT)
            # __configfs_open_file: each TSM attribute has one direction; the other is EACCES,
            # whatever the caller's privileges (O_RDWR included).
            if "rdwr-allowed" in self.q and acc == O_RDWR:
                wants_rd, wants_wr = readable, writable
            if wants_wr and not writable and "ro-writable" not in self.q:
                raise _err(errno.EACCES)
            if wants_rd and not readable and "wo-readable" not in self.q:
                raise _err(errno.EACCES)
            f = OpenFile(item, attr, attr_kind(attr), wants_rd, wants_wr)
            if attr == "inblob" and wants_wr and "inblob-open-bumps" in self.q:
                f.write_in_progress = True
        with self._fd_lock:
            fd = next(self._next_fd)
            self._fds[fd] = f
        return fd

    def close(self, fd: int) -> None:
        self._callers.add(threading.get_ident())
        with self._fd_lock:
            f = self._fds.pop(fd, None)
        if f is None:
            raise _err(errno.EBADF)
        if f.kind == "binary" and f.write_in_progress and f.attr == "inblob":
            item = f.item
            assert item is not None
            # release cannot fail or be interrupted: the commit must happen (plain waits, also
            # behind FUSE, where close() is FLUSH and a late INTERRUPT must not drop the inblob)
            with item.frag_sem.read():
                if not item.dead:
                    try:  # configfs_release_bin_file: the callback's result is ignored
                        self._inblob_write(item, bytes(f.bin_buffer or b""), intr=False)
                    except OSError:
                        pass

    def read(self, fd: int, n: int) -> bytes:
        self._callers.add(threading.get_ident())
        f = self._file(fd)
        data = self._read_at(f, n, f.pos)
        f.pos += len(data)
        return data

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        self._callers.add(threading.get_ident())
        f = self._file(fd)
        if offset < 0:
            raise _err(errno.EINVAL)
        if "pread-ignores-offset" in self.q and f.kind == "binary":
            offset = f.pos
        return self._read_at(f, n, offset)

    def _read_at(self, f: OpenFile, n: int, pos: int) -> bytes:
        if f.kind == "dir":
            raise _err(errno.EISDIR)
        if not f.rd:
            raise _err(errno.EBADF)
        item = f.item
        assert item is not None
        with mutex(f.mutex):
            if f.kind == "text":
                if f.needs_read_fill:  # fill_read_buffer: one show per fd, then a snapshot
                    with item.frag_sem.read(self.interrupted):
                        if self._dead(item):
                            raise _err(errno.ENOENT)
                        f.page = self._show(item, f.attr)
                    f.needs_read_fill = False
                return f.page[pos:pos + n]
            return self._bin_read(f, item, n, pos)

    def _bin_read(self, f: OpenFile, item: ReportItem, n: int, pos: int) -> bytes:
        if f.write_in_progress:
            raise _err(errno.ETXTBSY)
        f.read_in_progress = True
        if f.attr == "inblob":  # quirk wo-readable: the committed nonce leaks
            return bytes(item.desc.inblob[: item.desc.inblob_len])[pos:pos + n]
        if f.attr == "outblob" and self.client_fault != "none" and f.needs_read_fill:
            fault = self._client_fault(item)
            if fault is not None:
                return fault
        if f.needs_read_fill or "no-snapshot" in self.q:
            # configfs_bin_read_iter: size with buf == NULL, allocate, then fill: two callback
            # calls under separate frag_sem acquisitions, so a writer can slip in between.
            with item.frag_sem.read(self.interrupted):
                if self._dead(item):
                    raise _err(errno.EIO if "rmdir-read-eio" in self.q else errno.ENOENT)
                size = len(self._report_read(item, f.attr))
            if size <= 0:
                return b""
            if size > self.era.blob_max + (1 if "blob-limit-off-by-one" in self.q else 0):
                raise _err(errno.EFBIG)
            buf = bytearray(size) if self.init_on_alloc else bytearray(b"\xa5" * size)
            s = coop.current()
            if s is not None:
                s.window()  # between the two calls: another program runs
            elif self._competing():
                # Between the two calls the kernel drops frag_sem and tsm_rwsem and vmallocs: a
                # writer on another CPU gets in.  Python threads only switch on blocking calls or
                # every few ms, so give them the window explicitly (only when there are any).
                time.sleep(PREEMPT_WINDOW)
            with item.frag_sem.read(self.interrupted):
                if self._dead(item):
                    raise _err(errno.ENOENT)
                blob = self._report_read(item, f.attr)
            if self.size_fill_fix:  # a fixed configfs would serve what the fill call returned
                buf = bytearray(blob)
            else:
                k = min(size, len(blob))  # memory_read_from_buffer; the short count is ignored
                buf[:k] = blob[:k]
            f.bin_buffer = buf
            f.needs_read_fill = False
        assert f.bin_buffer is not None
        return bytes(f.bin_buffer[pos:pos + n])

    def _client_fault(self, item: ReportItem) -> bytes | None:
        """The world a client's report read meets (params.py client_fault), once per item except
        a report that is always empty; None: read as usual."""
        fault = self.client_fault
        if fault == "empty-outblob":
            return b""
        if id(item) in self._faulted or not item.desc.inblob_len:
            return None
        self._faulted.add(id(item))
        if fault == "busy-once":
            raise _err(errno.EBUSY)
        if fault == "enxio-read":
            raise _err(errno.ENXIO)
        if fault == "eintr-once":
            raise _err(errno.EINTR)
        if fault == "slow":  # a host that takes its time (a TDX quote can take seconds)
            self.wait_interruptible(SLOW_PROVIDER_SECONDS)
            return None
        # generation-bump: another writer commits its own nonce just before this read
        with self.tsm_rwsem.write(self.interrupted):
            n = item.desc.inblob_len
            item.desc.inblob[:n] = bytes(b ^ 0x5A for b in item.desc.inblob[:n])
            item.gen.write = (item.gen.write + 1) & self.gen_mask
        return None

    def write(self, fd: int, data: bytes) -> int:
        self._callers.add(threading.get_ident())
        f = self._file(fd)
        n = self._write_at(f, data, f.pos)
        f.pos += n
        return n

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self._callers.add(threading.get_ident())
        f = self._file(fd)
        if offset < 0:
            raise _err(errno.EINVAL)
        if "pwrite-ignores-offset" in self.q and f.kind == "binary":
            offset = f.pos
        return self._write_at(f, data, offset)

    def _write_at(self, f: OpenFile, data: bytes, pos: int) -> int:
        if f.kind == "dir" or not f.wr:
            raise _err(errno.EBADF)
        item = f.item
        assert item is not None
        if attr_mode(f.attr) & 0o222 == 0:  # quirk ro-writable
            return len(data)
        with mutex(f.mutex):
            if f.kind == "text":
                return self._text_write(f, item, data)
            return self._bin_write(f, item, data, pos)

    def _text_write(self, f: OpenFile, item: ReportItem, data: bytes) -> int:
        # fill_write_buffer: at most SIMPLE_ATTR_SIZE - 1 bytes, NUL-terminated, then one store.
        chunk = data if "text-write-unsplit" in self.q else data[: SIMPLE_ATTR_SIZE - 1]
        if not chunk:
            if "zero-write-accepted" in self.q:
                return 0
            raise _err(errno.EFAULT)
        f.needs_read_fill = True
        if f.stored_once and "text-multiwrite-once" in self.q:
            return len(chunk)
        with item.frag_sem.read(self.interrupted):
            if item.dead:
                raise _err(errno.ENOENT)
            res = self._store(item, f.attr, chunk)
        f.stored_once = True
        return res

    def _bin_write(self, f: OpenFile, item: ReportItem, data: bytes, pos: int) -> int:
        if f.read_in_progress:
            raise _err(errno.ETXTBSY)
        if not data and "zero-write-accepted" in self.q:
            return 0
        if "efbig-close-no-commit" not in self.q:
            f.write_in_progress = True
        if "inblob-last-write-wins" in self.q and f.bin_buffer is not None and pos == f.pos:
            f.bin_buffer, pos = None, 0
        buf = f.bin_buffer if f.bin_buffer is not None else bytearray()
        end = pos + len(data)
        if end > len(buf):
            if end > INBLOB_MAX:
                if "inblob-truncate" in self.q and pos < INBLOB_MAX:
                    data = data[: INBLOB_MAX - pos]
                    end = INBLOB_MAX
                else:
                    if "efbig-discards-buffer" in self.q:
                        f.bin_buffer = None
                    raise _err(errno.EFBIG)
            buf.extend(bytes(end - len(buf)))  # the new area is cleared (pwrite gaps read zero)
        f.write_in_progress = True
        buf[pos:pos + len(data)] = data
        f.bin_buffer = buf
        if not data:
            raise _err(errno.EFAULT)  # `len ?: -EFAULT`, yet write_in_progress stays set
        if "inblob-commit-on-write" in self.q:
            with item.frag_sem.read(self.interrupted):
                if not item.dead:
                    self._inblob_write(item, bytes(buf))
            f.write_in_progress = False
        return len(data)

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        f = self._file(fd)
        if f.kind == "binary" and "bin-seekable" not in self.q:
            raise _err(errno.ESPIPE)  # .llseek = NULL
        size = SIMPLE_ATTR_SIZE if f.kind == "text" else 0
        base = {os.SEEK_SET: 0, os.SEEK_CUR: f.pos, os.SEEK_END: size}.get(whence)
        if base is None or base + offset < 0:
            raise _err(errno.EINVAL)
        f.pos = base + offset
        return f.pos
