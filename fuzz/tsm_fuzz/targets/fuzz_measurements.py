"""measurements: measurement-register (tsm-mr) schedules, judged against docs/abi-measurements.md.

An input decodes to a ``.tsmseq`` schedule over the provider's register group (``measurements/NAME``,
``seq.MR_HEAD``) and up to two report items per thread: set-up (every register read once, its value
the model's start; optionally an item with a committed inblob), then 1-3 threads (``T1:`` ...) each
running a short program of macros - extends (write, pwrite at 0 then write, O_RDWR then reads on
the same fd), writes of a wrong size (shorter: EINVAL; longer: cut to the register, then a second
write on the fd: EFBIG), pwrites at offsets inside and past the register, zero-byte writes, whole
and partial reads and preads, read-only registers opened for writing, listdir/stat of the group,
and reports on an item (mkdir, an inblob commit of the provider's length, outblob/auxblob and
generation reads, rereads without a new inblob) - then a tear-down reading every register and, for
every item, committing a new inblob and reading the blobs that carry the registers.

The oracle (``Judge``) walks the executed trace in file order, which is program order per thread:

* one thread: exact.  A model of every register (the value set-up read, extended H(old || data)
  by each write that §2 says succeeds, with the first ``size`` bytes of a longer one); every
  write's result (size, EINVAL, EFBIG, 0; EACCES opening a read-only register for writing); every
  read the model's bytes (a slice for a partial read, nothing past the end); after a new inblob the
  report carries the model's values (profile ``report_blob``+offset, or ``report_field`` of the
  parsed format), a report read again at the same generation is byte-identical and generation is
  unchanged by extends; the provider's refresh count rises once per live read after a write and
  never otherwise (the set-up's first live read may refresh once: the group may start stale).
* threads: invariants.  Each writable register has one writer thread (other threads' extends of
  it decode as refused writes), so its values form a chain; write results do not depend on the
  interleaving; the writer and the tear-down see exact chain values, other threads values on the
  chain no older than what they saw before; reports carry chain values; the refresh count stays
  within what the writes allow.

A finding is confirmed on a fresh tree, shrunk macro by macro while the same rule still breaks
(a threaded one first tried as one thread), and carried as a replayable Sequence whose header
says where the group is (``mr-group``, ``mr-counter``, ``mr-extend``: checks/measurements.py's
rule) and which tree (``emulate``).  A live tree whose profile is not ``extendable_by_tests`` is
never written: the target is unavailable there (an extend changes what a TD attests to until
reboot).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tsm_conformance.names import FUZZ, with_pid
from tsm_conformance.seq import HUNG, MR_HEAD, Step

from .. import harness
from ..api import Finding, TargetContext

NAME = "measurements"
DESCRIPTION = ("measurement-register (tsm-mr) schedules: extends, wrong sizes and offsets, reads, read-only opens "
               "and reports in 1-3 threads, judged by an extend model")
EMULATED_INSTRUMENT = ("tsm_conformance.emulator.measurements",)
MAX_THREADS = 3
MAX_MACROS = 6  # per thread
CONFIRM_ATTEMPTS = 30  # fresh-tree runs to confirm a threaded finding (one suffices for one thread)
SHRINK_BUDGET = 3.0  # seconds
PAGE = 4096  # kernfs hands a write at most one page (docs/abi-measurements.md §2)
BLOB_READ = 1 << 16  # a whole report blob in one read
ABI = "docs/abi-measurements.md"

#: Rules whose evidence depends on the interleaving (values on a chain): in a threaded trace a
#: violation of another rule, which any interleaving shows, is reported first.
CHAIN_RULES = ("mr.extend.replayed", "mr.report.coherent")

Macro = tuple  # ("kind", thread, args...): kept as data so shrinking can drop any one of them


# ----------------------------------------------------------------------------- availability
def _group_rule(profile: Any) -> dict[str, str]:
    """The header a sequence needs to find the group again (checks/measurements.py ``group()``)."""
    m = profile.measurements
    return {"mr-group": m.group, **({"mr-counter": m.refresh_counter} if m.refresh_counter else {}),
            **({"mr-extend": "yes"} if m.extendable_by_tests else {})}


def unavailable(ctx: TargetContext | None = None) -> str | None:
    """Why the target cannot run on ``ctx``'s tree (None: it can, or no tree was given): the
    profile has no registers, the kernel predates them, the tree has no group, or it is a live
    machine whose registers a test may not extend.  One line."""
    if ctx is None:
        return None
    from tsm_conformance.profile.model import version_tuple
    harness.prepare(ctx)
    p, f = ctx.profile, ctx.facts
    m = p.measurements
    if m is None:
        return f"{p.name} has no measurement registers"
    rel = version_tuple(f.kernel_release)
    if rel and rel < version_tuple(m.since):
        return f"measurement registers need Linux {m.since}+ (kernel {f.kernel_release})"
    tree = ctx.tree()
    if tree.measurements(m.group, m.refresh_counter) is None:
        return (f"no measurement group at {m.group} on {f.target} (a kernel without CONFIG_TSM_MEASUREMENTS, "
                "or a provider built without one)")
    if tree.kind == "live" and not m.extendable_by_tests:
        return (f"extending {p.name}'s registers on a live machine changes its measurements until reboot "
                f"({ABI} §11); fuzz them on tsm_test, the emulator or a FUSE mount")
    return None


# ----------------------------------------------------------------------------- decoding
class Shape:
    """What the tree offers, fixed per process: the profile's registers, report length and blobs."""

    def __init__(self, profile: Any, facts: Any, limits: Any) -> None:
        m = profile.measurements
        self.regs = list(m.registers)
        self.by_file = {r.file_name: r for r in self.regs}
        self.writable = [r for r in self.regs if r.writable]
        self.readonly = [r for r in self.regs if not r.writable]
        r = profile.inblob_report_lengths
        self.report_len = r.max if r else profile.limits_inblob_max
        attrs = set(facts.attributes)
        self.item_blobs = [b for b in ("outblob", "auxblob") if b in attrs]
        carry = {x.report_blob for x in self.regs if x.report_blob and x.report_offset is not None}
        if any(x.report_field for x in self.regs):
            carry.add("outblob")
        self.carrying = sorted(b for b in carry if b in attrs)
        self.format = profile.report_format
        floor = facts.privlevel_floor
        self.privlevel = floor if "privlevel" in attrs and floor else None
        self.zero_writes = "zero-length-write" not in (limits or {})  # a FUSE mount cannot show them
        self.reports = bool(self.item_blobs) and "inblob" in attrs


