"""Operation sequences: one Tree operation per line, replayable on any tree, results normalised.

The one vocabulary of operations (``ARG0``): the text form is the one failure messages print
(``render_step``; they shorten long data) and .tsmseq files hold: ``mkdir(r0)``,
``open(r0/inblob, O_WRONLY)``, ``write(fd0, b'...')``, ``pread(fd0, 16, 0)``, ``close(fd0)``.
``r0, r1 ...`` are report items (mapped to unique real names), ``fd0, fd1 ...`` the files in the
order of the opens that made them, failed opens counted.  Results are normalised so two trees can
be compared operation by operation: ``0``, a count, ``fdN``, an errno name, or bytes as a short
literal / ``<len> sha1:<8 hex>``, each followed by the item's generation after state-changing
operations when generations are tracked; reads of report blobs, whose bytes differ per generation,
by a projection (``project_reads``) when the file says what its reports look like.
"""

from __future__ import annotations

import ast
import errno
import functools
import hashlib
import os
import re
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from . import coop as _coop
from . import errnos
from .inputs import (TSMSEQ_LINE, TSMSEQ_LINES, TSMSEQ_MAX, TSMSEQ_READ, TSMSEQ_THREADS, InputError,
                     read_bounded, size_text, utf8)
from .suggest import did_you_mean
from .target.base import Tree

FLAGS = {"O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY, "O_RDWR": os.O_RDWR, "O_APPEND": os.O_APPEND,
         "O_TRUNC": os.O_TRUNC, "O_CREAT": os.O_CREAT}
WHENCE = {"SEEK_SET": os.SEEK_SET, "SEEK_CUR": os.SEEK_CUR, "SEEK_END": os.SEEK_END}
#: The one table of operation kinds and what each first argument names: a path below the report
#: group ("r0", "r0/inblob"; "." is the group), an open file, or (param) a provider module
#: parameter.  Files are named fd0, fd1 ... in the order of the opens that made them, failed opens
#: counted: the executor, the failure text and .tsmseq files all number them so, and a replay on a
#: tree where an open fails still means the same file by the same name (later ops give EBADF).
ARG0: dict[str, str] = {
    "mkdir": "path", "rmdir": "path", "listdir": "path", "stat": "path", "open": "path",
    "close": "fd", "read": "fd", "pread": "fd", "write": "fd", "pwrite": "fd", "lseek": "fd",
    "param": "param",
}
OPS = tuple(ARG0)
PATH_OPS = tuple(op for op, kind in ARG0.items() if kind == "path")
FD_OPS = tuple(op for op, kind in ARG0.items() if kind == "fd")
TREE_OPS = PATH_OPS + FD_OPS  # the Tree protocol's operations: what a Recorder records
DATA_OPS = ("write", "pwrite")  # the second argument is the bytes written
COMMIT_OPS = ("close",) + DATA_OPS  # may change an item's generation (``execute``'s ``track``)
BLOBS = ("outblob", "auxblob", "manifestblob")  # the report's binary attributes
SHORT = 24  # bytes up to this long are shown as a literal, longer ones as <len sha1:8 hex>

# ----------------------------------------------------------------------------- the grammar
#: The one grammar of an operation, ``NAME(ARG, ...)``: each operation's arguments in order (the
#: first is ``ARG0``'s kind).  Every text form is read by it (``parse_op``: .tsmseq steps, failure
#: texts), and ``replay`` holds every sequence to it, however it was made.  Argument kinds:
#:
#: * ``path``: ``.`` (the report group: listdir and stat only), ``ITEM`` or ``ITEM/NAME``, names of
#:   letters, digits and ``_ . + : @ = ~ -`` (not starting with ``.``), at most 255 bytes each:
#:   nothing absolute, no ``..``, nothing deeper (report items hold only attributes);
#: * ``fd``: ``fd0``, ``fd1`` ... (``fd?``: an fd a recorded log could not name; code may use
#:   placeholders such as ``fd@-1``);
#: * ``count``: a byte count, 0 .. ``inputs.TSMSEQ_READ``; ``offset``: 0 .. 2**63-1; ``soffset``:
#:   -2**63 .. 2**63-1 (lseek);
#: * ``data``: one bytes literal, ``b'...'`` or ``b"..."`` (Python's escapes);
#: * ``flags``: ``O_*`` names of ``FLAGS`` joined by ``|``, or an access mode 0-3;
#: * ``whence``: ``SEEK_SET``, ``SEEK_CUR``, ``SEEK_END`` or a number 0-4;
#: * ``param``: a module parameter name; ``value``: a number or a word.
ARGS: dict[str, tuple[str, ...]] = {
    "mkdir": ("path",), "rmdir": ("path",), "listdir": ("path",), "stat": ("path",),
    "open": ("path", "flags"), "close": ("fd",), "read": ("fd", "count"), "pread": ("fd", "count", "offset"),
    "write": ("fd", "data"), "pwrite": ("fd", "data", "offset"), "lseek": ("fd", "soffset", "whence"),
    "param": ("param", "value"),
}
assert ARGS.keys() == ARG0.keys() and all(ARGS[op][0] == kind for op, kind in ARG0.items())
MIN_ARGS = {"listdir": 0}  # listdir() is listdir(.): the group (older .tsmseq files say so)
GROUP_OPS = ("listdir", "stat")  # the only operations on "." (the group itself)
NAME_MAX = 255
_NAME = r"[A-Za-z0-9_+:@=~-][A-Za-z0-9_.+:@=~-]*"
_PATH = re.compile(rf"(?:{_NAME})(?:/{_NAME})?")
_RNAME = re.compile(r"r\d+")  # a fresh report item of the sequence's own: r0, r1 ...
#: ``measurements/NAME``: a register file of the provider's measurement group (tsm-mr, in sysfs
#: beside the provider, not an item: docs/abi-measurements.md), reached through Tree.measurements;
#: the header's ``mr-group`` and ``mr-counter`` say where it is on a live machine, and ``mr-extend:
#: yes`` (set only for a test provider's registers) lets a live replay write them
MR_HEAD = "measurements"
_FD = re.compile(r"fd[A-Za-z0-9_@?.+-]*")
_INT = re.compile(r"-?[0-9]+")
_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_VALUE = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")
_BYTES = re.compile(r"""b(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""", re.S)
#: A quoted literal, or from an unclosed quote to the end (group 1 or 2: the closing quote, None
#: when it does not end): one pass, however the quotes are arranged.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.|\\\Z)*(')?" + r'|"(?:[^"\\]|\\.|\\\Z)*(")?', re.S)
_CALL = re.compile(r"([A-Za-z_]\w*)\s*\((.*)\)", re.S)


class SeqError(ValueError):
    """A malformed sequence: ``str()`` is one line, ``FILE:LINE: what is wrong`` (``line N: ...``
    without a file name, just the problem without a line)."""

    def __init__(self, what: str, line: int | None = None, file: str | None = None) -> None:
        self.what, self.line, self.file = " ".join(str(what).split()), line, file
        super().__init__(self._text())

    def _text(self) -> str:
        if self.file:
            return f"{self.file}:{self.line}: {self.what}" if self.line else f"{self.file}: {self.what}"
        return f"line {self.line}: {self.what}" if self.line else self.what

    def at(self, line: int | None = None, file: str | None = None) -> SeqError:
        """The same problem, located."""
        return SeqError(self.what, line if line is not None else self.line, file if file is not None else self.file)


def _excerpt(text: str, n: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= n else text[:n] + "...")


def _mask(text: str) -> str:
    """``text`` with the inside of every quoted literal blanked (same length), so commas, '#' and
    parentheses in data do not count; SeqError for a literal that does not end."""
    if "'" not in text and '"' not in text:
        return text
    parts, pos = [], 0
    for m in _QUOTED.finditer(text):
        if m[1] is None and m[2] is None:
            raise SeqError(f"unterminated quoted literal: {_excerpt(text[m.start():], 30)}")
        parts += [text[pos:m.start()], "_" * (m.end() - m.start())]
        pos = m.end()
    return "".join(parts) + text[pos:]


