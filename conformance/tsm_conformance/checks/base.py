"""Check catalogue machinery: registration, the per-check context, operation recording.

Checks are plain functions taking a ``Ctx``; they never import pytest, so the plugin, the CLI and
the fuzzers (as oracles) all run the same code.  Every tree operation goes through ``Recorder`` so
a failure carries the exact operation sequence that reproduces it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from .. import errnos
from ..outcome import NotApplicable, TsmError, TsmFailure
from ..profile.model import Field, Profile
from ..seq import TREE_OPS, ReportShape, Sequence, from_log, render_log, render_pending
from ..target.base import READ_CHUNK, BoundOps, Tree
from ..verify.base import TrustAnchors

if TYPE_CHECKING:
    from ..target.control import ProviderControl

BLOBS = ("outblob", "auxblob", "manifestblob")
BUSY_TRIES = 8  # EBUSY retries of a read that needs its report (backoff 1 ms doubling: ~0.25 s in all)
READ_LIMIT = (16 << 20) + 4096  # the largest blob limit (7.0) plus a page


@dataclass(frozen=True)
class Facts:
    """Probed once per session from a fresh item; reported in JUnit properties."""

    provider: str
    attributes: frozenset[str]
    privlevel_floor: int | None
    kernel_release: str
    target: str
    hints: dict[str, int] = field(default_factory=dict)

    def groups_present(self, profile: Profile) -> dict[str, bool]:
        """A visibility group counts as present if any member shows; attr.set then demands all."""
        return {g: any(a in self.attributes for a in members) for g, members in profile.groups.items()}


@dataclass(frozen=True)
class Check:
    id: str
    rule: str  # one sentence: what the ABI requires
    abi: str  # where the rule comes from (docs/abi.md section, kernel source)
    func: Callable[[Ctx], None]
    needs: tuple[str, ...] = ()  # attributes the profile must show
    order: int = 0  # cleanup checks run last

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]


REGISTRY: dict[str, Check] = {}


def check(id: str, rule: str, abi: str, needs: tuple[str, ...] = (), order: int = 0
          ) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    def deco(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        if id in REGISTRY:
            raise RuntimeError(f"duplicate check id {id}")
        REGISTRY[id] = Check(id, rule, abi, fn, needs, order)
        return fn
    return deco


def all_checks() -> list[Check]:
    from . import catalogue  # noqa: F401  (registers every check module)
    return sorted(REGISTRY.values(), key=lambda c: (c.order, c.id))


def not_applicable_reason(c: Check, profile: Profile, facts: Facts, visible: set[str] | None = None) -> str | None:
    if visible is None:
        visible = profile.visible_attributes(facts.groups_present(profile))
    missing = [a for a in c.needs if a not in visible]
    if missing:
        return f"not-applicable: {profile.name} does not show {', '.join(missing)}"
    return None


def recorded(op: str, fn: Callable, log: list, show: Callable[[tuple], tuple] | None = None) -> Callable:
    """``fn``, appending (op, args, result or the OSError) to ``log`` on every call; ``show``: the
    arguments as the log should name them (the measurement group's paths, checks/measurements.py)."""
    def call(*args: object) -> object:
        shown = args if show is None else show(args)
        try:
            r = fn(*args)
        except OSError as e:
            log.append((op, shown, e))
            raise
        log.append((op, shown, r))
        return r
    return call


class Recorder(BoundOps):
    """A Tree wrapper that logs each operation and its result (kept cheap: tuples, put into
    seq.py's vocabulary only when a failure is rendered: the failure text and its .tsmseq are
    the same steps)."""

    OPS = TREE_OPS
    # The recorded operations are bound per instance in __init__ (their signatures: BoundOps).

    def __init__(self, tree: Tree, names: dict[str, str]) -> None:
        self.t = tree
        self.log: list[tuple[str, tuple, object]] = []
        self.names = names  # real item name -> r0, r1 ...
        self.report: ReportShape | None = None  # how report reads are shown (Ctx: from the profile)
        for op in self.OPS:  # one closure per operation: the recording costs one call
            setattr(self, op, self._bind(op, getattr(tree, op)))
        # Called before each open with its arguments (a report budget refuses one past the cap)
        self.before_open: Callable[[tuple], None] | None = None
        recorded_open = self.open

        def open_(path: str, flags: int) -> int:
            if self.before_open is not None:
                self.before_open((path, flags))
            return recorded_open(path, flags)
        self.open = open_

    def reset(self, names: dict[str, str], report: ReportShape | None = None) -> None:
        """Start a new check: an empty log (failures render theirs before this runs again);
        ``report``: how its report reads are shown (kept when not given)."""
        self.log.clear()
        self.names = names
        if report is not None:
            self.report = report

    def _bind(self, op: str, fn: Callable) -> Callable:
        return recorded(op, fn, self.log)

    def _path(self, p: str) -> str:
        head, sep, tail = p.partition("/")
        return self.names.get(head, head) + sep + tail

    def render(self) -> list[str]:
        """The failure text's operation sequence: the steps ``sequence`` writes, one a line."""
        return render_log(self.log, self.names, self.report)

    def pending(self, op: str, args: tuple | list) -> str:
        """An operation in flight (a hang), fds also naming their files: ``read(fd1 = r0/outblob, 65536)``."""
        return render_pending(self.log, self.names, op, args)

    def sequence(self, header: dict[str, str], log: list[tuple[str, tuple, object]] | None = None) -> Sequence:
        """The log (or ``log``, a changed copy) as a replayable .tsmseq sequence."""
        return from_log(list(self.log if log is None else log), dict(self.names), header, self.report)


class RecordedControl:
    """Provider control whose actions appear in the operation log, as shell would spell them."""

    def __init__(self, control: ProviderControl, log: list) -> None:
        self.c, self.log = control, log

    def _do(self, text: str, fn: Callable, *args: object) -> None:
        try:
            fn(*args)
        except OSError as e:
            self.log.append(("#", (text,), e))
            raise
        self.log.append(("#", (text,), None))

    def load(self, params: dict[str, str] | None = None) -> None:
        p = {**self.c.base, **(params or {})}
        self._do("insmod tsm_test.ko " + " ".join(f"{k}={v}" for k, v in p.items()), self.c.load, params)

    def unload(self) -> None:
        self._do("rmmod tsm_test", self.c.unload)

    def set_param(self, name: str, value: str) -> None:
        self._do(f"echo {value} > /sys/module/tsm_test/parameters/{name}", self.c.set_param, name, value)

    def loaded(self) -> bool:
        return bool(self.c.loaded())

    def restore(self) -> None:
        """Back to the session's provider with its base parameters (after any lifecycle check)."""
        if self.loaded():
            for name in ("fail_errno", "delay_ms"):
                self.set_param(name, "0")
            self.set_param("outblob_size", self.c.base.get("outblob_size", "192"))
        else:
            self.load()


def is_report_open(args: tuple) -> bool:
    """open(path, flags) of a report blob for reading: what a report budget counts."""
    return len(args) > 1 and not int(args[1]) & 3 and str(args[0]).rpartition("/")[2] in BLOBS


def report_opens(log: list[tuple[str, tuple, object]]) -> int:
    """Read opens of a report blob in ``log``: what a report budget counts (an upper bound on
    generations: a read of an unchanged item returns the cached report)."""
    return sum(1 for op, args, r in log if op == "open" and isinstance(r, int) and is_report_open(args))


@dataclass
class SharedReport:
    """One plain report made by the first check that asked for it (see ``Ctx.shared_report``)."""

    owner: str  # the check id that made it
    name: str  # its item's real name (removed again)
    nonce: bytes
    outblob: bytes
    auxblob: bytes | str | None  # bytes, an errno name, or None without an auxblob attribute
    log: list[tuple[str, tuple, object]]  # the operations that made it


#: Items a check's worker thread may still be blocked in (Ctx.abandon_items): never removed while
#: a worker lives.  Names are unique per process (the pid is in the prefix), so one set will do.
BLOCKED_ITEMS: set[str] = set()


class Ctx:
    """What a check sees: the recorded tree, the profile, the probed facts and helpers."""

    def __init__(self, check: Check, recorder: Recorder, profile: Profile, facts: Facts, prefix: str,
                 counter: Iterator[int], control: ProviderControl | None = None, anchors: TrustAnchors | None = None,
                 shared: dict[str, SharedReport] | None = None) -> None:
        self.check = check
        self._control = control
        self.anchors = anchors if anchors is not None else TrustAnchors()  # for format.signature.*
        self.profile = profile
        self.facts = facts
        self.names: dict[str, str] = {}
        self.tree = recorder
        recorder.reset(self.names, ReportShape.of(profile))
        self.prefix = prefix
        self._counter = counter  # session-wide, so names never repeat within a run
        self._made: list[str] = []
        self._shared = shared if shared is not None else {}
        self._used_shared: list[SharedReport] = []
        self.copied_opens = 0  # report opens copied from a shared report (made once, counted once)
        self.header_extra: dict[str, str] = {}  # more .tsmseq header keys a failure carries (mr-group ...)

    # ---- items
    def new_name(self, pad_to: int = 0) -> str:
        """A unique report name with the session prefix; ``pad_to`` makes it exactly that long."""
        name = f"{self.prefix}{next(self._counter)}"
        if pad_to:
            name = (name + "x" * pad_to)[:pad_to]
        self.names.setdefault(name, f"r{len(self.names)}")
        return name

    @contextmanager
    def item(self, name: str | None = None) -> Iterator[str]:
        """mkdir a fresh report item and rmdir it afterwards, also on failure or Ctrl-C (unless a
        worker thread may still be blocked in it: see ``abandon_items``)."""
        name = name or self.new_name()
        self.tree.mkdir(name)
        self._made.append(name)
        try:
            yield name
        finally:
            if name not in BLOCKED_ITEMS:
                self.remove(name)

    @contextmanager
    def report_item(self, name: str | None = None) -> Iterator[str]:
        """``item()`` set up as a correct client sets up a report: privlevel written with the
        floor the tree reports (when the item shows privlevel).  A fresh item's privlevel is 0 and
        SNP firmware refuses a report below the VMPL of the VMPCK that asks (vmpck_id 1..3, every
        guest under an SVSM): a check that reads a report must not lean on that default.  Checks
        whose subject is privlevel or the generation of a fresh item use ``item()``."""
        with self.item(name) as r:
            self.set_floor(r)
            yield r

    def report_privlevel(self) -> int:
        """The privlevel reports are asked at: the floor the tree reports (0 without one)."""
        return self.facts.privlevel_floor or 0

    def set_floor(self, item: str) -> None:
        if "privlevel" not in self.facts.attributes:
            return
        level = self.report_privlevel()
        text = b"%d\n" % level
        res = self.write(f"{item}/privlevel", text)
        if res != len(text):
            self.fail(f"write({self.rel(item)}/privlevel, {level}) -> {len(text)} (the floor the tree reports)",
                      f"write({self.rel(item)}/privlevel, {level}) -> {res}", "privlevel.floor")

    def abandon_items(self) -> None:
        """A worker thread did not return and may be blocked inside one of this check's items (a
        hung read holds configfs' frag_sem for reading).  An rmdir of that item waits for it with an
        uninterruptible down_write on a real kernel, where no deadline could end the wait, so the
        items are left in place: the end-of-run sweep removes them once no worker is alive, else
        they are reported as left (``tsm-conformance clean`` removes them later)."""
        BLOCKED_ITEMS.update(self._made)
        self._made.clear()

    def remove(self, name: str) -> None:
        try:
            self.tree.rmdir(name)
        except OSError:
            pass
        if name in self._made:
            self._made.remove(name)

    def cleanup(self) -> None:
        for name in list(self._made):
            self.remove(name)

    # ---- inputs
    def nonce(self, n: int = 64, salt: int = 0) -> bytes:
        """Deterministic, check-specific bytes: replays produce the same inputs."""
        seed = hashlib.sha512(f"{self.check.id}:{salt}".encode()).digest()
        return (seed * 2)[:n]

    def report_len(self) -> int:
        """An inblob length the provider makes reports for (the largest allowed)."""
        r = self.profile.inblob_report_lengths
        return r.max if r else self.profile.limits_inblob_max

    # ---- operations returning value-or-errno
    def attempt(self, fn: Callable, *args: object) -> object:
        try:
            return fn(*args)
        except OSError as e:
            return errnos.name(e.errno)

    def write(self, path: str, data: bytes) -> object:
        """open(O_WRONLY) + one write() + close(); the write's count or its errno name."""
        fd = self.tree.open(path, os.O_WRONLY)
        try:
            return self.tree.write(fd, data)
        except OSError as e:
            return errnos.name(e.errno)
        finally:
            self.tree.close(fd)

    def read(self, path: str, retry_busy: bool = False) -> bytes | str:
        """open + read() to EOF + close; the bytes or the errno name of the failing call.
        ``retry_busy``: retry EBUSY as a correct client does (see ``read_ok``)."""
        r = self._read(path)
        for attempt in range(BUSY_TRIES if retry_busy else 0):
            if r != "EBUSY":
                break
            time.sleep(0.001 * 2 ** attempt)
            r = self._read(path)
        return r

    def _read(self, path: str) -> bytes | str:
        try:
            fd = self.tree.open(path, os.O_RDONLY)
        except OSError as e:
            return errnos.name(e.errno)
        try:
            parts: list[bytes] = []
            total = 0
            while True:
                b = self.tree.read(fd, READ_CHUNK)
                if not b:
                    return b"".join(parts)
                parts.append(b)
                total += len(b)
                if total > READ_LIMIT:  # a tree that never says EOF must not eat the machine
                    self.fail(f"read({self.rel(path)}) reaches EOF within {READ_LIMIT} bytes",
                              f"more than {READ_LIMIT} bytes and no EOF", "limits.outblob_max")
        except OSError as e:
            return errnos.name(e.errno)
        finally:
            self.tree.close(fd)

    def read_ok(self, path: str, why: str) -> bytes:
        """A read that must give bytes.  EBUSY is retried, as a correct client does: a TDX
        TDREPORT whose operand another vCPU holds (an RTMR extend, 6.16+), a quote still in flight."""
        r = self.read(path, retry_busy=True)
        if isinstance(r, str):
            self.fail(f"read({self.rel(path)}) -> bytes", f"read({self.rel(path)}) -> {r}", why)
        return r

    def generation(self, item: str) -> int:
        txt = self.read(f"{item}/generation")
        if isinstance(txt, str) or txt[-1:] != b"\n" or not txt[:-1].isdigit():
            self.fail(f'read({self.rel(item)}/generation) -> "<decimal>\\n"',
                      f"read({self.rel(item)}/generation) -> {txt!r}", "generation")
        return int(txt)

    def commit_inblob(self, item: str, data: bytes) -> None:
        r = self.write(f"{item}/inblob", data)
        if r != len(data):
            self.fail(f"write({self.rel(item)}/inblob, {len(data)} bytes) -> {len(data)}",
                      f"write({self.rel(item)}/inblob, {len(data)} bytes) -> {r}", "limits.inblob_max")

    def shared_report(self) -> SharedReport:
        """A plain report (fresh item, privlevel at the floor, other options default, a run-wide
        nonce of ``report_len`` bytes, outblob then auxblob read) shared by the checks that only
        inspect its bytes: on real hardware each generation costs milliseconds to seconds
        (``--budget``).  The first check to ask makes it; later ones get its operations copied into
        their own log, so their failure's operation sequence makes it again when replayed."""
        s = self._shared.get("plain")
        if s is not None and s in self._used_shared:  # already in this check's log
            return s
        if s is not None:
            self._used_shared.append(s)
            self.note(f"the report below is shared: made once per run by {s.owner}")
            self.names.setdefault(s.name, f"r{len(self.names)}")
            self.tree.log.extend(s.log)
            self.copied_opens += report_opens(s.log)
            return s
        start = len(self.tree.log)
        nonce = (hashlib.sha512(b"tsm-conformance shared report").digest() * 2)[:self.report_len()]
        with self.report_item() as r:
            self.commit_inblob(r, nonce)
            out = self.read_ok(f"{r}/outblob", "report.format")
            aux = self.read(f"{r}/auxblob") if "auxblob" in self.facts.attributes else None
        s = SharedReport(self.check.id, r, nonce, out, aux, list(self.tree.log[start:]))
        self._shared["plain"] = s
        self._used_shared.append(s)
        return s

    # ---- verdicts
    def rel(self, path: str) -> str:
        return self.tree._path(path)

    def fail(self, expected: str, observed: str, keypath: str) -> NoReturn:
        header = {"check": self.check.id, "rule": self.check.rule, "expected": expected, "observed": observed,
                  "target": self.facts.target, "kernel": self.facts.kernel_release}
        if self.facts.target.startswith("emulated "):
            header["emulate"] = self.facts.target.split(" ", 1)[1]
        header.update(self.header_extra)
        raise TsmFailure(self.check.id, self.check.rule, expected, observed,
                         f"{self.profile.where(keypath)} {keypath}", self.tree.render(),
                         sequence=self.tree.sequence(header))

    def expect_errno(self, condition: str, op: str, result: object) -> None:
        """``result`` (value or errno name) must be one of the profile's errnos for condition."""
        allowed = self.profile.errno(condition)
        if result not in allowed:
            shown = f"{len(result)} bytes" if isinstance(result, bytes) else result
            self.fail(f"{op} -> {' or '.join(allowed)}", f"{op} -> {shown}", f"errors.{condition}")

    def expect_equal(self, what: str, want: object, got: object, keypath: str) -> None:
        if want != got:
            self.fail(f"{what} = {want!r}", f"{what} = {got!r}", keypath)

    def note(self, text: str) -> None:
        """A line in the operation log for what worker threads did (their own ops are not logged)."""
        self.tree.log.append(("#", (text,), None))

    def na(self, reason: str) -> NoReturn:
        raise NotApplicable(f"not-applicable: {reason}")

    def control(self) -> RecordedControl:
        """The provider control of this target (load/unload/parameters), or skip as unsupported."""
        if self._control is None:
            from ..outcome import Unsupported
            raise Unsupported("unsupported: this target cannot load or unload its provider "
                              "(the VM target and the emulated tsm_test can)")
        return RecordedControl(self._control, self.tree.log)

    @contextmanager
    def host(self, **params: object) -> Iterator[None]:
        """Make the emulated host (VMM, firmware) behave as `params` say for the block, then restore
        it.  Real hosts cannot be told to fail: unsupported there."""
        h = self.tree.t.host
        if h is None:
            from ..outcome import Unsupported
            raise Unsupported("unsupported: this target cannot make its host fail or stall "
                              "(the emulator can: --emulate)")
        for k, v in params.items():
            self.note(f"host: {k}={v}")
            h.set_param(k, str(v))
        try:
            yield
        finally:
            h.restore()

    def need_observable(self, behaviour: str) -> None:
        """Skip as unsupported when the target declares ``behaviour`` one it cannot show (a FUSE
        mount: target/fuse_limits.py)."""
        t = self.tree.t
        why = t.limits.get(behaviour)
        if why:
            from ..outcome import Unsupported
            raise Unsupported(f"unsupported on a {t.kind} target: {why}")

    def need_nonce_binding(self) -> Field:
        """Checks that look for the nonce in the report need the profile to say where it is (the
        field returned)."""
        if self.profile.report_nonce is None:
            self.na(f"{self.profile.name} does not say where the report carries the nonce")
        return self.profile.report_nonce

    def need_fresh_reports(self) -> None:
        """Checks that tell generations apart by their bytes need reports unique per generation."""
        if not self.profile.report_fresh_per_generation:
            self.na(f"{self.profile.name} reports are not unique per generation")


def read_unrecorded(tree: Tree, path: str, retry_busy: bool = False) -> bytes | str:
    """open + read to EOF + close straight on the tree (worker threads must not interleave their
    operations into a check's log); the bytes or the errno name.  ``retry_busy``: retry EBUSY as
    ``Ctx.read_ok`` does."""
    r = _read_unrecorded(tree, path)
    for attempt in range(BUSY_TRIES if retry_busy else 0):
        if r != "EBUSY":
            break
        time.sleep(0.001 * 2 ** attempt)
        r = _read_unrecorded(tree, path)
    return r


def _read_unrecorded(tree: Tree, path: str) -> bytes | str:
    try:
        fd = tree.open(path, os.O_RDONLY)
    except OSError as e:
        return errnos.name(e.errno)
    result: bytes | str
    try:
        parts: list[bytes] = []
        while True:
            chunk = tree.read(fd, 1 << 20)
            if not chunk:
                result = b"".join(parts)
                break
            parts.append(chunk)
    except OSError as e:
        result = errnos.name(e.errno)
    try:
        tree.close(fd)
    except OSError as e:  # e.g. ENOTCONN from a FUSE daemon that died: the worker ends with a result, not
        return result if isinstance(result, str) else errnos.name(e.errno)  # a traceback (the session says why)
    return result


def probe(tree: Tree, prefix: str) -> Facts:
    """mkdir one probe item, read what every check needs to decide applicability, rmdir it.

    Raises TsmError with a one-line, actionable message when the tree is not usable."""
    try:
        st = tree.stat("")
    except OSError as e:
        raise TsmError(f"{tree.describe()}: cannot stat the report group ({errnos.name(e.errno)})") from e
    if not st.is_dir:
        raise TsmError(f"{tree.describe()}: not a directory")
    name = f"{prefix}probe"
    try:
        tree.mkdir(name)
    except OSError as e:
        if e.errno == errnos.number("ENXIO"):
            raise TsmError(f"{tree.describe()}: no report provider is registered (mkdir gives ENXIO): "
                           "load the provider's driver (sev-guest, tdx-guest, arm-cca-guest) or use --emulate") from e
        if e.errno == errnos.number("EACCES"):
            raise TsmError(f"{tree.describe()}: mkdir gives EACCES: run as root") from e
        raise TsmError(f"{tree.describe()}: mkdir of a probe item failed with {errnos.name(e.errno)}") from e
    try:
        try:
            attrs = frozenset(tree.listdir(name))
        except OSError as e:
            raise TsmError(f"{tree.describe()}: listing a new item failed with {errnos.name(e.errno)}") from e
        from ..target.base import read_text
        try:
            provider = read_text(tree, f"{name}/provider").rstrip("\n")
        except OSError as e:
            raise TsmError(f"{tree.describe()}: reading provider failed with {errnos.name(e.errno)}") from e
        floor = None
        if "privlevel_floor" in attrs:
            try:
                floor = int(read_text(tree, f"{name}/privlevel_floor").strip())
            except (OSError, ValueError):
                floor = None
    finally:
        try:
            tree.rmdir(name)
        except OSError:
            pass
    hints = tree.hints()
    return Facts(provider, attrs, floor, tree.kernel_release(), tree.describe(), hints)