def _items(th: int) -> tuple[str, str]:
    """The report items thread ``th`` owns (one thread's items are never touched by another)."""
    return f"r{th}", f"r{th + MAX_THREADS}"


def decode(data: bytes, shape: Shape) -> tuple[bool, list[Macro]]:
    """(an item with a commit made in set-up, macros in file order); every input decodes to something."""
    r = harness.Bytes(data)
    head = r.u8()
    nthreads = (1, 1, 2, 3)[head & 3]
    premade = bool(head & 4) and shape.reports
    macros: list[Macro] = []
    per = [0] * nthreads
    nw, nr, na = len(shape.writable), len(shape.readonly), len(shape.regs)
    while r.left() and min(per) < MAX_MACROS:
        c = r.u8()
        th = (c & 3) % nthreads
        if per[th] >= MAX_MACROS:
            continue
        per[th] += 1
        kind, a = (c >> 2) % 14, r.u8()
        if kind in (0, 1, 2, 13) and nw:
            macros.append(("extend", th, a % nw, (a >> 4) % 3))
        elif kind == 3 and nw:
            macros.append(("size", th, a % nw, r.u8()))
        elif kind == 4 and nw:
            macros.append(("offset", th, a % nw, r.u8()))
        elif kind == 5 and nw and shape.zero_writes:
            macros.append(("zero", th, a % nw))
        elif kind == 8 and nr:
            macros.append(("ro", th, a % nr, (a >> 4) & 1))
        elif kind == 9:
            macros.append(("list", th, a))
        elif kind in (10, 11) and shape.reports:
            macros.append(("report", th, a & 1, r.u8()))
        elif kind == 12 and shape.reports:
            macros.append(("reread", th, a & 1, r.u8()))
        else:
            macros.append(("read", th, a % na, r.u8()))
    return premade, one_writer(macros, shape)


def _long(variant: int) -> bool:
    return variant % 7 >= 3


def mutating(m: Macro) -> bool:
    """A macro that extends a register on a faithful tree."""
    return m[0] == "extend" or (m[0] == "size" and _long(m[3]))


def one_writer(macros: list[Macro], shape: Shape) -> list[Macro]:
    """Each writable register extended by one thread only (the first to extend it): another
    thread's extend of it becomes a short write (refused, EINVAL), so every register's values form
    one chain whatever the interleaving."""
    owner: dict[int, int] = {}
    out = []
    for m in macros:
        if mutating(m) and owner.setdefault(m[2], m[1]) != m[1]:
            m = ("size", m[1], m[2], (m[3] if m[0] == "size" else 1) % 3)  # a short write: EINVAL
        out.append(m)
    return out