def _split_comment(body: str) -> tuple[str, str, str]:
    """Split ``op(...)  # expected`` at the first '#' outside a literal."""
    i = _mask_until_comment(body)
    return (body.strip(), "", "") if i is None else (body[:i].strip(), "#", body[i + 1:])


def _mask_until_comment(body: str) -> int | None:
    """The index of the first '#' outside a literal (what follows it is free text), or None."""
    if "#" not in body:
        return None
    pos = 0
    for m in _QUOTED.finditer(body):
        hit = body.find("#", pos, m.start())
        if hit >= 0:
            return hit
        pos = m.end()
    hit = body.find("#", pos)
    return hit if hit >= 0 else None


def _split_args(inner: str) -> list[str]:
    """The arguments between the parentheses, split on commas outside literals (each stripped; an
    empty one is kept, and refused by the caller)."""
    if not inner.strip():
        return []
    masked = _mask(inner)
    out, start = [], 0
    for i, ch in enumerate(masked) if "," in masked else ():
        if ch == ",":
            out.append(inner[start:i].strip())
            start = i + 1
    out.append(inner[start:].strip())
    return out


def _arg_path(tok: str, op: str) -> str:
    if tok == ".":
        if op not in GROUP_OPS:
            raise SeqError(f"{op}(.): '.' (the report group) is only for {' and '.join(GROUP_OPS)}")
        return tok
    if _PATH.fullmatch(tok) and all(len(c.encode()) <= NAME_MAX for c in tok.split("/")):
        return tok
    parts = tok.split("/")
    if tok.startswith("/"):
        why = "an absolute path: paths are below the report group"
    elif ".." in parts or "." in parts:
        why = "'.' and '..' in a path leave the item or the tree"
    elif len(parts) > 2 and all(parts):
        why = "deeper than ITEM/ATTRIBUTE"
    elif any(len(c.encode()) > NAME_MAX for c in parts):
        why = f"a name longer than {NAME_MAX} bytes"
    else:
        why = "not a path below the report group (., ITEM or ITEM/ATTRIBUTE)"
    raise SeqError(f"{op}: {_excerpt(tok)}: {why}")


def _arg_fd(tok: str, op: str) -> str:
    if _FD.fullmatch(tok):
        return tok
    raise SeqError(f"{op}: {_excerpt(tok)} is not an fd (fd0, fd1 ...)")


def _int(tok: str, op: str, what: str, lo: int, hi: int) -> int:
    if not _INT.fullmatch(tok):
        raise SeqError(f"{op}: {_excerpt(tok)} is not a {what} (a decimal number)")
    v = int(tok) if len(tok) <= 20 else hi + 1  # (int() of a huge digit string is refused by Python)
    if not lo <= v <= hi:
        raise SeqError(f"{op}: {what} {_excerpt(tok, 24)[1:-1]} is out of range ({lo} .. {hi})")
    return v


def _arg_data(tok: str, op: str) -> bytes:
    if not _BYTES.fullmatch(tok):
        raise SeqError(f"{op}: {_excerpt(tok)} is not a bytes literal (b'...')")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an invalid escape is an error, not a warning on stderr
            v = ast.literal_eval(tok)
    except (ValueError, SyntaxError, Warning) as e:
        raise SeqError(f"{op}: {_excerpt(tok)} is not a valid bytes literal ({getattr(e, 'msg', e)})") from None
    if not isinstance(v, bytes):
        raise SeqError(f"{op}: {_excerpt(tok)} is not a bytes literal (b'...')")
    return v


def _arg_flags(tok: str, op: str) -> str:
    for part in tok.split("|"):
        part = part.strip()
        if part not in FLAGS and part not in ("0", "1", "2", "3"):
            raise SeqError(f"{op}: unknown open flag {_excerpt(part)}{did_you_mean(part, FLAGS) or ''} "
                           f"(flags: {', '.join(FLAGS)}, joined by |)")
    return "|".join(p.strip() for p in tok.split("|"))


def _arg_whence(tok: str, op: str) -> str | int:
    if tok in WHENCE:
        return tok
    if tok in ("0", "1", "2", "3", "4"):
        return int(tok)
    raise SeqError(f"{op}: unknown whence {_excerpt(tok)}{did_you_mean(tok, WHENCE) or ''} "
                   f"(whence: {', '.join(WHENCE)})")


def _arg_param(tok: str, op: str) -> str:
    if _PARAM.fullmatch(tok):
        return tok
    raise SeqError(f"{op}: {_excerpt(tok)} is not a module parameter name")


def _arg_value(tok: str, op: str) -> str | int:
    if _INT.fullmatch(tok) and len(tok) <= 20:
        return int(tok)
    if _VALUE.fullmatch(tok):
        return tok
    raise SeqError(f"{op}: {_excerpt(tok)} is not a parameter value (a number or a word)")


_ARG = {
    "path": _arg_path, "fd": _arg_fd, "data": _arg_data, "flags": _arg_flags, "whence": _arg_whence,
    "param": _arg_param, "value": _arg_value,
    "count": lambda t, op: _int(t, op, "byte count", 0, TSMSEQ_READ),
    "offset": lambda t, op: _int(t, op, "offset", 0, 2**63 - 1),
    "soffset": lambda t, op: _int(t, op, "offset", -2**63, 2**63 - 1),
}


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple

    def __str__(self) -> str:
        """The full text (.tsmseq files): every byte of the data written."""
        parts = []
        for a in self.args:
            parts.append(repr(a) if isinstance(a, (bytes, int)) else str(a))
        return f"{self.name}({', '.join(parts)})"

    def short(self) -> str:
        """The text failure messages show: data longer than SHORT bytes as ``<len bytes sha1:8 hex>``."""
        parts = []
        for a in self.args:
            if isinstance(a, bytes) and len(a) > SHORT:
                parts.append(f"<{len(a)} bytes sha1:{hashlib.sha1(a).hexdigest()[:8]}>")
            else:
                parts.append(repr(a) if isinstance(a, (bytes, int)) else str(a))
        return f"{self.name}({', '.join(parts)})"


def parse_op(text: str) -> Op:
    """``write(fd0, b'ab')`` -> Op('write', ('fd0', b'ab')), by the grammar (``ARGS``); a failure
    text's ``op -> result`` and a file's ``op  # result`` are read too.  SeqError (a ValueError)
    saying what is wrong for anything else: an unknown operation, flag or whence, the wrong number
    of arguments, a bad literal or number, a path that leaves the tree."""
    code = text
    cut = _mask_until_comment(code)
    if cut is not None:
        code = code[:cut]
    if " -> " in code:
        masked = _mask(code)
        arrow = masked.find(" -> ")
        if arrow >= 0:
            code = code[:arrow]
    return _parse_call(code.strip())


def _parse_call(code: str) -> Op:
    m = _CALL.fullmatch(code)
    if not m:
        raise SeqError(f"not an operation: {_excerpt(code)} (expected NAME(ARGUMENTS), e.g. mkdir(r0))")
    name, inner = m[1], m[2]
    kinds = ARGS.get(name)
    if kinds is None:
        raise SeqError(f"unknown operation {name!r}{did_you_mean(name, OPS) or ''} (operations: {', '.join(OPS)})")
    toks = _split_args(inner)
    if not MIN_ARGS.get(name, len(kinds)) <= len(toks) <= len(kinds):
        raise SeqError(f"{name} takes {len(kinds)} argument{'s' if len(kinds) > 1 else ''} ({', '.join(kinds)}), "
                       f"got {len(toks)}: {_excerpt(code)}")
    if "" in toks:
        raise SeqError(f"{name}: an empty argument: {_excerpt(code)}")
    return Op(name, tuple(_ARG[k](tok, name) for k, tok in zip(kinds, toks)))


