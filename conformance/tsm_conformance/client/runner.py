"""Run one client command against the emulated report group, traced (``tsm-conformance client``).

``run_client`` starts ``unshare --mount --propagation private --fork python -m
tsm_conformance.client.jail ...`` (jail.py: the tmpfs over /sys/kernel, the ``emulate --trace``
mount at /sys/kernel/config, the pre-items, CMD) in a process group of its own, tees CMD's
stdout/stderr to ours while keeping their tails, and waits.  Nothing is mounted outside the
namespace, and the namespace ends with its last process: the jail stops CMD's group and the
emulator before it exits.  A KeyboardInterrupt (the CLI's SIGINT/SIGTERM) is forwarded to the jail
as SIGTERM, waited for, and raised again.

Set-up problems (not root, no ``unshare``, no FUSE, the emulator refusing the spec) raise
``ClientSetupError`` with one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import tsm_conformance

from .. import signals
from ..procs import killpg

TAIL = 4096  # bytes of CMD's stdout and stderr kept
EXIT_TIMEOUT, EXIT_SETUP, EXIT_INTERRUPTED = 124, 125, 130  # the jail's statuses (jail.py)
JAIL_GRACE = 30.0  # seconds the jail may take beyond the timeout (kill grace, unmount) before SIGKILL
PKG_ROOT = str(Path(tsm_conformance.__file__).resolve().parents[1])


class ClientSetupError(Exception):
    """The client could not be run here (one line, for the CLI's exit 2)."""


@dataclass
class ClientRun:
    status: int | str  # CMD's exit status (128+N for signal N), or "timeout"
    duration: float  # seconds, from starting the jail to its end
    trace: Path
    jail_pid: int | None  # the pid that made the pre-items (their records carry it)
    client_pid: int | None  # CMD's pid (and process group)
    stdout_tail: bytes = b""
    stderr_tail: bytes = b""
    unbound: list[str] = field(default_factory=list)  # /sys/kernel entries not bound into the namespace


def setup_problem() -> str | None:
    """Why a client cannot be run here, or None."""
    if os.geteuid() != 0:
        return "the client runs in a private mount namespace, which needs root (run it with sudo)"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    from ..frontend.fuse import unavailable_reason  # noqa: PLC0415 (mfusepy only when asked)
    why = unavailable_reason()
    return f"FUSE unavailable: {why}" if why else None


def run_client(cmd: list[str], spec: str, trace: Path, timeout: float, pre_items: list[str] | None = None,
               *, echo: bool = True) -> ClientRun:
    """Run ``cmd`` once with /sys/kernel/config/tsm/report the emulated group of ``spec``, its
    operations traced to ``trace``; ``pre_items`` exist (with an inblob written) before it starts.
    ``echo``: CMD's stdout/stderr also go to ours.  ClientSetupError; KeyboardInterrupt after
    everything was stopped."""
    if not cmd:
        raise ClientSetupError("no client command given (after --)")
    why = setup_problem()
    if why:
        raise ClientSetupError(why)
    trace = trace.resolve()
    try:
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_bytes(b"")
    except OSError as e:
        raise ClientSetupError(f"cannot write the trace {trace}: {e.strerror}") from None
    # The command's SIGINT/SIGTERM (signals.py) is held over the steps that must not be cut in two:
    # a jail started is a jail known (so _stop ends it), and a temporary directory made is removed.
    with signals.held():
        tmp = tempfile.mkdtemp(prefix="tsm-client-")
        status_file = Path(tmp) / "status.json"
    p: subprocess.Popen[bytes] | None = None
    tees: list[_Tee] = []
    try:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(d for d in (PKG_ROOT, os.environ.get("PYTHONPATH")) if d)
        jail = ["unshare", "--mount", "--propagation", "private", "--fork",
                sys.executable, "-m", "tsm_conformance.client.jail", "--spec", spec, "--trace", str(trace),
                "--status", str(status_file), "--timeout", str(timeout),
                "--client-pythonpath", json.dumps(os.environ.get("PYTHONPATH")), "--watch-pid", str(os.getpid()),
                *(a for name in pre_items or () for a in ("--pre-item", name)), "--", *cmd]
        start = time.monotonic()
        with signals.held():
            p = subprocess.Popen(jail, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, process_group=0)
            tees = [_Tee(p.stdout, sys.stdout if echo else None), _Tee(p.stderr, sys.stderr if echo else None)]
        code = _wait(p, timeout + JAIL_GRACE)
        duration = time.monotonic() - start
    except KeyboardInterrupt:
        if p is not None:
            _stop(p)
        raise
    finally:
        with signals.held():
            for t in tees:
                t.join()
            st = _read_status(status_file)
            shutil.rmtree(tmp, ignore_errors=True)
    if code == EXIT_SETUP and st.get("error"):
        raise ClientSetupError(str(st["error"]))
    if st.get("status") is None and code != 0:  # the jail died without saying why
        raise ClientSetupError(f"the namespace's jail ended with status {code}: {_last_line(tees[1].tail)}")
    return ClientRun(status="timeout" if code == EXIT_TIMEOUT else code, duration=duration, trace=trace,
                     jail_pid=st.get("jail_pid"), client_pid=st.get("client_pid"),
                     stdout_tail=tees[0].tail, stderr_tail=tees[1].tail, unbound=list(st.get("unbound") or []))


def _wait(p: subprocess.Popen[bytes], limit: float) -> int:
    try:
        return p.wait(limit)
    except subprocess.TimeoutExpired:  # the jail itself is stuck: end the namespace's processes
        _stop(p)
        return EXIT_TIMEOUT


def _stop(p: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the jail's group (unshare ignores it, the jail stops CMD and the emulator), then
    SIGKILL if it is not done in time.  Waits through further interrupts."""
    deadline = time.monotonic() + JAIL_GRACE
    sent = False
    while True:
        try:
            if not sent:
                sent = True
                killpg(p.pid, signal.SIGTERM)
            left = deadline - time.monotonic()
            if left <= 0:
                killpg(p.pid, signal.SIGKILL)
                p.wait()
                return
            p.wait(left)
            return
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            continue


def _read_status(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _last_line(b: bytes) -> str:
    lines = b.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no message"


class _Tee:
    """Copies a pipe to a stream (if any) and keeps its last TAIL bytes."""

    def __init__(self, pipe: IO[bytes] | None, sink: IO[str] | None) -> None:
        assert pipe is not None
        self.pipe, self.sink, self.tail = pipe, sink, b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        out = getattr(self.sink, "buffer", None)
        for chunk in iter(lambda: os.read(self.pipe.fileno(), 65536), b""):
            self.tail = (self.tail + chunk)[-TAIL:]
            if out is not None:
                try:
                    out.write(chunk)
                    out.flush()
                except (OSError, ValueError):
                    pass

    def join(self) -> None:
        self.thread.join(5)


# ------------------------------------------------------------------------- reading the trace
def records(trace: Path) -> Iterator[dict[str, Any]]:
    """The trace's records (the "#truncated" marker included), skipping a torn last line."""
    with open(trace, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


@dataclass
class Summary:
    operations: int  # records of the client's processes (RELEASE, sent with pid 0, not counted)
    items_made: int  # successful mkdirs of report items by the client
    items_removed: int
    truncated: bool


def summarize(run: ClientRun) -> Summary:
    """What the client did, from the trace: the records of every pid but the jail's."""
    ops = made = removed = 0
    truncated = False
    for rec in records(run.trace):
        if rec.get("op") == "#truncated":
            truncated = True
            continue
        if rec.get("pid") in (run.jail_pid, 0):  # the pre-items; RELEASE, which FUSE sends with no caller
            continue
        ops += 1
        path = rec.get("path")
        if rec.get("result") == 0 and isinstance(path, str) and path and "/" not in path:
            made += rec.get("op") == "mkdir"
            removed += rec.get("op") == "rmdir"
    return Summary(ops, made, removed, truncated)
