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
from dataclasses import dataclass

from . import errnos
from .target.base import Tree

FLAGS = {"O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY, "O_RDWR": os.O_RDWR, "O_APPEND": os.O_APPEND,
         "O_TRUNC": os.O_TRUNC, "O_CREAT": os.O_CREAT}
WHENCE = {"SEEK_SET": os.SEEK_SET, "SEEK_CUR": os.SEEK_CUR, "SEEK_END": os.SEEK_END}
OPS = ("mkdir", "rmdir", "listdir", "stat", "open", "close", "read", "pread", "write", "pwrite", "lseek")
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


def _split_args(s: str) -> list[str]:
    """Split on commas outside bytes literals."""
    out, cur, quote, esc = [], "", "", False
    for ch in s:
        if quote:
            cur += ch
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            cur += ch
        elif ch == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _flags(text: str) -> int:
    v = 0
    for part in str(text).split("|"):
        v |= FLAGS[part.strip()]
    return v


def _show(data: bytes) -> str:
    return repr(data) if len(data) <= 24 else f"<{len(data)} sha1:{hashlib.sha1(data).hexdigest()[:8]}>"


class Executor:
    """Runs ops on one tree with fresh item names; every created item is removed by ``close``."""

    def __init__(self, tree: Tree, prefix: str) -> None:
        self.tree, self.prefix = tree, prefix
        self.fds: dict[str, int] = {}
        self.nfd = 0
        self.items: set[str] = set()

    def real(self, path: str) -> str:
        head, sep, tail = str(path).partition("/")
        if re.fullmatch(r"r\d+", head):
            return f"{self.prefix}{head[1:]}" + sep + tail
        return str(path)

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
        t, a = self.tree, op.args
        try:
            if op.name == "mkdir":
                t.mkdir(self.real(a[0]))
                self.items.add(self.real(a[0]).split("/")[0])
                return "0" + self._gen(a[0])
            if op.name == "rmdir":
                t.rmdir(self.real(a[0]))
                return "0"
            if op.name == "listdir":
                where = self.real(a[0]) if a and a[0] not in ("", ".") else ""
                names = t.listdir(where)
                if not where:  # the group: only this sequence's items, by their r-names
                    inv = {self.real(f"r{i}"): f"r{i}" for i in range(16)}
                    names = [inv[n] for n in names if n in inv]
                return "[" + ", ".join(sorted(names)) + "]"
            if op.name == "stat":
                st = t.stat(self.real(a[0]))
                return f"mode {st.mode:06o} size {st.size}"
            if op.name == "open":
                name = f"fd{self.nfd}"  # named even when open fails: later ops see EBADF
                self.nfd += 1
                self.fds[name] = t.open(self.real(a[0]), _flags(a[1]))
                return name
            if str(a[0]) not in self.fds:
                return "EBADF"
            fd = self.fds[str(a[0])]
            if op.name == "close":
                del self.fds[str(a[0])]
                t.close(fd)
                return "0"
            if op.name == "read":
                return _show(t.read(fd, int(a[1])))
            if op.name == "pread":
                return _show(t.pread(fd, int(a[1]), int(a[2])))
            if op.name == "write":
                return str(t.write(fd, a[1]))
            if op.name == "pwrite":
                return str(t.pwrite(fd, a[1], int(a[2])))
            if op.name == "lseek":
                return str(t.lseek(fd, int(a[1]), WHENCE[str(a[2])]))
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
    ex = Executor(tree, prefix)
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