def check_op(op: Op) -> None:
    """SeqError unless ``op`` is one the grammar reads (its text form parses back to itself): how
    ``replay`` holds a sequence built in code to the same grammar as a file."""
    if parse_op(str(op)) != op:
        raise SeqError(f"{op.name}: arguments of the wrong types: {_excerpt(str(op))}")


def _flags(text: str | int) -> int:
    if isinstance(text, int):
        return text
    v = 0
    for part in str(text).split("|"):
        part = part.strip()
        v |= int(part) if part.isdigit() else FLAGS[part]
    return v


def _show(data: bytes) -> str:
    return repr(data) if len(data) <= SHORT else f"<{len(data)} sha1:{hashlib.sha1(data).hexdigest()[:8]}>"


def show(res: object) -> str:
    """The normalised text of a raw ``Executor.call`` result."""
    if isinstance(res, bytes):
        return _show(res)
    if isinstance(res, list):
        return "[" + ", ".join(res) + "]"
    mode, size = getattr(res, "mode", None), getattr(res, "size", None)  # a Stat, or any tree's like it
    if isinstance(mode, int) and isinstance(size, int):
        return f"mode {mode:06o} size {size}"
    return str(res)


@functools.lru_cache(maxsize=1 << 12)
def _r_real(prefix: str, path: str) -> str | None:
    """``r3/outblob`` -> ``<prefix>3/outblob``; None where the head is no r-name.  Kept: a caller
    running many sequences under one prefix (a fuzz target's rebooted tree) maps the same paths."""
    head, sep, tail = path.partition("/")
    return f"{prefix}{head[1:]}{sep}{tail}" if _RNAME.fullmatch(head) else None


@functools.lru_cache(maxsize=1 << 12)
def _r_name(prefix: str, real: str) -> str | None:
    """``<prefix>3`` -> ``r3`` (``_r_real``'s inverse for an item name); None for other names.
    Kept, as ``_r_real``: a fuzz target lists the same few items input after input."""
    r = "r" + real[len(prefix):] if real.startswith(prefix) else ""
    return r if _RNAME.fullmatch(r) else None


class Executor:
    """Runs ops on one tree with fresh item names; every created item is removed by ``close``.

    ``r0, r1 ...`` become ``<prefix>0, <prefix>1 ...``.  ``aliases`` (replay: ``confine``) maps every
    other item name of the sequence onto a fresh name too, and then a name outside it is refused
    (ValueError) rather than passed to the tree; without it, other names pass through unchanged."""

    def __init__(self, tree: Tree, prefix: str, annotate: bool = False,
                 aliases: dict[str, str] | None = None, mr: tuple[str | None, str | None, bool] | None = None) -> None:
        self.tree, self.prefix = tree, prefix
        # measurements/NAME: (group directory, refresh counter, may extend on a live tree)
        self.mr_where = mr or (None, None, False)
        self._mr: Any = None
        self.annotate = annotate  # append the new item's generation to mkdir results
        self.aliases = aliases
        # fd name -> (the files that opened it: the tree or its measurement group, the fd); threads
        # of a schedule open and close fds at once: each change is one dict operation (atomic)
        self.fds: dict[str, tuple[Any, int]] = {}
        self.nfd = 0
        self.items: set[str] = set()
        self._real: dict[str, str] = {}
        self._inv: dict[str, str] = {}  # an alias -> the sequence's name, for listdir of the group

    def real(self, path: str) -> str:
        hit = self._real.get(path)  # (paths repeat; mapping one is most of the cost of a cheap op)
        if hit is not None:
            return hit
        path = str(path)
        out = _r_real(self.prefix, path)
        if out is None:
            head, sep, tail = path.partition("/")
            if self.aliases is None or head in (".", ""):
                out = path
            elif head in self.aliases:
                self._inv[self.aliases[head]] = head
                out = self.aliases[head] + sep + tail
            else:
                raise ValueError(f"{path}: not an item this sequence makes")
        self._real[path] = out
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
        return self.text(op, self.call(op))

    def text(self, op: Op, res: object) -> str:
        """The normalised text of ``res``, the raw result ``op`` just had (a new item's generation
        appended when annotating)."""
        if op.name == "mkdir" and res == 0 and self.annotate:
            return "0" + self._gen(op.args[0])
        return show(res)

    def call(self, op: Op, fd_name: str | None = None) -> object:
        """Run one op; its raw result: an errno name (``"EINVAL"``), ``fdN`` for open, bytes for
        reads, a sorted name list for listdir, a Stat, else an int (0 for mkdir/rmdir/close).
        ``fd_name`` names an open's fd (concurrent schedules fix the names in file order)."""
        do = _CALLS.get(op.name)
        if do is None:
            raise ValueError(f"unknown operation {op.name}")
        try:
            return do(self, op.args, fd_name)
        except OSError as e:
            return errnos.name(e.errno)

    # One method per operation (``_CALLS``): a table lookup instead of a chain of comparisons,
    # which cost more than a cheap operation on an emulated tree.
    def _mkdir(self, a: tuple, fd_name: str | None) -> object:
        path = self.real(a[0])
        self.tree.mkdir(path)
        self.items.add(path.split("/")[0])
        return 0

    def _rmdir(self, a: tuple, fd_name: str | None) -> object:
        self.tree.rmdir(self.real(a[0]))
        return 0

    def _listdir(self, a: tuple, fd_name: str | None) -> object:
        if a and self._mr_path(a[0]) is not None:
            return sorted(self.group().listdir(""))
        where = self.real(a[0]) if a and a[0] not in ("", ".") else ""
        names = self.tree.listdir(where)
        if not where:  # the group: only this sequence's items, by their names in it
            names = [m for n in names if (m := self._seq_name(n)) is not None]
        return sorted(names)

    def _seq_name(self, real: str) -> str | None:
        """The sequence's name of a real item name: an alias ``real`` made, or an r-name's (prefix
        and number), also one the sequence never named (another thread's mkdir of it is racing)."""
        hit = self._inv.get(real)
        return hit if hit is not None else _r_name(self.prefix, real)

    def _stat(self, a: tuple, fd_name: str | None) -> object:
        mr = self._mr_path(a[0])
        if mr is not None:
            return self.group().stat(mr)
        return self.tree.stat(self.real(a[0]))

    @staticmethod
    def _mr_path(path: object) -> str | None:
        """The register file a ``measurements/NAME`` path names (``""``: the group), else None."""
        path = str(path)
        if not path.startswith(MR_HEAD):  # (most paths: no partition needed)
            return None
        head, _, tail = path.partition("/")
        return tail if head == MR_HEAD else None

    def group(self) -> Any:
        """The tree's measurement group (ENOENT when it has none)."""
        if self._mr is None:
            where, counter, _ = self.mr_where
            self._mr = self.tree.measurements(where, counter)
            if self._mr is None:
                raise OSError(errno.ENOENT, "no measurement group")
        return self._mr

    def _param(self, a: tuple, fd_name: str | None) -> object:
        ctl = getattr(self.tree, "control", None)  # a provider module parameter (tsm_test; emulated or VM)
        if ctl is None:
            return "EOPNOTSUPP"
        ctl.set_param(str(a[0]), str(a[1]))
        return 0

    def _open(self, a: tuple, fd_name: str | None) -> object:
        if fd_name is None:  # named even when open fails: later ops see EBADF
            fd_name = f"fd{self.nfd}"
            self.nfd += 1
        flags = FLAGS.get(a[1])  # one name, the common case
        flags = _flags(a[1]) if flags is None else flags
        mr = self._mr_path(a[0])
        if mr is not None:
            if flags & os.O_ACCMODE != os.O_RDONLY and self.tree.kind == "live" and not self.mr_where[2]:
                raise ValueError(f"open({a[0]}, {a[1]}): extending a live machine's registers changes what they "
                                 "attest to until reboot; only a test provider's (header mr-extend: yes) are written")
            group = self.group()
            self.fds[fd_name] = (group, group.open(mr, flags))
            return fd_name
        self.fds[fd_name] = (self.tree, self.tree.open(self.real(a[0]), flags))
        return fd_name

    def _close(self, a: tuple, fd_name: str | None) -> object:
        hit = self.fds.pop(str(a[0]), None)
        if hit is None:
            return "EBADF"
        hit[0].close(hit[1])
        return 0

    def _read(self, a: tuple, fd_name: str | None) -> object:
        hit = self.fds.get(str(a[0]))
        return "EBADF" if hit is None else hit[0].read(hit[1], int(a[1]))

    def _pread(self, a: tuple, fd_name: str | None) -> object:
        hit = self.fds.get(str(a[0]))
        return "EBADF" if hit is None else hit[0].pread(hit[1], int(a[1]), int(a[2]))

    def _write(self, a: tuple, fd_name: str | None) -> object:
        hit = self.fds.get(str(a[0]))
        return "EBADF" if hit is None else hit[0].write(hit[1], a[1])

    def _pwrite(self, a: tuple, fd_name: str | None) -> object:
        hit = self.fds.get(str(a[0]))
        return "EBADF" if hit is None else hit[0].pwrite(hit[1], a[1], int(a[2]))

    def _lseek(self, a: tuple, fd_name: str | None) -> object:
        hit = self.fds.get(str(a[0]))
        if hit is None:
            return "EBADF"
        whence = a[2] if isinstance(a[2], int) else WHENCE[str(a[2])]
        return hit[0].lseek(hit[1], int(a[1]), whence)

    def finish(self) -> None:
        for files, fd in self.fds.values():
            try:
                files.close(fd)
            except OSError:
                pass
        self.fds.clear()
        for name in sorted(self.items):
            try:
                self.tree.rmdir(name)
            except OSError:
                pass


