"""Operation sequences: one Tree operation per line, replayable on any tree, results normalised.

The text form is the one failure messages print: ``mkdir(r0)``, ``open(r0/inblob, O_WRONLY)``,
``write(fd0, b'...')``, ``pread(fd0, 16, 0)``, ``close(fd0)``.  ``r0, r1 ...`` are report items
(mapped to unique real names), ``fd0, fd1 ...`` the fds in the order they were opened.  Results are
normalised so two trees can be compared operation by operation: ``0``, a count, ``fdN``, an errno
name, or bytes as a short literal / ``<len> sha1:<8 hex>``, each followed by the item's generation
after state-changing operations.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
import threading
import time
from dataclasses import dataclass

from . import errnos
from .target.base import Stat, Tree

FLAGS = {"O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY, "O_RDWR": os.O_RDWR, "O_APPEND": os.O_APPEND,
         "O_TRUNC": os.O_TRUNC, "O_CREAT": os.O_CREAT}
WHENCE = {"SEEK_SET": os.SEEK_SET, "SEEK_CUR": os.SEEK_CUR, "SEEK_END": os.SEEK_END}
OPS = ("mkdir", "rmdir", "listdir", "stat", "open", "close", "read", "pread", "write", "pwrite", "lseek", "param")
_LINE = re.compile(r"^(\w+)\((.*)\)$")


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple

    def __str__(self) -> str:
        parts = []
        for a in self.args:
            parts.append(repr(a) if isinstance(a, (bytes, int)) else str(a))
        return f"{self.name}({', '.join(parts)})"


def parse_op(line: str) -> Op:
    """``write(fd0, b'ab')`` -> Op('write', ('fd0', b'ab')); ValueError on anything else."""
    m = _LINE.match(line.split(" #")[0].split(" -> ")[0].strip())
    if not m or m[1] not in OPS:
        raise ValueError(f"not an operation: {line!r}")
    args: list[object] = []
    for tok in _split_args(m[2]):
        if tok.startswith(("b'", 'b"')) or tok.lstrip("-").isdigit():
            args.append(ast.literal_eval(tok))
        else:
            args.append(tok)
    return Op(m[1], tuple(args))


def _unquoted(s: str):  # noqa: ANN202
    """(index, char) for every character outside bytes/str literals."""
    quote, esc = "", False
    for i, ch in enumerate(s):
        if quote:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        else:
            yield i, ch


def _split_args(s: str) -> list[str]:
    """Split on commas outside bytes literals."""
    cuts = [i for i, ch in _unquoted(s) if ch == ","]
    parts = [s[a + 1:b] for a, b in zip([-1] + cuts, cuts + [len(s)])]
    return [p.strip() for p in parts if p.strip()]


def _flags(text: str) -> int:
    v = 0
    for part in str(text).split("|"):
        v |= FLAGS[part.strip()]
    return v


def _show(data: bytes) -> str:
    return repr(data) if len(data) <= 24 else f"<{len(data)} sha1:{hashlib.sha1(data).hexdigest()[:8]}>"


def show(res: object) -> str:
    """The normalised text of a raw ``Executor.call`` result."""
    if isinstance(res, bytes):
        return _show(res)
    if isinstance(res, list):
        return "[" + ", ".join(res) + "]"
    if isinstance(res, Stat) or hasattr(res, "mode"):
        return f"mode {res.mode:06o} size {res.size}"
    return str(res)


class Executor:
    """Runs ops on one tree with fresh item names; every created item is removed by ``close``."""

    def __init__(self, tree: Tree, prefix: str, annotate: bool = False) -> None:
        self.tree, self.prefix = tree, prefix
        self.annotate = annotate  # append the new item's generation to mkdir results
        self.fds: dict[str, int] = {}
        self.nfd = 0
        self.items: set[str] = set()
        self._lock = threading.Lock()  # fds may be opened and closed by several threads
        self._real: dict[str, str] = {}
        self._inv: dict[str, str] | None = None  # real item name -> r-name, for listdir

    def real(self, path: str) -> str:
        hit = self._real.get(path)
        if hit is not None:
            return hit
        head, sep, tail = str(path).partition("/")
        out = f"{self.prefix}{head[1:]}" + sep + tail if re.fullmatch(r"r\d+", head) else str(path)
        self._real[path] = out  # paths repeat; the regex is most of the cost of a cheap op
        return out

    def _gen(self, path: str) -> str:
        item = self.real(str(path).split("/")[0])
        try:
            fd = self.tree.open(f"{item}/generation", os.O_RDONLY)
        except OSError as e:
            return f" gen={errnos.name(e.errno)}"
        try:
            return f" gen={self.tree.read(fd, 64).decode().strip()}"
        except OSError as e:
            return f" gen={errnos.name(e.errno)}"
        finally:
            self.tree.close(fd)

    def run(self, op: Op) -> str:
        """Run one op; its normalised result."""
        res = self.call(op)
        if op.name == "mkdir" and res == 0 and self.annotate:
            return "0" + self._gen(op.args[0])
        return show(res)

    def call(self, op: Op, fd_name: str | None = None) -> object:
        """Run one op; its raw result: an errno name (``"EINVAL"``), ``fdN`` for open, bytes for
        reads, a sorted name list for listdir, a Stat, else an int (0 for mkdir/rmdir/close).
        ``fd_name`` names an open's fd (concurrent schedules fix the names in file order)."""
        t, a = self.tree, op.args
        try:
            if op.name == "mkdir":
                t.mkdir(self.real(a[0]))
                self.items.add(self.real(a[0]).split("/")[0])
                return 0
            if op.name == "rmdir":
                t.rmdir(self.real(a[0]))
                return 0
            if op.name == "listdir":
                where = self.real(a[0]) if a and a[0] not in ("", ".") else ""
                names = t.listdir(where)
                if not where:  # the group: only this sequence's items, by their r-names
                    if self._inv is None:
                        self._inv = {self.real(f"r{i}"): f"r{i}" for i in range(16)}
                    names = [self._inv[n] for n in names if n in self._inv]
                return sorted(names)
            if op.name == "stat":
                return t.stat(self.real(a[0]))
            if op.name == "param":  # a provider module parameter (tsm_test; emulated or VM control)
                ctl = getattr(t, "control", None)
                if ctl is None:
                    return "EOPNOTSUPP"
                ctl.set_param(str(a[0]), str(a[1]))
                return 0
            if op.name == "open":
                if fd_name is None:  # named even when open fails: later ops see EBADF
                    fd_name = f"fd{self.nfd}"
                    self.nfd += 1
                fd = t.open(self.real(a[0]), _flags(a[1]))
                with self._lock:
                    self.fds[fd_name] = fd
                return fd_name
            fd = self.fds.get(str(a[0]))
            if fd is None:
                return "EBADF"
            if op.name == "close":
                with self._lock:
                    del self.fds[str(a[0])]
                t.close(fd)
                return 0
            if op.name == "read":
                return t.read(fd, int(a[1]))
            if op.name == "pread":
                return t.pread(fd, int(a[1]), int(a[2]))
            if op.name == "write":
                return t.write(fd, a[1])
            if op.name == "pwrite":
                return t.pwrite(fd, a[1], int(a[2]))
            if op.name == "lseek":
                return t.lseek(fd, int(a[1]), WHENCE[str(a[2])])
        except OSError as e:
            return errnos.name(e.errno)
        raise ValueError(f"unknown operation {op.name}")

    def finish(self) -> None:
        for fd in self.fds.values():
            try:
                self.tree.close(fd)
            except OSError:
                pass
        self.fds.clear()
        for name in sorted(self.items):
            try:
                self.tree.rmdir(name)
            except OSError:
                pass