@functools.lru_cache(maxsize=4096)
def _bytes(tag: str, th: int, k: int, n: int) -> bytes:
    """Distinct per (purpose, thread, macro, length): each extend and each nonce names its macro."""
    seed = hashlib.blake2b(b"%s:%d:%d" % (tag.encode(), th, k), digest_size=64).digest()
    return (seed * (n // 64 + 1))[:n]


# ----------------------------------------------------------------------------- to a schedule
def schedule(premade: bool, macros: list[Macro], shape: Shape) -> list[Step]:
    """Steps in file order: set-up, the threads' macros round-robin, tear-down.  fd names are
    placeholders until the file order is fixed, then ``fdN`` by position."""
    raw: list[tuple[str | None, str, tuple]] = []
    for reg in shape.regs:  # the model's start: every register as it is now
        fd = f"@s{reg.file_name}"
        raw += [(None, "open", (f"{MR_HEAD}/{reg.file_name}", "O_RDONLY", fd)), (None, "read", (fd, reg.size + 1)),
                (None, "close", (fd,))]
    made: set[str] = set()
    committed: set[str] = set()
    if premade:
        raw += [(None, n, a) for n, a in _mkdir("r0", shape) + _commit("r0", _bytes("pre", 0, 0, shape.report_len))]
        made.add("r0")
        committed.add("r0")
    progs: dict[int, list[tuple[str, tuple]]] = {}
    for k, m in enumerate(macros):
        progs.setdefault(m[1], []).extend(_expand(m, shape, k, made, committed))
    raw += harness.interleave(progs)
    for reg in shape.regs:
        fd = f"@e{reg.file_name}"
        raw += [(None, "open", (f"{MR_HEAD}/{reg.file_name}", "O_RDONLY", fd)), (None, "read", (fd, reg.size + 1)),
                (None, "close", (fd,))]
    for i, item in enumerate(sorted(made)):
        raw += [(None, n, a) for n, a in _commit(item, _bytes("end", 0, i, shape.report_len), f"@end{item}")]
        for b in shape.carrying:
            raw += [(None, n, a) for n, a in _whole(item, b, f"@end{item}{b}")]
    return harness.to_steps(raw)




def _mkdir(item: str, shape: Shape) -> list[tuple[str, tuple]]:
    """mkdir, and privlevel at the floor as a correct client writes it before asking for a report."""
    ops: list[tuple[str, tuple]] = [("mkdir", (item,))]
    if shape.privlevel is not None:
        fd = f"@p{item}"
        ops += [("open", (f"{item}/privlevel", "O_WRONLY", fd)), ("write", (fd, b"%d\n" % shape.privlevel)),
                ("close", (fd,))]
    return ops


def _commit(item: str, nonce: bytes, fd: str | None = None) -> list[tuple[str, tuple]]:
    fd = fd or f"@c{item}"
    return [("open", (f"{item}/inblob", "O_WRONLY", fd)), ("write", (fd, nonce)), ("close", (fd,))]


def _whole(item: str, attr: str, fd: str) -> list[tuple[str, tuple]]:
    return [("open", (f"{item}/{attr}", "O_RDONLY", fd)), ("read", (fd, BLOB_READ if attr != "generation" else 64)),
            ("close", (fd,))]


def _blobs(variant: int, shape: Shape) -> list[str]:
    """Which blobs a report macro reads: those that carry the registers, every one, or outblob
    alone (then a later read of another blob at the same generation shows the same report)."""
    pick = variant % 3
    if pick == 0 and shape.carrying:
        return list(shape.carrying)
    if pick == 1:
        return list(shape.item_blobs)
    return shape.item_blobs[:1]


def _expand(m: Macro, shape: Shape, k: int, made: set[str], committed: set[str]) -> list[tuple[str, tuple]]:
    kind, th, *a = m
    fd = f"@{k}."
    if kind in ("extend", "size", "offset", "zero"):
        return _write_ops(kind, th, a, shape, k, fd)
    if kind == "ro":
        reg = shape.readonly[a[0]]
        return [("open", (f"{MR_HEAD}/{reg.file_name}", ("O_WRONLY", "O_RDWR")[a[1]], fd)),
                ("write", (fd, _bytes("r", th, k, reg.size))), ("close", (fd,))]
    if kind == "list":
        if a[0] & 1:
            return [("listdir", (MR_HEAD,))]
        reg = shape.regs[(a[0] >> 1) % len(shape.regs)]
        return [("stat", (f"{MR_HEAD}/{reg.file_name}",))]
    if kind == "read":
        return _read_ops(a, shape, fd)
    return _report_ops(kind, th, a, shape, k, fd, made, committed)


def _write_ops(kind: str, th: int, a: list, shape: Shape, k: int, fd: str) -> list[tuple[str, tuple]]:
    """An extend, a write of the wrong size (then another at the end), an offset write, 0 bytes."""
    reg = shape.writable[a[0]]
    path, size = f"{MR_HEAD}/{reg.file_name}", reg.size
    if kind == "extend":
        d1 = _bytes("x", th, k, size)
        if a[1] == 0:
            return [("open", (path, "O_WRONLY", fd)), ("write", (fd, d1)), ("close", (fd,))]
        if a[1] == 1:  # pwrite leaves the position at 0: the write after it extends again, the next is EFBIG
            d2 = _bytes("y", th, k, size)
            return [("open", (path, "O_WRONLY", fd)), ("pwrite", (fd, d1, 0)), ("write", (fd, d2)),
                    ("write", (fd, d1[:1])), ("close", (fd,))]
        return [("open", (path, "O_RDWR", fd)), ("write", (fd, d1)), ("read", (fd, size)),
                ("pread", (fd, size, 0)), ("close", (fd,))]
    if kind == "size":
        v = a[1]
        n = (1, size - 1, size // 2, size + 1, 2 * size, size + 13, PAGE + 8)[v % 7]
        ops: list[tuple[str, tuple]] = [("open", (path, "O_WRONLY", fd)), ("write", (fd, _bytes("s", th, k, n)))]
        if _long(v):  # clamped to the register: then the position is at its end
            second = (size, 1, 0)[(v >> 3) % 3]
            if second == 0 and not shape.zero_writes:
                second = 1
            ops.append(("write", (fd, _bytes("t", th, k, second))))
        return ops + [("close", (fd,))]
    if kind == "offset":
        v = a[1]
        off = (1, size - 1, size, size + 1, size + 64)[v % 5]
        n = (size, 1, 0, size - 1, 2 * size)[(v >> 3) % 5]
        if n == 0 and not shape.zero_writes:
            n = 1
        return [("open", (path, "O_WRONLY", fd)), ("pwrite", (fd, _bytes("o", th, k, n), off)), ("close", (fd,))]
    return [("open", (path, "O_WRONLY", fd)), ("write", (fd, b"")), ("pwrite", (fd, b"", size)), ("close", (fd,))]


def _read_ops(a: list, shape: Shape, fd: str) -> list[tuple[str, tuple]]:
    """Whole and partial reads of one register, at and past its end."""
    reg = shape.regs[a[0]]
    path, size, v = f"{MR_HEAD}/{reg.file_name}", reg.size, a[1]
    body: list[tuple[str, tuple]]
    w = v % 6
    if w == 0:
        body = [("read", (fd, size)), ("read", (fd, size))]  # all of it, then the end
    elif w == 1:
        body = [("read", (fd, size + 1))]
    elif w == 2:
        body = [("read", (fd, 7)), ("read", (fd, 7)), ("read", (fd, size))]
    elif w == 3:
        body = [("pread", (fd, (1, 7, size, 0)[(v >> 3) & 3], (0, 1, size - 1, size, size + 3)[(v >> 5) % 5]))]
    elif w == 4:
        body = [("read", (fd, 1)), ("read", (fd, 1)), ("pread", (fd, size, 0))]
    else:
        body = [("read", (fd, PAGE))]
    return [("open", (path, "O_RDONLY", fd))] + body + [("close", (fd,))]


def _report_ops(kind: str, th: int, a: list, shape: Shape, k: int, fd: str, made: set[str],
                committed: set[str]) -> list[tuple[str, tuple]]:
    """A report item's commit and reads (report, reread: the same report again)."""
    item = _items(th)[a[0]]
    v = a[1]
    if kind == "reread" and item not in committed:
        kind = "report"
    ops = []
    if item not in made:
        made.add(item)
        ops += _mkdir(item, shape)
    if kind == "report":
        ops += _commit(item, _bytes("n", th, k, shape.report_len), fd + "c")
        committed.add(item)
    if (v >> 2) & 1:
        ops += _whole(item, "generation", fd + "g")
    for b in _blobs(v, shape):
        ops += _whole(item, b, fd + b)
    if (v >> 3) & 1:
        ops += _whole(item, "generation", fd + "h")
    return ops


# ----------------------------------------------------------------------------- the oracle
@dataclass
class Violation:
    rule: str
    observed: str
    expected: str
    step: int  # index in file order; -1: the trace as a whole (the refresh count)
    where: str


@dataclass
class _Fd:
    ok: bool  # the open is predicted to succeed
    reg: Any = None  # MrRegister, for a register's fd
    item: str = ""  # rN, for an item's fd
    attr: str = ""
    acc: int = os.O_RDONLY
    pos: int = 0
    rule: str = "mr.files.match_profile"  # the rule an unexpected result on it breaks
    wrote: bool = False


@dataclass
class _Item:
    epoch: int = 0  # accepted writes to the item's attributes so far (a new report each)
    spec: dict[int, dict[str, tuple[int, int]]] = field(default_factory=dict)  # epoch -> reg -> chain range
    blobs: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (epoch, blob) -> the first read
    gens: dict[int, bytes] = field(default_factory=dict)


def _show(res: object) -> str:
    from tsm_conformance.seq import show
    return show(res)


class Judge:
    """One execution's verdict (see the module's docstring); ``__call__`` gives the first violation
    in file order, or None."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.threaded = False  # the trace being judged has several threads
        self._parsed: dict[bytes, Any] = {}

    def __call__(self, steps: list[Step], done: list[Any], c0: int | None, c1: int | None) -> Violation | None:
        for d in done:
            if d.result == HUNG:
                return Violation("mr.hang", "HUNG", "every step returns", d.index, f"step {d.index + 1}: {d.op}")
        labels = [s.thread for s in steps]
        first = next((i for i, t in enumerate(labels) if t is not None), len(steps))
        last = max((i for i, t in enumerate(labels) if t is not None), default=-1)
        threads = sorted({t for t in labels if t is not None})
        order = list(range(first))
        for t in threads:
            order += [i for i in range(first, last + 1) if labels[i] == t]
        order += [i for i in range(first, len(steps)) if labels[i] is None and (i > last or not threads)]
        self.threaded = len(threads) > 1
        first_pass = _Walk(self, steps, done, None).run(order)
        w = _Walk(self, steps, done, first_pass.chains, first_pass.owner)
        w.run(order, teardown_from=last + 1 if threads else len(steps))
        if w.violations:  # threads: what any interleaving shows first (a wrong result), then file order
            return min(w.violations, key=lambda v: (self.threaded and v.rule in CHAIN_RULES, v.step))
        if c0 is not None and c1 is not None:
            return w.refresh_verdict(c1 - c0)
        return None

    def parsed(self, blob: bytes) -> Any:
        """The parsed report (formats.registry), or the ParseError's text: cached per blob."""
        hit = self._parsed.get(blob)
        if hit is None:
            from tsm_conformance.formats.base import ParseError
            from tsm_conformance.formats.registry import parse
            try:
                hit = parse(self.shape.format, blob)
            except ParseError as e:
                hit = str(e)
            if len(self._parsed) > 64:
                self._parsed.clear()
            self._parsed[blob] = hit
        return hit


class _Walk:
    """One pass over the trace.  ``chains`` None: the first pass, which builds each register's
    chain of values (its set-up value, extended by each write predicted to succeed, in the writer's
    program order); else the judging pass."""

    def __init__(self, judge: Judge, steps: list[Step], done: list[Any], chains: dict[str, list[bytes]] | None,
                 owner: dict[str, str | None] | None = None) -> None:
        self.j, self.shape, self.steps, self.done = judge, judge.shape, steps, done
        self.judging = chains is not None
        self.chains: dict[str, list[bytes]] = chains if chains is not None else {}
        self.wrote: dict[str, int] = {}  # successful writes per register so far (in processing order)
        self.owner: dict[str, str | None] = dict(owner or {})  # the thread that extends each register
        self.bound: dict[tuple[str | None, str], int] = {}  # (thread, reg) -> the oldest chain value it may see
        self.fds: dict[str, _Fd] = {}
        self.items: dict[str, _Item] = {}
        self.violations: list[Violation] = []
        # refresh accounting: one thread exactly, for both possible initial states of the stale flag
        self.stale = [True, False]
        self.expected_refreshes = [0, 0]
        self.writes = 0
        self.live_reads = 0
        self.teardown_live = 0
        self.teardown_from = len(steps)
        from tsm_conformance.seq import fd_names
        self.names = fd_names(steps)

    def run(self, order: list[int], teardown_from: int | None = None) -> _Walk:
        if teardown_from is not None:
            self.teardown_from = teardown_from
        for i in order:
            self.step(i)
        return self

    # ---- helpers
    def bad(self, rule: str, i: int, observed: object, expected: str) -> None:
        if self.judging:
            st = self.steps[i]
            self.violations.append(Violation(rule, f"{st.op.short()} -> {_show(observed)}", expected, i,
                                             f"step {i + 1}{' ' + st.thread if st.thread else ''}"))

    def expect(self, rule: str, i: int, want: object) -> None:
        got = self.done[i].result
        if want == "fd":
            if not (isinstance(got, str) and got.startswith("fd")):
                self.bad(rule, i, got, "an fd")
        elif got != want:
            self.bad(rule, i, got, _show(want))

    def candidates(self, thread: str | None, reg: Any) -> range | None:
        """The chain positions a read by ``thread`` may show now: exactly the count of writes so
        far for the writer, set-up and tear-down (and everyone, with one thread); else from what
        the thread saw before on."""
        chain = self.chains.get(reg.name)
        if chain is None:
            return None
        own = self.owner.get(reg.name)
        if thread is None or own is None or own == thread:
            n = self.wrote.get(reg.name, 0)
            return range(n, n + 1)
        return range(self.bound.get((thread, reg.name), 0), len(chain))

    # ---- one step
    def step(self, i: int) -> None:
        st, res = self.steps[i], self.done[i].result
        op = st.op
        name, args = op.name, op.args
        if name == "open":
            self.open(i, str(args[0]), str(args[1]), res)
            return
        if name == "mkdir":
            self.items.setdefault(str(args[0]), _Item())
            if self.judging:
                self.expect("mr.report.io", i, 0)
            return
        if name == "listdir":
            if self.judging:
                self.expect("mr.files.match_profile", i, sorted(self.shape.by_file))
            return
        if name == "stat":
            reg = self.shape.by_file.get(str(args[0]).partition("/")[2])
            if self.judging and reg is not None:
                want = f"mode {0o100000 | reg.mode:06o} size {reg.size}"
                if _show(res) != want:
                    self.bad("mr.files.match_profile", i, res, want)
            return
        f = self.fds.get(str(args[0]))
        if f is None:  # an fd the schedule never opened: not ours
            return
        if name == "close":
            if f.item and f.ok and f.wrote:  # inblob commits at close; privlevel was stored by its write
                self.items[f.item].epoch += 1
            if self.judging:
                self.expect(f.rule, i, 0 if f.ok else "EBADF")
            return
        if not f.ok:
            if self.judging:
                self.expect(f.rule, i, "EBADF")
            return
        if f.item:
            self.item_io(i, f, name, args, res)
        elif name in ("write", "pwrite"):
            self.mr_write(i, st.thread, f, name, args, res)
        else:
            self.mr_read(i, st.thread, f, name, args, res)

    def open(self, i: int, path: str, flags: str, res: object) -> None:
        fd = self.names[i]  # fds are named by the opens in file order
        acc = {"O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY, "O_RDWR": os.O_RDWR}[flags]
        head, _, tail = path.partition("/")
        if head == MR_HEAD:
            reg = self.shape.by_file[tail]
            if acc != os.O_RDONLY and not reg.writable:
                self.fds[fd] = _Fd(False, reg, acc=acc, rule="mr.readonly.refused")
                if self.judging:
                    self.expect("mr.readonly.refused", i, "EACCES")
                return
            self.fds[fd] = _Fd(True, reg, acc=acc)
            if self.judging:
                self.expect("mr.files.match_profile", i, "fd")
            return
        self.fds[fd] = _Fd(True, item=head, attr=tail, acc=acc, rule="mr.report.io")
        if self.judging:
            self.expect("mr.report.io", i, "fd")

    # ---- registers
    def mr_write(self, i: int, thread: str | None, f: _Fd, name: str, args: tuple, res: object) -> None:
        reg, data = f.reg, bytes(args[1])
        size = reg.size
        at = f.pos if name == "write" else int(args[2])
        count = min(len(data), PAGE, max(size - at, 0))
        if at >= size:
            want: object = "EFBIG"
            rule = "mr.write.long_clamped" if name == "write" else "mr.write.offsets"
        elif count == 0:
            want, rule = 0, "mr.write.short_einval"
        elif at != 0:
            want, rule = "EINVAL", "mr.write.offsets"
        elif count != size:
            want, rule = "EINVAL", "mr.write.short_einval"
        else:
            want, rule = size, ("mr.write.long_clamped" if len(data) > size else "mr.write.extends")
        if self.judging:
            self.expect(rule, i, want)
        if want != size:
            return
        if name == "write":
            f.pos += size
        # an extend: the chain grows (first pass) or advances (judging pass)
        if not self.judging:
            chain = self.chains.get(reg.name)
            if chain is not None:
                chain.append(hashlib.new(reg.hash or "sha384", chain[-1] + data[:size]).digest()[:size])
        self.wrote[reg.name] = self.wrote.get(reg.name, 0) + 1
        self.owner.setdefault(reg.name, thread)
        self.writes += 1
        self.stale = [True, True]

    def mr_read(self, i: int, thread: str | None, f: _Fd, name: str, args: tuple, res: object) -> None:
        reg, size = f.reg, f.reg.size
        n = int(args[1])
        at = f.pos if name == "read" else int(args[2])
        count = 0 if n <= 0 or at >= size else min(n, size - at)
        if name == "read":
            f.pos += count
        if not self.judging:
            if reg.name not in self.chains and thread is None and at == 0 and n >= size and \
                    isinstance(res, bytes) and len(res) == size and not self.wrote.get(reg.name):
                self.chains[reg.name] = [res]  # set-up: the model starts where the register is
            return
        if count and reg.live:
            self.live_reads += 1
            if i >= self.teardown_from:
                self.teardown_live += 1
            for k in (0, 1):
                if self.stale[k]:
                    self.expected_refreshes[k] += 1
                    self.stale[k] = False
        if not isinstance(res, bytes) or len(res) != count:
            self.bad("mr.read.contract", i, res, f"{count} bytes" if count else "b'' (end of file)")
            return
        if not count or (reg.writable and not reg.live):  # a non-live register's cache: not modelled
            return
        cand = self.candidates(thread, reg)
        if cand is None:
            return
        chain = self.chains[reg.name]
        hit = next((j for j in cand if chain[j][at:at + count] == res), None)
        if hit is None:
            want = chain[cand.start][at:at + count]
            self.bad("mr.extend.replayed", i, res, _show(want) + (" or a later value on its chain" if len(cand) > 1
                                                                  else ""))
            return
        if thread is not None:
            self.bound[(thread, reg.name)] = hit

    # ---- report items
    def item_io(self, i: int, f: _Fd, name: str, args: tuple, res: object) -> None:
        if name in ("write", "pwrite"):
            f.wrote = True
            if self.judging:
                self.expect("mr.report.io", i, len(args[1]))
            return
        item = self.items.setdefault(f.item, _Item())
        if not self.judging:
            return
        if not isinstance(res, bytes) or not res:
            self.bad("mr.report.io", i, res, "the bytes of the attribute")
            return
        e = item.epoch
        if f.attr == "generation":
            first = item.gens.setdefault(e, res)
            if first != res:
                self.bad("mr.report.cached_until_inblob", i, res,
                         f"{_show(first)} (no inblob since: an extend does not bump generation)")
            return
        thread = self.steps[i].thread
        spec = item.spec.get(e)
        if spec is None:  # the report is made now: the registers as they are now
            spec = item.spec[e] = {}
            for reg in self.shape.regs:
                c = self.candidates(thread, reg)
                if c is not None:
                    spec[reg.name] = (c.start, c.stop)
        seen = item.blobs.get((e, f.attr))
        if seen is not None:
            if seen != res:
                self.bad("mr.report.cached_until_inblob", i, res,
                         f"{_show(seen)} (the report already read at this generation)")
            return
        item.blobs[(e, f.attr)] = res
        self.report_fields(i, f.attr, res, spec)

    def report_fields(self, i: int, blob: str, data: bytes, spec: dict[str, tuple[int, int]]) -> None:
        parsed: Any = None
        for reg in self.shape.regs:
            if reg.name not in spec:
                continue
            if reg.report_blob == blob and reg.report_offset is not None:
                got = data[reg.report_offset:reg.report_offset + reg.size]
            elif reg.report_field and blob == "outblob":
                if parsed is None:
                    parsed = self.j.parsed(data)
                if isinstance(parsed, str):
                    self.bad("mr.report.coherent", i, data, f"a {self.shape.format} report ({parsed})")
                    return
                got = bytes(getattr(getattr(parsed, "body", parsed), reg.report_field, b""))
            else:
                continue
            lo, hi = spec[reg.name]
            chain = self.chains[reg.name]
            if not any(chain[j] == got for j in range(lo, hi)):
                self.violations.append(Violation(
                    "mr.report.coherent", f"{self.steps[i].op.short()} -> {reg.name} {_show(got)} in the report",
                    f"{reg.name} {_show(chain[lo])}" + (" or a later value on its chain" if hi - lo > 1 else "") +
                    " (the register when the report was made)", i,
                    f"step {i + 1}{' ' + str(self.steps[i].thread) if self.steps[i].thread else ''}"))

    # ---- the refresh count
    def refresh_verdict(self, delta: int) -> Violation | None:
        if not self.j.threaded:
            allowed = sorted(set(self.expected_refreshes))
            if delta in allowed:
                return None
            want = " or ".join(map(str, allowed))
        else:
            hi = min(self.writes + 1, self.live_reads)
            lo = 1 if self.writes and self.teardown_live else 0
            if lo <= delta <= hi:
                return None
            want = f"{lo}..{hi}"
        return Violation("mr.refresh.only_after_write", f"{delta} refreshes",
                         f"{want} (one per read of a live register after a write, {ABI} §4)", -1,
                         "the refresh count over the whole schedule")


# ----------------------------------------------------------------------------- running
class Runner:
    """The per-process state of the target: tree, profile, shape, judge."""

    def __init__(self, ctx: TargetContext) -> None:
        harness.prepare(ctx)
        self.ctx = ctx
        self.profile, self.facts = ctx.profile, ctx.facts
        self.m = self.profile.measurements
        self.tree = ctx.tree()
        if self.tree.kind == "live" and not self.m.extendable_by_tests:  # make() says why; never write these
            raise ValueError(f"{NAME}: {self.profile.name}'s registers are not a test's to extend on a live machine")
        self._spare: Any = None
        from tsm_conformance.seq import Pool
        self.pool = Pool()
        self.shape = Shape(self.profile, self.facts, getattr(self.tree, "limits", None))
        self.judge = Judge(self.shape)
        # (group, counter, may extend on a live tree): the executor's and replay's measurements/NAME
        self.mr = (self.m.group, self.m.refresh_counter, bool(self.m.extendable_by_tests or self.tree.kind != "live"))
        self._last: tuple[list[Step], list[Any]] | None = None

    def fresh(self) -> Any:
        """An emulated tree as newly booted (rebooted in place, as fuzz_sequences does); else the tree."""
        if not self.ctx.emulate:
            return self.tree
        if self._spare is None:
            self._spare = self.ctx.tree()
        else:
            self._spare.reboot()
        return self._spare

    def refreshes(self, tree: Any) -> int | None:
        g = tree.measurements(self.m.group, self.m.refresh_counter)
        return g.refreshes() if g is not None else None

    def run(self, tree: Any, steps: list[Step]) -> tuple[list[Any], Violation | None]:
        from tsm_conformance.seq import execute_threads
        c0 = self.refreshes(tree)
        done = execute_threads(tree, steps, harness.fresh_prefix(self.ctx), pool=self.pool, mr=self.mr)
        if tree is self._spare and any(d.result == HUNG for d in done):
            self._spare = None  # a thread may still be inside it
        c1 = self.refreshes(tree)
        return done, self.judge(steps, done, c0, c1)

    def one(self, data: bytes) -> None:
        premade, macros = decode(data, self.shape)
        steps = schedule(premade, macros, self.shape)
        done, v = self.run(self.fresh(), steps)
        self._last = (steps, done)
        if v is None:
            return
        seq, v = self.confirm(premade, macros, v)
        raise Finding(v.rule, f"{v.observed}; expected {v.expected} ({v.where})", seq)

    def header(self, rule: str, observed: str, threaded: bool) -> dict[str, str]:
        hdr = harness.header(NAME, rule, observed, self.ctx)
        hdr.update(_group_rule(self.profile))
        if threaded:
            hdr.update({"schedule": "threads", "attempts": str(CONFIRM_ATTEMPTS * 10)})
        if self.ctx.emulate:
            hdr["emulate"] = self.ctx.emulate
        return hdr

    def last_sequence(self) -> Any:
        """The last input as a replayable Sequence (tsm_fuzz.api.sequence_hook), its observed
        results as expectations where one thread ran."""
        from tsm_conformance.seq import Sequence, show
        if self._last is None:
            return None
        steps, done = self._last
        threaded = len({s.thread for s in steps if s.thread}) > 1
        return Sequence([Step(s.op, None if threaded else show(d.result), s.thread) for s, d in zip(steps, done)],
                        self.header("", "", threaded))

    # ---- findings
    def _again(self, premade: bool, macros: list[Macro], rule: str,
               attempts: int) -> tuple[list[Step], Violation, list[Any]] | None:
        steps = schedule(premade, macros, self.shape)
        for _ in range(attempts):
            done, v = self.run(self.fresh(), steps)
            if v is not None and v.rule == rule:
                return steps, v, done
        return None

    def confirm(self, premade: bool, macros: list[Macro], first: Violation) -> tuple[Any, Violation]:
        """Shrink macro by macro while the rule still breaks; the Sequence of the smallest run,
        with its observed results as expectations (a threaded one's: the evidence step only)."""
        from tsm_conformance.seq import Sequence, show
        rule = first.rule
        racy = len({m[1] for m in macros}) > 1
        tries = CONFIRM_ATTEMPTS if racy else 1
        best = self._again(premade, macros, rule, tries)
        note = ""
        if best is None:  # a live tree moved on, or a rare race: report the run as observed
            note = "did not recur on a fresh tree: it depends on state earlier inputs left (or a rare race)"
            steps = schedule(premade, macros, self.shape)
            assert self._last is not None
            best = (steps, first, self._last[1])
        if racy:  # one thread, program order kept: a deterministic reproduction beats a racy one
            flat = one_writer([(m[0], 0, *m[2:]) for m in macros], self.shape)
            got = self._again(premade, flat, rule, 1)
            if got is not None:
                macros, best, note = flat, got, ""
        end = time.monotonic() + SHRINK_BUDGET
        i = 0
        while i < len(macros) and time.monotonic() < end:
            cand = macros[:i] + macros[i + 1:]
            got = self._again(premade, cand, rule, tries if len({m[1] for m in cand}) > 1 else 1)
            if got is not None:
                macros, best = cand, got
            else:
                i += 1
        if premade and time.monotonic() < end:
            got = self._again(False, macros, rule, tries if len({m[1] for m in macros}) > 1 else 1)
            if got is not None:
                best = got
        steps, v, done = best
        threaded = len({s.thread for s in steps if s.thread}) > 1
        at = f" at step {v.step + 1}" if v.step >= 0 else ""
        hdr = self.header(v.rule, f"{v.observed}{at}", threaded)
        if v.rule == "mr.refresh.only_after_write":
            note = (note + "; " if note else "") + ("the evidence is the provider's refresh count (Tree.measurements"
                                                    "().refreshes()), which a sequence's results do not show")
        if note:
            hdr["note"] = note
        seq = Sequence([Step(s.op, show(d.result) if (not threaded or d.index == v.step) else None, s.thread)
                        for s, d in zip(steps, done)], hdr)
        return seq, v


def make(ctx: TargetContext):  # noqa: ANN201
    """The one-input function; where the target cannot run (``unavailable(ctx)``) one that does
    nothing, after saying why once (the runner asks ``unavailable`` without a tree)."""
    why = unavailable(ctx)
    if why:
        print(f"tsm-fuzz: {NAME}: unavailable here: {why}", file=sys.stderr, flush=True)

        def idle(data: bytes) -> None:
            return None
        idle.unavailable = why  # type: ignore[attr-defined]
        return idle
    return Runner(ctx).one


if __name__ == "__main__":  # plain-random driver, no atheris: python -m tsm_fuzz.targets.fuzz_measurements SPEC SECONDS
    import random
    spec, secs = (sys.argv[1] if len(sys.argv) > 1 else "tsm_test"), float(sys.argv[2] if len(sys.argv) > 2 else 10)
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    one = make(TargetContext(emulate=spec, prefix=with_pid(FUZZ)))
    rnd, n, t0 = random.Random(int(os.environ.get("SEED", "1"))), 0, time.monotonic()
    while time.monotonic() - t0 < secs:
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, size)))
        n += 1
        try:
            one(data)
        except Finding as f:
            from tsm_conformance.seq import format_tsmseq
            print(f"FINDING after {n} inputs, {time.monotonic() - t0:.2f} s: {f.rule}: {f.observed}")
            print(format_tsmseq(f.sequence))
            break
    dt = time.monotonic() - t0
    print(f"{spec}: {n} inputs in {dt:.1f} s = {n / dt:.0f} execs/s")