_CALLS: dict[str, Callable[[Executor, tuple, str | None], object]] = {
    "mkdir": Executor._mkdir, "rmdir": Executor._rmdir, "listdir": Executor._listdir, "stat": Executor._stat,
    "param": Executor._param, "open": Executor._open, "close": Executor._close, "read": Executor._read,
    "pread": Executor._pread, "write": Executor._write, "pwrite": Executor._pwrite, "lseek": Executor._lseek,
}
assert _CALLS.keys() == ARG0.keys()


def execute(tree: Tree, ops: list[Op], prefix: str, track: list[str] | None = None,
            mr: tuple[str | None, str | None, bool] | None = None) -> list[str]:
    """Run a sequence; one normalised result per op, plus the generations of ``track`` items after
    each op that can change state.  ``mr``: as ``Executor``'s."""
    return _execute(tree, ops, prefix, track, mr=mr)[0]


def _execute(tree: Tree, ops: list[Op], prefix: str, track: list[str] | None,
             aliases: dict[str, str] | None = None,
             mr: tuple[str | None, str | None, bool] | None = None) -> tuple[list[str], list[object]]:
    """``execute``, also giving each op's raw result (``Executor.call``)."""
    ex = Executor(tree, prefix, annotate=bool(track), aliases=aliases, mr=mr)
    out: list[str] = []
    raw: list[object] = []
    try:
        for op in ops:
            r = ex.call(op)
            res = ex.text(op, r)
            if op.name in COMMIT_OPS and track:
                res += "".join(ex._gen(t) for t in track)
            out.append(res)
            raw.append(r)
    finally:
        ex.finish()
    return out, raw


