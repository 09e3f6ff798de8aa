"""The process inside the client's private mount namespace (started by runner.py through
``unshare --mount --propagation private --fork``); not a command for users.

``python -m tsm_conformance.client.jail --spec SPEC --trace FILE --status FILE --timeout S
[--pre-item NAME]... [--client-pythonpath JSON] -- CMD...``

1. A tmpfs (0755) over ``/sys/kernel``; every original entry bound back (directories recursively,
   files, symlinks copied); ``config`` (configfs, if the host has it) and whatever cannot be bound
   are skipped and listed in the status file.
2. ``mkdir /sys/kernel/config``; ``tsm-conformance emulate SPEC --mount /sys/kernel/config
   --trace FILE`` as a child in its own session, ready when it prints its "mounted" line.
3. The pre-items: mkdir and a 64-byte inblob written, by this process (its pid marks them).
4. CMD in its own process group, with this process's stdin/stdout/stderr and the caller's
   environment, bounded by the timeout (SIGTERM to its group, SIGKILL 5 s later); its group is
   killed when it ends too, so nothing of it outlives the mount.  When the caller (``--watch-pid``,
   the runner) disappears without a word (SIGKILL), the jail ends as for SIGTERM.
5. The emulator stopped with SIGTERM (it unmounts); exit with CMD's status (128+N for a signal),
   124 at the timeout, 130 when this process got SIGINT/SIGTERM, 125 when set-up failed (the
   reason in the status file's "error").

The status file (JSON, rewritten at each step): ``jail_pid``, ``client_pid``, ``unbound``,
``error``, ``status``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..procs import killpg, pid_alive

SYS_KERNEL = "/sys/kernel"
CONFIG = "/sys/kernel/config"
REPORT = "/sys/kernel/config/tsm/report"
MS_BIND = 4096
MS_REC = 16384
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for the client's group
MOUNT_WAIT = 30.0  # seconds for the emulator's "mounted" line
WATCH_EVERY = 0.5  # seconds between looks at the caller (--watch-pid)
PRE_INBLOB = b"tsm-conformance pre-item (foreign)".ljust(64, b".")
EXIT_TIMEOUT, EXIT_SETUP, EXIT_INTERRUPTED = 124, 125, 130


class Interrupted(Exception):
    pass


class Jail:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.status: dict[str, Any] = {"jail_pid": os.getpid(), "client_pid": None, "unbound": [],
                                       "error": None, "status": None}
        self.emulator: subprocess.Popen[bytes] | None = None
        self.client: subprocess.Popen[bytes] | None = None
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def save(self) -> None:
        tmp = self.args.status + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.status, f)
        os.replace(tmp, self.args.status)

    def mount(self, src: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
        if self.libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                           data.encode() if data else None) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"mount {src} on {target}: {os.strerror(e)}")

    # ------------------------------------------------------------------ 1, 2
    def cover_sys_kernel(self) -> None:
        entries = sorted(os.listdir(SYS_KERNEL))
        original = os.open(SYS_KERNEL, os.O_PATH | os.O_DIRECTORY)  # reaches under the tmpfs
        try:
            self.mount("tsm-client", SYS_KERNEL, "tmpfs", 0, "mode=0755")
            for name in entries:
                if name == "config":
                    self.status["unbound"].append(name)
                    continue
                src, dst = f"/proc/self/fd/{original}/{name}", f"{SYS_KERNEL}/{name}"
                try:
                    if os.path.islink(src):
                        os.symlink(os.readlink(src), dst)
                        continue
                    if os.path.isdir(src):
                        os.mkdir(dst, 0o755)
                    else:
                        os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644))
                    self.mount(src, dst, None, MS_BIND | MS_REC, None)
                except OSError:
                    self.status["unbound"].append(name)
        finally:
            os.close(original)
        os.mkdir(CONFIG, 0o755)

    def start_emulator(self) -> None:
        cmd = [sys.executable, "-m", "tsm_conformance.cli", "emulate", self.args.spec, "--mount", CONFIG,
               "--trace", self.args.trace]
        with _uninterrupted():  # a child started is a child known, so it is stopped
            self.emulator = p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE, start_new_session=True)
        assert p.stdout is not None and p.stderr is not None
        deadline, out = time.monotonic() + MOUNT_WAIT, b""
        while b"\n" not in out:
            left = deadline - time.monotonic()
            ready = select.select([p.stdout], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                raise SetupFailed(f"the emulator did not mount within {MOUNT_WAIT:.0f} s")
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:  # stdout closed: it ended; its stderr says why
                err = p.stderr.read().decode(errors="replace").strip().splitlines()
                why = err[-1] if err else "no message"
                raise SetupFailed(f"the emulator ended before mounting: {why.removeprefix('tsm-conformance: ')}")
            out += chunk
        if not out.startswith(b"mounted "):
            raise SetupFailed(f"the emulator said {out.splitlines()[0].decode(errors='replace')!r}, not 'mounted'")
        for pipe, sink in ((p.stdout, None), (p.stderr, sys.stderr.buffer)):  # drained, never blocking it
            threading.Thread(target=_drain, args=(pipe, sink), daemon=True).start()

    # ------------------------------------------------------------------ 3
    def make_pre_items(self) -> None:
        for name in self.args.pre_item:
            try:
                os.mkdir(f"{REPORT}/{name}")
                fd = os.open(f"{REPORT}/{name}/inblob", os.O_WRONLY)
                try:
                    os.write(fd, PRE_INBLOB)
                finally:
                    os.close(fd)
            except OSError as e:
                raise SetupFailed(f"pre-item {name}: {e.strerror}") from None

    # ------------------------------------------------------------------ 4
    def run_client(self) -> int:
        env = dict(os.environ)
        pythonpath = json.loads(self.args.client_pythonpath)
        if pythonpath is None:
            env.pop("PYTHONPATH", None)
        else:
            env["PYTHONPATH"] = pythonpath
        try:
            with _uninterrupted():
                self.client = c = subprocess.Popen(self.args.cmd, env=env, process_group=0)
        except OSError as e:
            raise SetupFailed(f"cannot run {self.args.cmd[0]}: {e.strerror}") from None
        self.status["client_pid"] = c.pid
        self.save()
        deadline = time.monotonic() + self.args.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill_client()
                return EXIT_TIMEOUT
            try:
                code = c.wait(min(left, WATCH_EVERY))
                break
            except subprocess.TimeoutExpired:
                if self.args.watch_pid and not pid_alive(self.args.watch_pid):
                    raise Interrupted from None  # the caller was SIGKILLed: end as for a signal
        self.kill_client()  # whatever of its group is left
        return code if code >= 0 else 128 - code

    def kill_client(self) -> None:
        c = self.client
        if c is None:
            return
        if not killpg(c.pid, signal.SIGTERM):
            c.poll()
            return
        deadline = time.monotonic() + KILL_GRACE
        while time.monotonic() < deadline:
            c.poll()
            if not _group_alive(c.pid):
                return
            time.sleep(0.05)
        killpg(c.pid, signal.SIGKILL)
        c.wait()

    # ------------------------------------------------------------------ 5
    def stop_emulator(self) -> None:
        p = self.emulator
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if os.path.ismount(CONFIG):  # killed before it unmounted: the namespace still holds it
            self.libc.umount2(CONFIG.encode(), 2)  # MNT_DETACH

    def main(self) -> int:
        code = EXIT_SETUP
        try:
            self.save()
            self.cover_sys_kernel()
            self.save()
            self.start_emulator()
            self.make_pre_items()
            code = self.run_client()
        except SetupFailed as e:
            self.status["error"] = str(e)
        except OSError as e:
            self.status["error"] = f"setting up the namespace: {e}"
        except Interrupted:
            code = EXIT_INTERRUPTED
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.kill_client()
            self.stop_emulator()
            self.status["status"] = code
            self.save()
        return code


class SetupFailed(Exception):
    """One line: why the namespace or the emulator could not be set up."""


def _drain(pipe: Any, sink: Any) -> None:
    for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
        if sink is not None:
            try:
                sink.write(chunk)
                sink.flush()
            except OSError:
                pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie leader still counts for kill(); look for a live member
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


_CRITICAL = [0, False]  # inside _uninterrupted (depth), a signal came meanwhile


class _uninterrupted:  # noqa: N801
    """A SIGINT/SIGTERM during the block is raised as Interrupted when it ends (signal masks would
    be inherited by the children started there)."""

    def __enter__(self) -> None:
        _CRITICAL[0] += 1

    def __exit__(self, *exc: object) -> None:
        _CRITICAL[0] -= 1
        if not _CRITICAL[0] and _CRITICAL[1] and exc[0] is None:
            _CRITICAL[1] = False
            raise Interrupted


def _on_signal(signum: int, frame: object) -> None:
    if _CRITICAL[0]:
        _CRITICAL[1] = True
        return
    raise Interrupted


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tsm_conformance.client.jail")
    p.add_argument("--spec", required=True)
    p.add_argument("--trace", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--pre-item", action="append", default=[])
    p.add_argument("--watch-pid", type=int, default=0, help="end as if signalled when this process is gone")
    p.add_argument("--client-pythonpath", default="null", help="JSON: the caller's PYTHONPATH (null: unset)")
    p.add_argument("cmd", nargs="+")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    return Jail(parse(sys.argv[1:] if argv is None else argv)).main()


if __name__ == "__main__":
    sys.exit(main())