def execute(tree: Tree, ops: list[Op], prefix: str, track: list[str] | None = None) -> list[str]:
    """Run a sequence; one normalised result per op, plus the generations of ``track`` items after
    each op that can change state."""
    ex = Executor(tree, prefix, annotate=bool(track))
    out = []
    try:
        for op in ops:
            res = ex.run(op)
            if op.name in ("close", "write", "pwrite") and track:
                res += "".join(ex._gen(r) for r in track)
            out.append(res)
    finally:
        ex.finish()
    return out


# ----------------------------------------------------------------------------- .tsmseq files
HEADER = "# tsmseq 1"
_THREAD = re.compile(r"^(T\d+):\s*")


@dataclass
class Step:
    op: Op
    expected: str | None = None  # normalised result after "  # "
    thread: str | None = None  # "T1" ... (file order is the interleaving replayed)


@dataclass
class Sequence:
    """A .tsmseq file: ``# key: value`` header lines, then one step per line.

    Header keys used: check, rule, target, kernel, emulate (a spec to replay on), track (items whose
    generation follows each write/close), verified-on (kernels that produced the expected results)."""

    steps: list[Step]
    header: dict[str, str]

    def ops(self) -> list[Op]:
        return [s.op for s in self.steps]

    def track(self) -> list[str]:
        return self.header.get("track", "").split()