# ----------------------------------------------------------------------------- .tsmseq files
HEADER = "# tsmseq 1"
_THREAD = re.compile(r"^(T\d{1,6}):\s*")
_HEADER_KEY = re.compile(r"[a-z][a-z-]*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tab, \n and \r (a CRLF file) are the only ones taken
MAX_ATTEMPTS = 1000  # header ``attempts``: runs of a concurrent schedule
MAX_TRACK = 16  # header ``track``: items whose generation follows each commit


@dataclass
class Step:
    op: Op
    expected: str | None = None  # normalised result after "  # "
    thread: str | None = None  # "T1" ... (file order is the interleaving replayed)
    line: int | None = field(default=None, compare=False, repr=False)  # in the file it was read from


@dataclass
class Sequence:
    """A .tsmseq file: ``# key: value`` header lines, then one step per line.

    Header keys used: check, rule, target, kernel, emulate (a spec to replay on), track (items whose
    generation follows each write/close), verified-on (kernels that produced the expected results),
    report (what the reports look like: report reads are compared by ``ReportShape`` projections)."""

    steps: list[Step]
    header: dict[str, str]

    def ops(self) -> list[Op]:
        return [s.op for s in self.steps]

    def track(self) -> list[str]:
        return self.header.get("track", "").split()

    def report(self) -> ReportShape | None:
        """The header's ``report`` shape; None without one (report reads compared byte for byte)."""
        text = self.header.get("report")
        return None if text is None else ReportShape.parse(text)

    def mr(self) -> tuple[str | None, str | None, bool]:
        """Where ``measurements/NAME`` is on a live machine, its refresh counter, and whether a live
        replay may extend its registers (``MR_HEAD``)."""
        h = self.header
        return h.get("mr-group"), h.get("mr-counter"), h.get("mr-extend") == "yes"


def format_tsmseq(seq: Sequence) -> str:
    lines = [HEADER] + [f"# {k}: {v}" for k, v in seq.header.items()]
    for st in seq.steps:
        text = (f"{st.thread}: " if st.thread else "") + str(st.op)
        lines.append(f"{text}  # {st.expected}" if st.expected is not None else text)
    return "\n".join(lines) + "\n"


def load_tsmseq(path: str) -> Sequence:
    """A .tsmseq file, read within its bound (``inputs.TSMSEQ_MAX``: a regular file, refused unread
    past the bound) and parsed by ``parse_tsmseq``; SeqError, one line ``FILE:LINE: what is wrong``
    (``FILE: why`` for the file itself), for anything else.  What ``replay`` is given."""
    try:
        text = utf8(read_bounded(path, TSMSEQ_MAX, ".tsmseq"), str(path))
    except InputError as e:
        raise SeqError(e.why, e.line, e.path) from None
    try:
        return parse_tsmseq(text)
    except SeqError as e:
        raise e.at(file=str(path)) from None


def parse_tsmseq(text: str) -> Sequence:
    """A .tsmseq file's text: the line ``# tsmseq 1``, ``# key: value`` header lines, then one step a
    line, ``[T<n>: ]OP(ARGS)[  # expected]`` by the grammar of ``ARGS`` (other ``#`` lines and blank
    lines are comments), within the bounds of ``inputs.py`` (bytes, lines, line length, threads).
    Before anything runs, SeqError (a ValueError) names the line (``line N: ...``) of the first
    thing wrong: an unknown operation, flag or whence, the wrong number of arguments, a bad literal
    or number, a path that leaves the tree, a bad header value, or an item the sequence uses but
    does not make (``foreign_use``: replay touches only items it makes)."""
    if len(text) > TSMSEQ_MAX:
        raise SeqError(f"larger than {size_text(TSMSEQ_MAX)}, the bound for a .tsmseq")
    if text.count("\n") >= TSMSEQ_LINES:
        raise SeqError(f"more than {TSMSEQ_LINES} lines, the bound for a .tsmseq")
    bad = _CONTROL.search(text)
    if bad:
        no = text.count("\n", 0, bad.start()) + 1
        if no == 1 and not text.startswith(HEADER):
            raise SeqError(f"expected '{HEADER}' (not a .tsmseq file)", 1)
        col = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise SeqError(f"control character 0x{ord(bad[0]):02x} at column {col} (a .tsmseq is text)", no)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for no, raw in enumerate(lines, start=1):
        if len(raw) > TSMSEQ_LINE:
            if no == 1:
                raise SeqError(f"expected '{HEADER}' (not a .tsmseq file)", 1)
            raise SeqError(f"line longer than {size_text(TSMSEQ_LINE)}, the bound for a .tsmseq line", no)
    if not lines or lines[0].strip() != HEADER:
        raise SeqError(f"expected '{HEADER}' (not a .tsmseq file)", 1)
    header: dict[str, str] = {}
    where: dict[str, int] = {}  # header key -> its line
    steps: list[Step] = []
    threads: set[str] = set()
    for no, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, val = line[1:].strip().partition(":")
            if sep and not steps and _HEADER_KEY.fullmatch(key.strip()):
                header[key.strip()] = val.strip()
                where[key.strip()] = no
            continue
        m = _THREAD.match(line)
        thread = m[1] if m else None
        if thread and thread not in threads:
            threads.add(thread)
            if len(threads) > TSMSEQ_THREADS:
                raise SeqError(f"more than {TSMSEQ_THREADS} threads (T<n>: labels), the bound for a schedule", no)
        body = line[m.end():] if m else line
        try:
            code, _, expected = _split_comment(body)
            op = _parse_call(code)
        except SeqError as e:
            raise e.at(no) from None
        steps.append(Step(op, expected.strip() if expected else None, thread, no))
    seq = Sequence(steps, header)
    _check_header(seq, where)
    used = foreign_use(seq)
    if used is not None:
        i, name = used
        raise SeqError(f"{seq.steps[i].op} uses the report item {name!r}, which this sequence does not make: "
                       f"replay touches only items it makes (r0, r1 ... or names it mkdirs first), never "
                       f"another client's", seq.steps[i].line)
    return seq


def _check_header(seq: Sequence, where: dict[str, int]) -> None:
    """The header values replay uses: ``report``, ``attempts``, ``track``."""
    h = seq.header
    try:
        seq.report()
    except ValueError as e:
        raise SeqError(f"header report: {e}", where.get("report")) from None
    if "attempts" in h:
        a = h["attempts"]
        if not (a.isdigit() and len(a) <= 6 and 1 <= int(a) <= MAX_ATTEMPTS):
            raise SeqError(f"header attempts: {_excerpt(a)} is not a number of runs (1 .. {MAX_ATTEMPTS})",
                           where.get("attempts"))
    track = seq.track()
    if len(track) > MAX_TRACK:
        raise SeqError(f"header track: more than {MAX_TRACK} items", where.get("track"))
    made = {str(s.op.args[0]) for s in seq.steps if s.op.name == "mkdir"}
    for name in track:
        if not re.fullmatch(_NAME, name) or not (_RNAME.fullmatch(name) or name in made):
            raise SeqError(f"header track: {_excerpt(name)} is not an item of the sequence (r0, r1 ... or a "
                           f"name it mkdirs)", where.get("track"))


def foreign_use(seq: Sequence) -> tuple[int, str] | None:
    """The first step that uses a report item the sequence does not make, and its name: a name
    other than ``r0, r1 ...`` (the sequence's fresh items) used before the sequence mkdirs it.
    Replay maps every item onto a fresh name of its own (``tsmrp-<pid>-...``), so such a step
    could only mean someone else's item: it is refused, never run."""
    made: set[str] = set()
    for i, st in enumerate(seq.steps):
        if ARG0.get(st.op.name) != "path" or not st.op.args:
            continue
        path = str(st.op.args[0])
        head = path.split("/")[0]
        if head == "." or _RNAME.fullmatch(head) or head in made or (head == MR_HEAD and st.op.name != "mkdir"):
            continue
        if st.op.name == "mkdir" and path == head:
            made.add(head)
            continue
        return i, head
    return None


def confine(seq: Sequence, prefix: str) -> dict[str, str]:
    """What ``replay`` checks before it runs anything, for a sequence however it was made: every
    step by the grammar (``check_op``), no item it does not make (``foreign_use``), at most
    ``TSMSEQ_THREADS`` threads.  Returns the fresh real name of every item other than ``r0, r1
    ...`` (``<prefix>n0``, ``<prefix>n1`` ... in order of appearance); SeqError for the first
    problem."""
    for st in seq.steps:
        try:
            check_op(st.op)
        except SeqError as e:
            raise e.at(st.line) from None
    used = foreign_use(seq)
    if used is not None:
        i, name = used
        raise SeqError(f"{seq.steps[i].op} uses the report item {name!r}, which this sequence does not make: "
                       f"replay touches only items it makes", seq.steps[i].line)
    if len({st.thread for st in seq.steps if st.thread}) > TSMSEQ_THREADS:
        raise SeqError(f"more than {TSMSEQ_THREADS} threads (T<n>: labels), the bound for a schedule")
    aliases: dict[str, str] = {}
    for st in seq.steps:
        if st.op.name == "mkdir":
            head = str(st.op.args[0]).split("/")[0]
            if not _RNAME.fullmatch(head) and head != "." and head not in aliases:
                aliases[head] = f"{prefix}n{len(aliases)}"
    return aliases


def threaded(seq: Sequence) -> bool:
    """Steps carry ``T<n>:`` labels of more than one thread: a concurrent schedule."""
    return len({st.thread for st in seq.steps if st.thread}) > 1


def replay(tree: Tree, seq: Sequence, prefix: str, attempts: int | None = None) -> list[tuple[int, Step, str]]:
    """Run a sequence; every step whose result differs from its expectation: (index, step, got).

    A multi-threaded sequence runs its threads concurrently (``execute_threads``); a race does not
    recur every time, so it is run up to ``attempts`` times (default: the header's ``attempts``,
    else 1) and the first run that matches every expectation counts as reproduced.

    With a ``report`` header, reads of report blobs are compared by their projection
    (``project_reads``: length, nonce and privlevel fields, whether the signature verifies, same or
    different bytes than the read before): their bytes differ per generation (signatures,
    counters), so only the projection can replay as itself.

    Replay touches only what it makes: before anything runs, the sequence is held to the grammar
    and refused when it uses an item it does not make (``confine``), every item name is mapped onto
    a fresh name with ``prefix``, and it is refused when one of those names is already in the group
    (``SeqError``, a ValueError, in both cases)."""
    aliases = confine(seq, prefix)
    _fresh(tree, seq, prefix, aliases)
    shape, ops = seq.report(), seq.ops()
    if not threaded(seq):
        got, raw = _execute(tree, ops, prefix, seq.track(), aliases, seq.mr())
        got = _projected(ops, raw, got, shape)
        return [(i, st, g) for i, (st, g) in enumerate(zip(seq.steps, got))
                if st.expected is not None and st.expected != g]
    diffs: list[tuple[int, Step, str]] = []
    for _ in range(max(1, attempts or int(seq.header.get("attempts", "1")))):
        done = execute_threads(tree, seq.steps, prefix, aliases=aliases, mr=seq.mr())
        got = _projected(ops, [d.result for d in done], [show(d.result) for d in done], shape)
        diffs = [(i, st, g) for i, (st, g) in enumerate(zip(seq.steps, got))
                 if st.expected is not None and st.expected != g]
        if not diffs:
            break
    return diffs


def _fresh(tree: Tree, seq: Sequence, prefix: str, aliases: dict[str, str]) -> None:
    """SeqError when a name the replay would make is already in the group (a leftover of an earlier
    replay by a process with the same pid, or anyone's item that happens to carry the name): it is
    not this replay's to open, write or remove."""
    heads = {str(st.op.args[0]).split("/")[0] for st in seq.steps if ARG0.get(st.op.name) == "path" and st.op.args}
    ours = {f"{prefix}{h[1:]}" for h in heads if _RNAME.fullmatch(h)} | set(aliases.values())
    try:
        present = set(tree.listdir(""))
    except OSError:
        return  # the steps will show what the tree does
    taken = sorted(ours & present)
    if taken:
        raise SeqError(f"{taken[0]} is already in the report group: replay makes only fresh items and touches "
                       f"nothing else (a leftover? tsm-conformance clean removes ours)")


def _projected(ops: list[Op], raw: list[object], texts: list[str], shape: ReportShape | None) -> list[str]:
    """``texts`` with every report read replaced by its projection (when there is a shape)."""
    if shape is None:
        return texts
    proj = project_reads(ops, raw, shape)
    return [proj.get(i, t) for i, t in enumerate(texts)]


# ----------------------------------------------------------------------------- concurrent schedules
HUNG = "HUNG"  # the result of a step still running at the schedule's deadline
SWITCH_INTERVAL = 1e-5  # seconds between GIL switches while a schedule's threads run


@dataclass(slots=True)
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


class Pool:
    """Worker threads for ``execute_threads``, kept from one schedule to the next: starting an OS
    thread per ``T<n>`` program per schedule cost more than running the programs (a fuzz target
    runs thousands of schedules).  Each worker is parked on a lock of its own; a schedule hands
    every program to an idle worker and releases them all in one go (a few lock releases, well
    within one GIL switch interval), so they start together as a barrier would start them.  A
    worker still busy at a schedule's deadline (a hang) is never reused: it ends when its call
    returns.  Parked workers call nothing on the tree, so they are not among the emulator's
    competing threads (``Kernel._competing``); they end with ``close`` or when the pool is
    collected, so none outlives its owner (``cleanup.wait_for_workers`` would wait for it).

    A schedule's k-th program runs on the k-th CPU the process may use (``spread``), as fuzzers
    bind their workers (AFL++ binds to free cores): kept threads woken together otherwise tend to
    share one CPU and run one after the other, and an in-process tree's races then recurred 2-5x
    less often than with new threads (docs/fuzzing.md, "Threads").  ``TSM_NO_AFFINITY=1``, or a
    process allowed one CPU, leaves placement to the scheduler."""

    def __init__(self, spread: bool | None = None) -> None:
        self._lock = threading.Lock()  # _idle, and each worker's busy/retired
        self._idle: list[_Worker] = []
        if spread is None:
            spread = os.environ.get("TSM_NO_AFFINITY", "") in ("", "0")
        cpus = sorted(os.sched_getaffinity(0)) if spread and hasattr(os, "sched_getaffinity") else []
        self._cpus: list[int] = cpus if len(cpus) > 1 else []
        self._end = weakref.finalize(self, _end_parked, self._lock, self._idle)

    def run(self, programs: list[Callable[[], None]], deadline: float) -> None:
        """Run each program on its own thread, all released at once; return when every one has
        finished or after ``deadline`` seconds."""
        if not programs:
            return
        with self._lock:
            k = min(len(programs), len(self._idle))
            workers = self._idle[len(self._idle) - k:]
            del self._idle[len(self._idle) - k:]
        workers += [_Worker(self._lock) for _ in range(len(programs) - k)]
        left = [len(programs)]
        finished = threading.Lock()  # released by the last program to finish
        finished.acquire()
        cpus = self._cpus
        for k, (w, prog) in enumerate(zip(workers, programs)):
            w.busy = True
            w.task = (prog, left, finished, cpus[k % len(cpus)] if cpus else -1)
        try:
            for w in workers:
                w.wake.release()
            finished.acquire(timeout=max(deadline, 0.0))
        finally:
            with self._lock:
                for w in workers:
                    if w.busy:
                        w.retired = True  # hung (or interrupted): it ends once its call returns
                    else:
                        self._idle.append(w)

    def close(self) -> None:
        """End the parked workers now (busy ones end when they return)."""
        self._end()


def _end_parked(lock: threading.Lock, idle: list[_Worker]) -> None:
    with lock:
        ending = idle[:]
        idle.clear()
    for w in ending:
        w.stop = True
        w.wake.release()


class _Worker:
    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock  # the pool's
        self.wake = threading.Lock()  # held while parked; released to run ``task`` (or to stop)
        self.wake.acquire()
        self.task: tuple[Callable[[], None], list[int], threading.Lock, int] | None = None
        self.busy = self.retired = self.stop = False
        self.cpu = -1  # the CPU this thread is bound to (-1: not bound)
        threading.Thread(target=self._loop, name="tsm-seq-worker", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.wake.acquire()
            if self.stop or self.task is None:
                return
            (prog, left, finished, cpu), self.task = self.task, None  # parked, it holds nothing of a schedule
            if cpu != self.cpu:
                try:
                    os.sched_setaffinity(0, {cpu})  # 0: this thread
                    self.cpu = cpu
                except OSError:  # the CPU went away (hotplug, a narrowed cpuset): run anywhere
                    pass
            try:
                prog()
            except BaseException:  # as an uncaught exception in a thread: printed, the thread's steps unfinished
                threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread())))
            with self._lock:
                self.busy = False
                left[0] -= 1
                if not left[0]:
                    finished.release()
                if self.retired:
                    return


