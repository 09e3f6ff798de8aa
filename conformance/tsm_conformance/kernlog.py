"""The kernel-log policy, in one place: which dmesg lines fail a run, the taint word, reading the
new kernel log records of a run (/dev/kmsg).  Used by live and FUSE runs (``evidence`` in the
plugin) and by the VM runner on the guest's dmesg.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

# Kernel log lines that fail a run (an oops, a BUG, a WARN, lockdep, KASAN/UBSAN reports).
BAD_DMESG = re.compile(r"(BUG:|WARNING:|Oops|general protection fault|Call Trace:|"
                       r"kernel NULL pointer|UBSAN:|KASAN:|possible recursive locking|INFO: task .* blocked)")


def bad_dmesg(text: str) -> list[str]:
    return [line for line in text.splitlines() if BAD_DMESG.search(line)]


def read_taint(path: str = "/proc/sys/kernel/tainted") -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


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
    _fd: int | None = None

    def start(self) -> None:
        self.taint_before = read_taint(self.taint_path)
        try:
            self._fd = os.open(self.kmsg_path, os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self._fd, 0, os.SEEK_END)  # /dev/kmsg: SEEK_END = after the newest record
        except OSError as e:
            self._fd = None
            self.dmesg_unavailable = f"{self.kmsg_path}: {os.strerror(e.errno or 0)}"

    def finish(self) -> None:
        self.taint_after = read_taint(self.taint_path)
        if self._fd is None:
            return
        try:
            while True:
                try:
                    rec = os.read(self._fd, 8192)
                except BlockingIOError:
                    break
                except BrokenPipeError:  # records overwritten meanwhile: go on with the next one
                    continue
                if not rec:
                    break
                text = rec.decode("utf-8", "replace")
                self.lines.append(text.split(";", 1)[1].rstrip("\n") if ";" in text else text.rstrip("\n"))
        finally:
            os.close(self._fd)
            self._fd = None

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
