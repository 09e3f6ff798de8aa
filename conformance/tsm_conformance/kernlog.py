"""The kernel-log policy, in one place: which dmesg lines fail a run and which kind of kernel report
each one starts (``classify``), the taint word, and reading the new records of a kernel log without
blocking (``LogTail``: /dev/kmsg, or a regular file or FIFO standing in for it).  Used by live and
FUSE runs (``evidence`` in the plugin), by the VM runner on the guest's dmesg, and by the fuzz
workers, which read the log after every input (``tsm_fuzz.harness.KernelWatch``).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

# The report headers, tried in this order (the specific ones before the generic BUG:/WARNING:),
# as the kernel prints them: Documentation/dev-tools/kasan.rst ("BUG: KASAN: slab-out-of-bounds in
# ..."), kcsan.rst ("BUG: KCSAN: data-race in ..."), kfence.rst, kmsan.rst, ubsan.rst (lib/ubsan.c:
# "UBSAN: array-index-out-of-bounds in FILE:LINE:COL"), kernel/locking/lockdep.c (its "WARNING: ..."
# headers, "INFO: trying to register non-static key"), kernel/rcu/update.c via lockdep
# ("WARNING: suspicious RCU usage"), kernel/sched/core.c (__might_sleep: "BUG: sleeping function
# called from invalid context at FILE:LINE", "BUG: scheduling while atomic"), kernel/hung_task.c
# ("INFO: task NAME:PID blocked for more than N seconds."), kernel/watchdog.c and kernel/rcu/tree_stall.h
# (lockups, stalls), arch/x86/mm/fault.c and kernel/panic.c (oops, WARN, panic).
KERNEL_REPORTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((rule, re.compile(pattern)) for rule, pattern in (
    ("kernel.kasan", r"BUG: KASAN: "),
    ("kernel.kcsan", r"BUG: KCSAN: "),
    ("kernel.kfence", r"BUG: KFENCE: "),
    ("kernel.kmsan", r"BUG: KMSAN: "),
    ("kernel.ubsan", r"UBSAN: "),
    ("kernel.lockdep", r"possible circular locking dependency|possible recursive locking|inconsistent lock state|"
                       r"possible irq lock inversion dependency|-safe -> \S+-unsafe lock order detected|"
                       r"bad unlock balance detected|held lock freed|lock held when returning to user space|"
                       r"suspicious RCU usage|Nested lock was not taken|bad contention detected|"
                       r"INFO: trying to register non-static key|BUG: MAX_\w+ too low|"
                       r"BUG: key \S+ has not been registered"),
    ("kernel.atomic_sleep", r"BUG: sleeping function called from invalid context|BUG: scheduling while atomic"),
    ("kernel.hung_task", r"INFO: task .* blocked for more than \d+ seconds"),
    ("kernel.lockup", r"BUG: soft lockup|Watchdog detected hard LOCKUP|detected stalls? on CPU|self-detected stall"),
    ("kernel.oops", r"BUG: kernel NULL pointer dereference|BUG: unable to handle|\bOops\b|general protection fault|"
                    r"kernel NULL pointer"),
    ("kernel.panic", r"Kernel panic - not syncing"),
    ("kernel.bug", r"kernel BUG at |BUG:"),
    ("kernel.warn", r"WARNING:"),
    # what is left of the original policy: a stack trace with no header we know, KASAN/Oops text
    ("kernel.report", r"Call Trace:|KASAN:|Oops|INFO: task .* blocked"),
))

# Kernel log lines that fail a run (an oops, a BUG, a WARN, lockdep, KASAN/KCSAN/UBSAN reports ...):
# any line that starts one of the reports above.
BAD_DMESG = re.compile("|".join(f"(?:{p.pattern})" for _, p in KERNEL_REPORTS))


def bad_dmesg(text: str) -> list[str]:
    return [line for line in text.splitlines() if BAD_DMESG.search(line)]


def classify(line: str) -> str | None:
    """The rule of the kernel report a log line starts (``kernel.kasan``, ``kernel.lockdep``,
    ``kernel.warn`` ...), None for a line that is not one (``BAD_DMESG`` is the same set)."""
    if not BAD_DMESG.search(line):
        return None
    for rule, pattern in KERNEL_REPORTS:
        if pattern.search(line):
            return rule
    return "kernel.report"  # not reached: BAD_DMESG is the union of the patterns


def _report_key(line: str) -> str:
    """A report line without what changes from boot to boot: the timestamp, addresses, offsets,
    pids and CPU numbers (``BUG: KASAN: slab-out-of-bounds in f+0x1a/0x90 [m]`` -> ``... in f [m]``)."""
    t = re.sub(r"^\s*(<\d+>)?\[\s*\d+\.\d+\]\s*", "", line.strip())
    t = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "", t)
    t = re.sub(r"0x[0-9a-f]+|\b[0-9a-f]{8,16}\b", "X", t)
    return re.sub(r"\b(CPU|PID|pid|task)[: ]+\S+", r"\1", t)


def same_report(a: str, b: str) -> bool:
    """Two kernel report lines name the same bug (replay --vm of a kernel finding): the same kind
    (``classify``) and the same text once boot-to-boot details are dropped."""
    ka, kb = _report_key(a), _report_key(b)
    return bool(ka and kb) and classify(a) == classify(b) and (ka in kb or kb in ka)


def read_taint(path: str = "/proc/sys/kernel/tainted") -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


# Documentation/admin-guide/tainted-kernels.rst: bit -> letter, what it means.
TAINT_FLAGS = {0: ("P", "proprietary module"), 1: ("F", "module force-loaded"), 2: ("S", "out of spec"),
               3: ("R", "module force-unloaded"), 4: ("M", "machine check"), 5: ("B", "bad page"),
               6: ("U", "taint requested by user space"), 7: ("D", "the kernel died (oops, BUG)"),
               8: ("A", "ACPI table overridden"), 9: ("W", "a warning (WARN)"), 10: ("C", "staging driver"),
               11: ("I", "firmware workaround"), 12: ("O", "out-of-tree module"), 13: ("E", "unsigned module"),
               14: ("L", "soft lockup"), 15: ("K", "live patched"), 16: ("X", "auxiliary"),
               17: ("T", "struct randomisation"), 18: ("N", "in-kernel test")}
# Bits a module load sets (tsm_test is out of tree and unsigned): not a sign the kernel went wrong.
TAINT_MODULE_LOAD = (1 << 0) | (1 << 1) | (1 << 10) | (1 << 12) | (1 << 13)


def taint_text(word: int) -> str:
    """``512 (W: a warning (WARN))``: the word and the meaning of each bit set."""
    bits = [f"{TAINT_FLAGS[b][0]}: {TAINT_FLAGS[b][1]}" if b in TAINT_FLAGS else f"bit {b}"
            for b in range(word.bit_length()) if word >> b & 1]
    return f"{word} ({', '.join(bits)})" if bits else str(word)


# A /dev/kmsg record: "PRIO,SEQ,USEC,FLAGS[,...];MESSAGE", then " KEY=VALUE" dictionary lines
# (Documentation/ABI/testing/dev-kmsg).  A stand-in file may hold records or plain dmesg lines.
_KMSG = re.compile(r"(\d+),(\d+),(\d+),[^;]*;")
READ_SIZE = 8192  # above the largest /dev/kmsg record (EINVAL for a smaller buffer)
MAX_READS = 4096  # per read_new(): a log flooding faster than we read is read on at the next call


@dataclass
class LogTail:
    """The records a kernel log gains from ``open()`` on, read without ever blocking.

    ``path`` is /dev/kmsg (opened at its end, SEEK_END: every read() gives one record, EAGAIN when
    there is none, EPIPE when records were overwritten before we read them: we go on with the oldest
    one left and count the loss from the records' sequence numbers), or a regular file or FIFO
    standing in for it (a file is read from its end on; a partial last line waits for its end).
    ``read_new()`` costs one read() when nothing is new."""

    path: str
    lost: int = 0  # records overwritten before they were read (EPIPE, gaps in the sequence numbers)
    error: str = ""  # why it could not be opened
    _fd: int | None = None
    _partial: bytes = b""
    _seq: int | None = None
    _read: Callable[[int, int], bytes] = field(default=os.read, repr=False)

    def open(self) -> bool:
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            self.error = f"{self.path}: {os.strerror(e.errno or 0)}"
            return False
        try:
            mode = os.fstat(self._fd).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISREG(mode):
                os.lseek(self._fd, 0, os.SEEK_END)  # /dev/kmsg: after the newest record
        except OSError:
            pass
        return True

    @property
    def opened(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read_new(self) -> list[str]:
        """The log's new lines (records' messages without their prefix and dictionary)."""
        if self._fd is None:
            return []
        chunks = []
        overrun = False
        for _ in range(MAX_READS):
            try:
                rec = self._read(self._fd, READ_SIZE)
            except BlockingIOError:  # EAGAIN: nothing more (/dev/kmsg, a FIFO with a writer)
                break
            except BrokenPipeError:  # EPIPE: records overwritten; the next read gives the oldest left
                overrun = True  # the records' sequence numbers say how many
                continue
            except InterruptedError:
                continue
            if not rec:  # a regular file's end, a FIFO without a writer
                break
            chunks.append(rec)
        lost = self.lost
        if not chunks:
            self.lost += overrun
            return []
        lines = (self._partial + b"".join(chunks)).split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended a line; else the start of the next one
        if len(self._partial) > READ_SIZE:  # no line is that long: take it as it is
            lines.append(self._partial)
            self._partial = b""
        out = []
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            m = _KMSG.match(line)
            if m:
                seq = int(m[2])
                if self._seq is not None and seq > self._seq + 1:
                    self.lost += seq - self._seq - 1
                self._seq = seq
                out.append(line[m.end():])
            elif line.startswith(" ") and self._seq is not None:
                continue  # a /dev/kmsg dictionary line (" SUBSYSTEM=...", " DEVICE=...")
            else:
                out.append(line)
        if overrun and self.lost == lost:  # no numbers to count by: at least one
            self.lost += 1
        return out


def read_word(fd: int) -> bytes:
    """The taint word's text, re-read through an open fd (pread at 0: procfs sysctls render each read)."""
    return os.pread(fd, 64, 0).strip()