def execute_threads(tree: Tree, steps: list[Step], prefix: str, deadline: float = 30.0,
                    aliases: dict[str, str] | None = None, pool: Pool | None = None,
                    mr: tuple[str | None, str | None, bool] | None = None, coop: int | None = None,
                    tidy: bool = True) -> list[Done]:
    """Run a ``T<n>:``-labelled schedule: unlabelled steps before the first labelled one run first,
    in file order (set-up); then one thread per label, each running its own steps in program
    order, all released at once; then the unlabelled steps after the last labelled one
    (tear-down, e.g. a final generation read).
    Returns one Done per step in file order; a step still running at ``deadline`` seconds is HUNG
    (its thread is left behind as a daemon).  ``aliases``: as ``Executor``'s.  ``pool``: the
    threads to run on (a caller running many schedules keeps one); without it, threads of a pool
    of this call's own.  ``mr``: as ``Executor``'s.  ``coop``: run the programs as greenlets on
    this thread instead, switched at the tree's points in the order this seed draws
    (``coop.Scheduler``: an in-process tree only; a real tree's calls block).  ``tidy=False``
    leaves the open fds and the items made behind, for a tree rebooted before its next use."""
    ex = Executor(tree, prefix, aliases=aliases, mr=mr)
    programs: dict[str, list[int]] = {}
    last = -1  # the last labelled step: unlabelled ones after it are the tear-down
    for i, st in enumerate(steps):
        if st.thread is not None:
            programs.setdefault(st.thread, []).append(i)
            last = i
    if last < 0:
        return _in_file_order(ex, steps, tidy)
    done: list[Done | None] = [None] * len(steps)
    complete = False
    call, clock = ex.call, time.monotonic
    names = fd_names(steps)

    def run(i: int) -> None:
        st = steps[i]
        t0 = clock()
        res = call(st.op, names.get(i))
        done[i] = Done(i, st.thread, st.op, res, t0, clock())
    try:
        for i in range(last):
            if steps[i].thread is None:
                run(i)
        if len(programs) == 1:  # one thread: no need for another OS thread
            for i in next(iter(programs.values())):
                run(i)
        elif programs and coop is not None:
            sched = _coop.Scheduler(coop)

            point = sched.point

            def task(idx: list[int]) -> Callable[[], None]:
                def go() -> None:
                    for i in idx:
                        run(i)
                        point()
                return go
            sched.run([task(idx) for idx in programs.values()], deadline)
        elif programs:
            def program(idx: list[int]) -> Callable[[], None]:
                def go() -> None:
                    for i in idx:
                        run(i)
                return go
            _on_threads([program(idx) for idx in programs.values()], pool, deadline)
        # every program ran to its end: then the tear-down runs, and every step has run (the
        # set-up and the tear-down run here, where a failure raises)
        complete = all(done[i] is not None for idx in programs.values() for i in idx)
        if complete:
            for i in range(last + 1, len(steps)):
                run(i)  # (all unlabelled: last is the last labelled step)
    finally:
        if tidy and all(d is not None for d in done):
            ex.finish()
    if complete:
        return cast("list[Done]", done)
    now = time.monotonic()
    return [d if d is not None else Done(i, steps[i].thread, steps[i].op, HUNG, now - deadline, now)
            for i, d in enumerate(done)]