def format_tsmseq(seq: Sequence) -> str:
    lines = [HEADER] + [f"# {k}: {v}" for k, v in seq.header.items()]
    for st in seq.steps:
        text = (f"{st.thread}: " if st.thread else "") + str(st.op)
        lines.append(f"{text}  # {st.expected}" if st.expected is not None else text)
    return "\n".join(lines) + "\n"


def parse_tsmseq(text: str) -> Sequence:
    """ValueError naming the line for anything that is not a .tsmseq."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != HEADER:
        raise ValueError(f"line 1: expected '{HEADER}'")
    header: dict[str, str] = {}
    steps: list[Step] = []
    for no, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, val = line[1:].strip().partition(":")
            if sep and not steps and re.fullmatch(r"[a-z][a-z-]*", key.strip()):
                header[key.strip()] = val.strip()
            continue
        m = _THREAD.match(line)
        thread = m[1] if m else None
        body = line[m.end():] if m else line
        code, _, expected = _split_comment(body)
        try:
            op = parse_op(code)
        except (ValueError, SyntaxError) as e:
            raise ValueError(f"line {no}: {e}") from None
        steps.append(Step(op, expected.strip() if expected else None, thread))
    return Sequence(steps, header)


def _split_comment(body: str) -> tuple[str, str, str]:
    """Split ``op(...)  # expected`` at the first '#' outside a bytes literal."""
    i = next((i for i, ch in _unquoted(body) if ch == "#"), None)
    return (body.strip(), "", "") if i is None else (body[:i].strip(), "#", body[i + 1:])


def threaded(seq: Sequence) -> bool:
    """Steps carry ``T<n>:`` labels of more than one thread: a concurrent schedule."""
    return len({st.thread for st in seq.steps if st.thread}) > 1


def replay(tree: Tree, seq: Sequence, prefix: str, attempts: int | None = None) -> list[tuple[int, Step, str]]:
    """Run a sequence; every step whose result differs from its expectation: (index, step, got).

    A multi-threaded sequence runs its threads concurrently (``execute_threads``); a race does not
    recur every time, so it is run up to ``attempts`` times (default: the header's ``attempts``,
    else 1) and the first run that matches every expectation counts as reproduced."""
    if not threaded(seq):
        got = execute(tree, seq.ops(), prefix, seq.track())
        return [(i, st, g) for i, (st, g) in enumerate(zip(seq.steps, got))
                if st.expected is not None and st.expected != g]
    diffs: list[tuple[int, Step, str]] = []
    for _ in range(max(1, attempts or int(seq.header.get("attempts", "1")))):
        done = execute_threads(tree, seq.steps, prefix)
        diffs = [(d.index, seq.steps[d.index], show(d.result)) for d in done
                 if seq.steps[d.index].expected is not None and seq.steps[d.index].expected != show(d.result)]
        if not diffs:
            break
    return diffs


# ----------------------------------------------------------------------------- concurrent schedules
HUNG = "HUNG"  # the result of a step still running at the schedule's deadline
SWITCH_INTERVAL = 1e-5  # seconds between GIL switches while a schedule's threads run


@dataclass
class Done:
    """One step of an executed schedule: its raw ``Executor.call`` result and when it ran."""

    index: int  # position in file order
    thread: str | None
    op: Op
    result: object
    start: float  # time.monotonic()
    end: float


def fd_names(steps: list[Step]) -> dict[int, str]:
    """Step index -> fd name for every open: ``fdN`` in file order, whatever order the threads
    actually open them in (so the file's names mean the same fds in every run)."""
    opens = [i for i, st in enumerate(steps) if st.op.name == "open"]
    return {i: f"fd{k}" for k, i in enumerate(opens)}


