"""The files a user hands us, read with a bound: the one place each input's bound is stated.

Every file the suite reads on a user's say-so (a trust anchor, a profile, a ``.tsmseq``, a fuzz
corpus input) goes through ``read_bounded``: it is looked at before it is opened (only a regular
file is opened: a FIFO would block, a device could be endless or act on open), opened without
blocking, checked again on the open file (``fstat``: the same regular file), and read up to its
bound plus one byte, so past the bound it is refused without reading the rest.  Files on the
kernel's pseudo-filesystems (configfs, sysfs, proc, ...) and files inside a report group
(``.../tsm/report/``) are refused too: reading a report attribute asks the provider for a report,
and /proc files can be endless or consume what they show.

Every refusal is an ``InputError`` (a ``ValueError``) whose ``str()`` is one line,
``PATH: why``; the CLI prints it and exits 2.  docs/running.md lists the bounds.
"""

from __future__ import annotations

import os
import stat

KiB = 1024
MiB = 1024 * KiB

#: --trust-anchor PEM files: a certificate chain is a few KiB.
TRUST_ANCHOR_MAX = 1 * MiB
#: A profile file (the shipped ones are under 3 KiB), its YAML nesting depth and YAML nodes (after
#: aliases are expanded: profile/yamlmarks.py), and the length of an ``extends:`` chain.
PROFILE_MAX = 256 * KiB
PROFILE_DEPTH = 32
PROFILE_NODES = 20_000
PROFILE_EXTENDS = 16
#: A .tsmseq file: bytes, lines, bytes in one line (a write's data is written out in full, up to
#: four characters a byte: text attributes take a page), threads of a concurrent schedule, and the
#: byte count of one read.
TSMSEQ_MAX = 4 * MiB
TSMSEQ_LINES = 100_000
TSMSEQ_LINE = 64 * KiB
TSMSEQ_THREADS = 64
TSMSEQ_READ = 64 * MiB
#: One fuzz corpus input (seeds in corpora/<target>/, a --corpus directory): the largest seed is an
#: emulated report of a few KiB; and the files and bytes of one target's corpus.
CORPUS_INPUT_MAX = 1 * MiB
CORPUS_FILES = 100_000
CORPUS_TOTAL = 256 * MiB

#: Result files handed to ``report``, ``compare`` and ``bundle verify``: a JUnit or KTAP file or a
#: bundle's results.json (a run of the suite writes well under 1 MiB; a long fuzz run's JUnit a few);
#: one evidence file shown in a report; a bundle's files, and its bytes in all; a baseline file and
#: its entries.
RESULTS_MAX = 32 * MiB
EVIDENCE_MAX = 4 * MiB
BUNDLE_FILES = 10_000
BUNDLE_TOTAL = 1024 * MiB
BASELINE_MAX = 256 * KiB
BASELINE_ENTRIES = 2_000
#: A client run's operation trace (tsm-conformance client): the FUSE frontend's own bounds
#: (frontend/trace.py: 100,000 records, 64 MiB), plus its one closing ``#truncated`` line.
TRACE_RECORDS = 100_000
TRACE_MAX = 64 * MiB + KiB

#: Filesystems whose files are not data: reading them asks the kernel (or a provider) for something.
PSEUDO_FILESYSTEMS = frozenset({
    "configfs", "fuse.tsm", "proc", "sysfs", "debugfs", "tracefs", "securityfs", "efivarfs", "pstore",
    "bpf", "cgroup", "cgroup2", "selinuxfs", "smackfs", "apparmorfs", "binfmt_misc", "fusectl",
    "resctrl", "rpc_pipefs",
})

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class InputError(ValueError):
    """An input refused: ``str()`` is one line, ``PATH: why`` (``PATH:LINE: why`` with a line;
    ``col``, when known, is the 1-based column)."""

    def __init__(self, path: str, why: str, line: int | None = None, col: int | None = None) -> None:
        self.path, self.why, self.line, self.col = str(path), " ".join(str(why).split()), line, col
        super().__init__(f"{self.path}{f':{line}' if line else ''}: {self.why}")


def size_text(n: int) -> str:
    """``4 MiB``, ``256 KiB``, ``100 bytes``."""
    for unit, name in ((MiB, "MiB"), (KiB, "KiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit} {name}"
    return f"{n} bytes"


def kind_of(mode: int) -> str | None:
    """What a non-regular file is (``a FIFO``), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_bounded(path: str | os.PathLike[str], limit: int, what: str = "input") -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; ``InputError`` (one line)
    for anything else: missing or unreadable, not a regular file, on a pseudo-filesystem or inside
    a report group, or longer than ``limit`` (refused after reading ``limit + 1`` bytes at most)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)  # before opening: a FIFO would block, a device may act on open
    except OSError as e:
        raise InputError(p, e.strerror or str(e)) from None
    _check(p, st, limit, what)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as e:
        raise InputError(p, e.strerror or str(e)) from None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise InputError(p, "changed while it was being opened")
        _check(p, fst, limit, what)
        chunks, got = [], 0
        while got <= limit:
            try:
                chunk = os.read(fd, min(limit + 1 - got, 1 * MiB))
            except OSError as e:
                raise InputError(p, e.strerror or str(e)) from None
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    if got > limit:
        raise InputError(p, f"larger than {size_text(limit)}, the bound for a {what}")
    return b"".join(chunks)


def check_file(path: str | os.PathLike[str], limit: int, what: str = "input") -> os.stat_result:
    """What ``read_bounded`` checks before it opens ``path``, for a file another program reads (a
    fuzz corpus input, which libFuzzer loads): its stat, or ``InputError`` (one line)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as e:
        raise InputError(p, e.strerror or str(e)) from None
    _check(p, st, limit, what)
    return st


def _check(p: str, st: os.stat_result, limit: int, what: str) -> None:
    kind = kind_of(st.st_mode)
    if kind:
        raise InputError(p, f"{kind}, not a regular file (a {what} is read from a file)")
    fs = fstype_of(st.st_dev)
    if fs in PSEUDO_FILESYSTEMS:
        raise InputError(p, f"on {fs}, a pseudo-filesystem, not an ordinary file (reading it asks the "
                            f"kernel for something)")
    group = report_group_above(p)
    if group:
        raise InputError(p, f"inside the report group {group}, not an ordinary file (reading a report "
                            f"attribute makes a report)")
    if st.st_size > limit:
        raise InputError(p, f"larger than {size_text(limit)}, the bound for a {what} ({st.st_size} bytes)")


def fstype_of(dev: int) -> str | None:
    """The filesystem type of the mount with device number ``dev`` (/proc/self/mountinfo), or None."""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                fields = left.split()
                if sep and len(fields) > 2 and fields[2] == want and right.split():
                    return right.split()[0]
    except OSError:
        return None
    return None


def report_group_above(path: str) -> str | None:
    """The directory ending in ``tsm/report`` that ``path`` (resolved) lies below, or None."""
    parent = os.path.dirname(os.path.realpath(path))
    while parent != os.path.dirname(parent):
        if parent.endswith("/tsm/report"):
            return parent
        parent = os.path.dirname(parent)
    return None


def utf8(data: bytes, path: str) -> str:
    """``data`` as UTF-8 text; ``InputError`` naming the line and column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InputError(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {col})", line, col) from None