def _in_file_order(ex: Executor, steps: list[Step], tidy: bool) -> list[Done]:
    """A schedule without threads (most fuzz inputs: this loop is their cost): every step in file
    order, the executor naming fds as it opens them (so in file order), each step ending when the
    next one starts."""
    call, clock = ex.call, time.monotonic
    done: list[Done] = []
    add = done.append
    t0 = clock()
    for i, st in enumerate(steps):
        res = call(st.op)
        add(Done(i, None, st.op, res, t0, t0 := clock()))
    if tidy:  # (as execute_threads: only once every step ran)
        ex.finish()
    return done


def _on_threads(programs: list[Callable[[], None]], pool: Pool | None, deadline: float) -> None:
    """The programs on OS threads: ``pool``'s, or a pool of this call's own."""
    switch = sys.getswitchinterval()
    # in-process trees interleave only at GIL switches (5 ms by default): make them fine-grained
    # while the threads run, or races in an emulator would hardly ever recur
    sys.setswitchinterval(SWITCH_INTERVAL)
    own = pool is None
    use = Pool() if pool is None else pool
    try:
        use.run(programs, deadline)
    finally:
        sys.setswitchinterval(switch)
        if own:
            use.close()


# ----------------------------------------------------------------------------- recorded logs
#: A recorded operation: (op name, raw args, raw result or the OSError it raised); "#" entries
#: are notes (provider-control actions, what worker threads did) whose args are (text,).
LogEntry = tuple[str, tuple, object]


def _flags_text(fl: int) -> str:
    acc = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}.get(fl & os.O_ACCMODE, str(fl & 3))
    return "|".join([acc] + [n for n, v in FLAGS.items() if v and v & fl and n not in ("O_WRONLY", "O_RDWR")])


class LogNames:
    """The sequence vocabulary for a recorded log, fed one entry at a time in log order: real item
    names as r0, r1 ... (``names``: real name -> r-name), fds as ``fdN`` by the opens that made them
    (``ARG0``: failed opens counted, as the executor numbers them), flags and whence by name."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.fds: dict[int, str] = {}  # open fd number -> its name (the latest open that returned it)
        self.paths: dict[str, str] = {}  # fd name -> the path it opened
        self.opens = 0

    def path(self, p: object) -> str:
        head, sep, tail = str(p).partition("/")
        return (self.names.get(head, head) + sep + tail) or "."

    def op(self, name: str, args: tuple | list) -> Op:
        """The operation in the vocabulary (nothing is counted: also for an operation in flight)."""
        a = list(args)
        kind = ARG0.get(name)
        if a and kind == "path":
            a[0] = self.path(a[0])
        elif a and kind == "fd":
            a[0] = self.fds.get(a[0], "fd?") if isinstance(a[0], int) else a[0]
        if name == "open" and len(a) > 1 and isinstance(a[1], int):
            a[1] = _flags_text(a[1])
        if name == "lseek" and len(a) > 2:
            a[2] = next((n for n, v in WHENCE.items() if v == a[2]), a[2])
        return Op(name, tuple(a))

    def step(self, name: str, args: tuple, res: object) -> Step:
        """One recorded operation and its result as a .tsmseq step (what replay expects)."""
        op = self.op(name, args)
        if name == "open":  # named in open order, failed opens included (as the executor does)
            fd = f"fd{self.opens}"
            self.opens += 1
            if isinstance(res, int) and not isinstance(res, bool):
                self.fds[res] = fd
                self.paths[fd] = str(op.args[0])
                return Step(op, fd)
        if isinstance(res, OSError):
            return Step(op, errnos.name(res.errno) if res.errno else type(res).__name__)
        if res is None:
            return Step(op, "0")
        if name == "listdir" and isinstance(res, list):  # the group: only this log's items
            group = op.args[0] == "." if op.args else True
            res = sorted(str(self.names.get(x, x)) for x in res if not group or x in self.names)
        return Step(op, show(res))


def log_steps(log: list[LogEntry], names: dict[str, str],
              report: ReportShape | None = None) -> list[Step | str]:
    """A recorded log in the sequence vocabulary: a Step per operation (result as .tsmseq files
    and failure texts show it; report reads as their projection when ``report`` is given), a
    ``# ...`` line per note."""
    ln = LogNames(names)
    out: list[Step | str] = []
    idx: list[int] = []  # positions of the steps in out
    raw: list[object] = []
    for op, args, res in log:
        if op == "#":
            out.append(f"# {args[0]}" + (f" -> {errnos.name(res.errno)}" if isinstance(res, OSError) else ""))
            continue
        st = ln.step(op, args, res)
        idx.append(len(out))
        out.append(st)
        raw.append(res if isinstance(res, (bytes, int)) and op != "open" else st.expected)
    if report is not None:
        steps = [out[i] for i in idx]
        for k, text in project_reads([s.op for s in steps], raw, report).items():  # type: ignore[union-attr]
            steps[k].expected = text  # type: ignore[union-attr]
    return out


def render_step(step: Step) -> str:
    """One step as failure texts show it: ``write(fd0, <65 bytes sha1:db91972b>) -> 64``."""
    return f"{step.op.short()} -> {step.expected}"


def render_log(log: list[LogEntry], names: dict[str, str], report: ReportShape | None = None) -> list[str]:
    """A recorded log as the failure text's operation sequence (the steps ``from_log`` writes)."""
    return [s if isinstance(s, str) else render_step(s) for s in log_steps(log, names, report)]


def render_pending(log: list[LogEntry], names: dict[str, str], name: str, args: tuple | list) -> str:
    """An operation still in flight after ``log`` (a hang): an fd also names the file it opened,
    ``read(fd1 = r0/outblob, 65536)``."""
    ln = LogNames(names)
    for op, a, res in list(log):
        if op != "#":
            ln.step(op, a, res)
    pending = ln.op(name, args)
    if pending.args and ARG0.get(name) == "fd" and str(pending.args[0]) in ln.paths:
        pending = Op(name, (f"{pending.args[0]} = {ln.paths[str(pending.args[0])]}",) + pending.args[1:])
    return pending.short()


def from_log(log: list[LogEntry], names: dict[str, str], header: dict[str, str],
             report: ReportShape | None = None) -> Sequence:
    """A failing check's recorded operations as a replayable sequence (results as observed; report
    reads as their projection, and the ``report`` header saying so, when ``report`` is given).

    Notes (provider-control actions: rmmod, insmod, module parameters; what worker threads did)
    are kept in the ``provider-control`` header: replaying them needs the VM target."""
    steps = [s for s in log_steps(log, names, report) if isinstance(s, Step)]
    notes = [str(args[0]) for op, args, _res in log if op == "#"]
    if notes:
        header = {**header, "provider-control": "; ".join(notes)}
    if report is not None:
        header = {**header, "report": report.text()}
    return Sequence(steps, header)