EVIDENCE_LINES = 200  # kernel log lines of a run kept in JUnit/KTAP


@dataclass
class KernelEvidence:
    """Taint before/after and the kernel log written during a run (live and FUSE targets)."""

    taint_path: str = "/proc/sys/kernel/tainted"
    kmsg_path: str = "/dev/kmsg"
    taint_before: int | None = None
    taint_after: int | None = None
    lines: list[str] = field(default_factory=list)
    dmesg_unavailable: str = ""
    _tail: LogTail | None = None

    def start(self) -> None:
        self.taint_before = read_taint(self.taint_path)
        self._tail = LogTail(self.kmsg_path)
        if not self._tail.open():
            self.dmesg_unavailable = self._tail.error
            self._tail = None

    def finish(self) -> None:
        self.taint_after = read_taint(self.taint_path)
        if self._tail is None:
            return
        try:
            self.lines += self._tail.read_new()
        finally:
            self._tail.close()
            self._tail = None

    @property
    def bad(self) -> list[str]:
        return bad_dmesg("\n".join(self.lines))

    @property
    def new_taint(self) -> bool:
        return None not in (self.taint_before, self.taint_after) and self.taint_after != self.taint_before

    def problem(self) -> str:
        """'' when the run left the kernel log and taint clean, else one line saying what happened."""
        parts = []
        if self.new_taint:
            parts.append(f"taint {self.taint_before} -> {self.taint_after}")
        if self.bad:
            parts.append(f"{len(self.bad)} oops/BUG/WARNING lines in dmesg")
        return "; ".join(parts)

    def properties(self) -> dict[str, str]:
        return {"tsm.taint_before": str(self.taint_before), "tsm.taint_after": str(self.taint_after),
                "tsm.dmesg_new_lines": self.dmesg_unavailable and f"unavailable ({self.dmesg_unavailable})"
                or str(len(self.lines)), "tsm.dmesg_bad_lines": str(len(self.bad)),
                # the lines themselves (the last EVIDENCE_LINES): the evidence, not just its size
                "tsm.dmesg": "\n".join(self.lines[-EVIDENCE_LINES:])}