def execute_threads(tree: Tree, steps: list[Step], prefix: str, deadline: float = 30.0) -> list[Done]:
    """Run a ``T<n>:``-labelled schedule: unlabelled steps before the first labelled one run first,
    in file order (set-up); then one OS thread per label, each running its own steps in program
    order, all released by one barrier; then the unlabelled steps after the last labelled one
    (tear-down, e.g. a final generation read).
    Returns one Done per step in file order; a step still running at ``deadline`` seconds is HUNG
    (its thread is left behind as a daemon)."""
    ex = Executor(tree, prefix)
    names = fd_names(steps)
    done: list[Done | None] = [None] * len(steps)

    def run(i: int) -> None:
        t0 = time.monotonic()
        res = ex.call(steps[i].op, names.get(i))
        done[i] = Done(i, steps[i].thread, steps[i].op, res, t0, time.monotonic())
    programs: dict[str, list[int]] = {}
    try:
        labelled = [i for i, st in enumerate(steps) if st.thread is not None]
        after = [i for i, st in enumerate(steps) if st.thread is None and labelled and i > labelled[-1]]
        tail = set(after)
        for i, st in enumerate(steps):
            if st.thread is None and i not in tail:
                run(i)
            elif st.thread is not None:
                programs.setdefault(st.thread, []).append(i)
        if len(programs) == 1:  # one thread: no need for another OS thread
            for i in next(iter(programs.values())):
                run(i)
        elif programs:
            gate = threading.Barrier(len(programs))
            switch = sys.getswitchinterval()
            # in-process trees interleave only at GIL switches (5 ms by default): make them
            # fine-grained while the threads run, or races in an emulator would hardly ever recur
            sys.setswitchinterval(SWITCH_INTERVAL)

            def worker(idx: list[int]) -> None:
                try:
                    gate.wait(deadline)
                except threading.BrokenBarrierError:
                    return
                for i in idx:
                    run(i)
            workers = [threading.Thread(target=worker, args=(idx,), daemon=True) for idx in programs.values()]
            for w in workers:
                w.start()
            end = time.monotonic() + deadline
            for w in workers:
                w.join(max(0.0, end - time.monotonic()))
            sys.setswitchinterval(switch)
        if all(done[i] is not None for i in labelled):
            for i in after:
                run(i)
    finally:
        if not any(d is None for d in done):
            ex.finish()
    now = time.monotonic()
    return [d if d is not None else Done(i, steps[i].thread, steps[i].op, HUNG, now - deadline, now)
            for i, d in enumerate(done)]


def from_log(log: list[tuple[str, tuple, object]], names: dict[str, str], header: dict[str, str]) -> Sequence:
    """A failing check's recorded operations as a replayable sequence (results as observed).

    Provider-control actions (rmmod, insmod, module parameters) are kept as comments: replaying
    them needs the VM target."""
    steps: list[Step] = []
    fds: dict[int, str] = {}
    nfd = 0
    notes: list[str] = []

    def path(p: object) -> str:
        head, sep, tail = str(p).partition("/")
        return (names.get(head, head) + sep + tail) or "."
    for op, args, res in log:
        if op == "#":
            notes.append(str(args[0]))
            continue
        a = list(args)
        if op in ("mkdir", "rmdir", "listdir", "stat", "open"):
            a[0] = path(a[0])
        if op == "open":
            fl = int(a[1])
            acc = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}[fl & os.O_ACCMODE]
            a[1] = "|".join([acc] + [n for n, v in FLAGS.items() if v and v & fl and n not in ("O_WRONLY", "O_RDWR")])
        if op in ("close", "read", "pread", "write", "pwrite", "lseek"):
            a[0] = fds.get(int(a[0]), "fd?")
        if op == "lseek":
            a[2] = next((n for n, v in WHENCE.items() if v == a[2]), a[2])
        if op == "open":  # named in open order, failed opens included (as the executor does)
            name = f"fd{nfd}"
            nfd += 1
        if isinstance(res, OSError):
            shown = errnos.name(res.errno)
        elif op == "open":
            shown = fds[int(res)] = name  # type: ignore[arg-type]
        elif res is None:
            shown = "0"
        elif isinstance(res, bytes):
            shown = _show(res)
        elif isinstance(res, list):
            inv = {k: v for k, v in names.items()}
            shown = "[" + ", ".join(sorted(inv.get(x, x) for x in res if not a or a[0] != "." or x in inv)) + "]"
        elif hasattr(res, "mode"):
            shown = f"mode {res.mode:06o} size {res.size}"  # type: ignore[attr-defined]
        else:
            shown = str(res)
        steps.append(Step(Op(op, tuple(a)), shown))
    if notes:
        header = {**header, "provider-control": "; ".join(notes)}
    return Sequence(steps, header)