# ----------------------------------------------------------------------------- report reads
@dataclass(frozen=True)
class ReportShape:
    """What a report looks like, for comparing report reads across runs (header ``report``):
    ``format`` a formats/registry name (snp, tdx, cca) whose parser finds the nonce and privlevel
    fields and whose verifier checks the signature; without a parser, the profile's fixed
    ``nonce`` (offset, length) and ``privlevel`` (offset, little-endian width); ``auxblob`` the
    auxblob's format (the SNP certificate table carries the key that signed the report)."""

    format: str | None = None
    nonce: tuple[int, int] | None = None
    privlevel: tuple[int, int] | None = None
    auxblob: str | None = None

    @classmethod
    def of(cls, profile: object) -> ReportShape:
        """From a profile (``report.format``, ``report.nonce``, ``report.privlevel``, ``auxblob_format``)."""
        def at(f: object) -> tuple[int, int] | None:
            off = getattr(f, "offset", None)
            return None if off is None else (int(off), int(f.length))  # type: ignore[attr-defined]
        return cls(getattr(profile, "report_format", None), at(getattr(profile, "report_nonce", None)),
                   at(getattr(profile, "report_privlevel", None)), getattr(profile, "auxblob_format", None))

    def text(self) -> str:
        parts = [f"format={self.format}"] if self.format else []
        parts += [f"{k}={v[0]:#x}+{v[1]}" for k, v in (("nonce", self.nonce), ("privlevel", self.privlevel)) if v]
        parts += [f"auxblob={self.auxblob}"] if self.auxblob else []
        return " ".join(parts) or "bytes"

    @classmethod
    def parse(cls, text: str) -> ReportShape:
        """ValueError for anything ``text()`` does not write (unknown keys too)."""
        kw: dict[str, object] = {}
        for tok in text.split():
            if tok == "bytes":
                continue
            key, sep, val = tok.partition("=")
            if not sep or not val or key not in ("format", "nonce", "privlevel", "auxblob") or key in kw:
                raise ValueError(f"{tok!r}: expected format=NAME nonce=OFFSET+LENGTH "
                                 "privlevel=OFFSET+WIDTH auxblob=NAME")
            if key in ("nonce", "privlevel"):
                off, plus, n = val.partition("+")
                try:
                    kw[key] = (int(off, 0), int(n))
                except ValueError:
                    raise ValueError(f"{tok!r}: expected {key}=OFFSET+LENGTH") from None
                if not plus:
                    raise ValueError(f"{tok!r}: expected {key}=OFFSET+LENGTH")
            else:
                kw[key] = val
        return cls(**kw)  # type: ignore[arg-type]


def project_reads(ops: list[Op], results: list[object], shape: ReportShape) -> dict[int, str]:
    """Index -> projection of every read of a report blob (outblob, auxblob, manifestblob) that
    returned bytes: what of it is the same in every run of the sequence on the same tree, though
    each generation's bytes differ (signatures, counters).  ``ops`` in the sequence vocabulary,
    ``results`` their raw results ("fdN" or an errno name for an open, bytes for a read, the
    offset for an lseek).

    ``report <n> bytes[ at <offset>]`` then, for a read that returned a whole outblob (the next
    read of its fd gives EOF): the nonce field, the privlevel field, ``signature verifies`` or
    ``signature fails (<steps>)`` (the report's own signature, no trust anchors; an SNP report is
    checked with the first certificate table the sequence read; nothing when it cannot be checked);
    then ``same bytes as fdN`` or ``differs from fdN``: the range compared with this fd's earlier
    reads, else with the fd of the same blob read most recently that read it (nothing when none did).
    Reads at one generation give the same bytes, reads at different ones different bytes: so a
    cache that regenerates, or serves a stale report, shows here in every run."""
    files: dict[str, str] = {}  # fd name -> r0/outblob ... (report blobs only)
    pos: dict[str, int] = {}
    chunks: dict[str, list[tuple[int, bytes]]] = {}
    reads: list[tuple[int, str, int, bytes]] = []  # (index, fd, offset, data)
    eof: set[tuple[str, int]] = set()  # (fd, offset) where a read gave b""
    for i, (op, res) in enumerate(zip(ops, results)):
        fd = str(op.args[0]) if op.args else ""
        if op.name == "open":
            if isinstance(res, str) and res.startswith("fd") and fd.rpartition("/")[2] in BLOBS:
                files[res], pos[res], chunks[res] = fd, 0, []
            continue
        if fd not in files:
            continue
        if op.name == "lseek" and isinstance(res, int):
            pos[fd] = res
        if op.name not in ("read", "pread") or not isinstance(res, bytes):
            continue
        at = pos[fd] if op.name == "read" else int(op.args[2])
        if op.name == "read":
            pos[fd] += len(res)
        if not res:
            eof.add((fd, at))
            continue
        reads.append((i, fd, at, res))
    out: dict[int, str] = {}
    certs: object = None
    whole = [(i, fd, data) for i, fd, at, data in reads if at == 0 and (fd, len(data)) in eof]
    if shape.auxblob:
        certs = next((c for c in (_parse(shape.auxblob, d) for _, fd, d in whole
                                  if files[fd].endswith("/auxblob")) if not isinstance(c, str)), None)
    fields = {i: _fields(data, shape, certs) for i, fd, data in whole if files[fd].endswith("/outblob")}
    recent: list[str] = []  # report fds, the one read last at the end
    for i, fd, at, data in reads:
        parts = [f"report {len(data)} bytes" + (f" at {at}" if at else "")] + fields.get(i, [])
        for other in [fd] + [f for f in reversed(recent) if f != fd and files[f] == files[fd]]:
            before = _covered(chunks[other], at, len(data))
            if before is not None:
                parts.append(f"same bytes as {other}" if before == data else f"differs from {other}")
                break
        chunks[fd].append((at, data))
        if fd in recent:
            recent.remove(fd)
        recent.append(fd)
        out[i] = ", ".join(parts)
    return out


def _covered(chunks: list[tuple[int, bytes]], at: int, n: int) -> bytes | None:
    """The bytes [at, at+n) as ``chunks`` (offset, data) read them (the first read that covers
    them all, else the first read of each byte), or None when they do not cover the whole range."""
    for off, data in chunks:
        if off <= at and at + n <= off + len(data):
            return data[at - off:at - off + n]
    buf, have = bytearray(n), bytearray(n)
    for off, data in chunks:
        lo, hi = max(at, off), min(at + n, off + len(data))
        for k in range(lo, hi):
            if not have[k - at]:
                buf[k - at], have[k - at] = data[k - off], 1
    return bytes(buf) if all(have) else None


def _parse(fmt: str, data: bytes) -> object:
    """The parsed blob, or the reason it does not parse (a str)."""
    from .formats.base import ParseError
    from .formats.registry import parse
    try:
        return parse(fmt, data)
    except ParseError as e:
        return str(e)


def _fields(data: bytes, shape: ReportShape, certs: object) -> list[str]:
    """The nonce and privlevel fields of one whole outblob and whether its signature verifies."""
    from .formats.registry import NONCE_FIELD, PRIVLEVEL_FIELD, field
    parsed = _parse(shape.format, data) if shape.format else None
    if isinstance(parsed, str):
        return [f"not {shape.format} ({parsed})"]
    out = []

    def get(path: str | None, fixed: tuple[int, int] | None, as_int: bool) -> object:
        if parsed is not None and path:
            try:
                return field(parsed, path)
            except AttributeError:
                return None
        if fixed and fixed[0] + fixed[1] <= len(data):
            b = data[fixed[0]:fixed[0] + fixed[1]]
            return int.from_bytes(b, "little") if as_int else b
        return None
    nonce = get(NONCE_FIELD.get(shape.format or ""), shape.nonce, False)
    if isinstance(nonce, (bytes, bytearray)):
        out.append(f"nonce {_show(bytes(nonce))}")
    level = get(PRIVLEVEL_FIELD.get(shape.format or ""), shape.privlevel, True)
    if isinstance(level, int):
        out.append(f"privlevel {level}")
    if parsed is not None:
        from .verify.base import TrustAnchors
        from .verify.run import SIGNATURE_STEP, verify
        try:
            v = verify(shape.format, parsed, TrustAnchors(), certs)  # type: ignore[arg-type]
        except KeyError:  # a format without a verifier
            return out
        failed = [s.name for s in v.steps if s.status == "fail"]
        if failed:
            out.append(f"signature fails ({', '.join(failed)})")
        elif v.status_of(SIGNATURE_STEP.get(shape.format or "", "")) == "pass":
            out.append("signature verifies")
    return out
