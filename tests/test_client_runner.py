"""`tsm-conformance client -- CMD` (client/runner.py, client/jail.py) and the FUSE frontend's
operation trace (frontend/trace.py): a client runs in a private mount namespace where
/sys/kernel/config/tsm/report is the emulated group, its operations are traced with its pids, and
nothing stays mounted or running afterwards (at the end, at the timeout, after SIGINT).  Skipped,
with the reason, without root, unshare or FUSE."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tsm_conformance.client.plans import PLANS
from tsm_conformance.client.runner import ClientRun, run_client, setup_problem, summarize
from tsm_conformance.frontend import trace as trace_mod
from tsm_conformance.frontend.trace import Trace, flags_text

from .test_cli import REPO, cli, one_line_error

pytestmark = pytest.mark.slow

WHY_NOT = setup_problem()
needs_jail = pytest.mark.skipif(WHY_NOT is not None, reason=f"the client cannot run here: {WHY_NOT}")
R = "/sys/kernel/config/tsm/report"
INBLOB = "0123456789abcdef" * 4  # 64 bytes


def mountinfo() -> list[str]:
    """The mounts at or below /sys/kernel and any emulator mount (others' tests mount in parallel
    elsewhere), by root, mount point and source: ids change."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            after = fields[fields.index("-") + 1:]
            if fields[4].startswith("/sys/kernel") or "tsm-client" in after[1:2]:
                out.append(" ".join([*fields[3:5], *after[:2]]))
    return sorted(out)


def cmdline(pid: int) -> str | None:
    """A process's command line, arguments joined by spaces; None when it is gone."""
    try:
        raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def processes_with(marker: str) -> list[str]:
    """Command lines (other than ours) that contain ``marker``."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            line = cmdline(int(d.name))
            if line is not None and marker in line:
                found.append(f"{d.name}: {line}")
    return found


def nothing_left(trace: Path, before: list[str], marker: str | None = None) -> None:
    assert mountinfo() == before
    assert not processes_with(str(trace)), processes_with(str(trace))  # the jail and the emulator name it
    if marker:
        assert not processes_with(marker), processes_with(marker)


def records(run: ClientRun) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.trace.read_text().splitlines()]


def wait_for(what: str, ready: Callable[[], object], p: subprocess.Popen[str] | None = None,
             timeout: float = 120.0) -> None:
    """Until ``ready()`` (an observable event: a file the client wrote, a process gone) holds;
    fails at once when ``p`` (the command) ended instead."""
    deadline = time.monotonic() + timeout
    while not ready():
        if p is not None and p.poll() is not None:
            pytest.fail(f"{what}: the command ended first (status {p.returncode}): {p.communicate()}")
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.05)


@dataclass(frozen=True)
class Proc:
    """A process by pid and start time, so a pid reused meanwhile is not taken for it."""

    pid: int
    start: str
    ppid: int

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        try:  # the fields after the command name: state, ppid, ..., starttime (field 22)
            return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None

    @classmethod
    def of(cls, pid: int) -> Proc:
        f = cls._stat(pid)
        assert f is not None, f"process {pid} is gone already"
        return cls(pid, f[19], int(f[1]))

    def gone(self) -> bool:
        f = self._stat(self.pid)
        return f is None or f[19] != self.start

    def running(self) -> bool:
        """Alive, not a zombie waiting to be reaped."""
        f = self._stat(self.pid)
        return f is not None and f[19] == self.start and f[0] != "Z"


def in_namespace(ns: str) -> list[Proc]:
    """The processes whose mount namespace is ``ns`` (``mnt:[N]``); one that ends meanwhile (the
    client's short-lived commands) is left out."""
    procs = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "ns" / "mnt") != ns:
                    continue
                procs.append(Proc.of(int(d.name)))
            except (OSError, AssertionError):
                continue
    return procs


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "conformance"), env.get("PYTHONPATH", "")])
    return env


def start_cli(cwd: Path, *args: str, stderr: int = subprocess.PIPE, **env: str) -> subprocess.Popen[str]:
    """`tsm-conformance client ...` started in ``cwd`` (a test's tmp_path: the command's default
    outputs, ./tsm-client and ./tsm-client-trace.jsonl, go to the working directory)."""
    return subprocess.Popen([sys.executable, "-m", "tsm_conformance.cli", *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=cli_env(**env), cwd=cwd)


# ----------------------------------------------------------------------------- the trace alone
def test_flags_text() -> None:
    assert flags_text(os.O_WRONLY | os.O_TRUNC) == "O_WRONLY|O_TRUNC"
    assert flags_text(os.O_RDONLY) == "O_RDONLY"
    assert flags_text(os.O_RDWR | os.O_APPEND | 0x40000000) == "O_RDWR|O_APPEND|0x40000000"


def test_trace_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_mod, "MAX_RECORDS", 3)
    t = Trace(str(tmp_path / "t.jsonl"))
    for i in range(5):
        t.record(1, "getattr", f"r{i}", result=0)
    t.close()
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [x.get("path") for x in lines] == ["r0", "r1", "r2", None]
    assert lines[-1] == {"op": "#truncated"}


# ----------------------------------------------------------------------------- the runner
@needs_jail
def test_shell_client_is_traced_with_its_pids(tmp_path: Path) -> None:
    before = mountinfo()
    client = (f"mkdir {R}/c1 && printf {INBLOB} > {R}/c1/inblob && cat {R}/c1/outblob | wc -c && "
              f"rmdir {R}/c1")
    run = run_client(["sh", "-c", client], "sev_guest", tmp_path / "trace.jsonl", 60, echo=False)
    assert run.status == 0, run.stderr_tail
    assert int(run.stdout_tail) > 1000  # an SNP report
    assert run.jail_pid and run.client_pid and run.jail_pid != run.client_pid
    recs = records(run)
    assert all(r["pid"] != run.jail_pid for r in recs)
    ok: dict[tuple[str, str], dict[str, Any]] = {}  # each successful operation's first record
    for r in recs:
        if isinstance(r.get("result"), int):
            ok.setdefault((r["op"], r["path"]), r)
    mkdir, rmdir = ok["mkdir", "c1"], ok["rmdir", "c1"]
    write = ok["write", "c1/inblob"]
    assert (write["len"], write["size"], write["offset"]) == (64, 64, 0)
    assert bytes.fromhex(write["data"]) == INBLOB.encode() and write["result"] == 64
    assert write["pid"] == run.client_pid  # the shell itself writes (printf is a builtin)
    read = ok["read", "c1/outblob"]
    assert read["len"] == read["result"] > 1000
    opens = [r for r in recs if r["op"] == "open" and r["path"] == "c1/inblob"]
    assert opens and opens[0]["flags"].startswith("O_WRONLY") and opens[0]["fh"] == write["fh"]
    for r in (mkdir, rmdir, read):
        assert r["pid"] not in (0, run.jail_pid)
    assert mkdir["t"] < write["t"] < read["t"] < rmdir["t"]
    s = summarize(run)
    assert (s.items_made, s.items_removed, s.truncated) == (1, 1, False) and s.operations >= 8
    nothing_left(run.trace, before)


@needs_jail
def test_pre_items_are_the_jails_and_visible(tmp_path: Path) -> None:
    before = mountinfo()
    run = run_client(["sh", "-c", f"ls {R}; cat {R}/foreign/provider"], "sev_guest", tmp_path / "t.jsonl", 60,
                     pre_items=["foreign"], echo=False)
    assert run.status == 0, run.stderr_tail
    assert run.stdout_tail.decode().splitlines() == ["foreign", "sev_guest"]
    recs = records(run)
    mine = [r for r in recs if r["pid"] == run.jail_pid]
    assert [r["op"] for r in mine if r["op"] in ("mkdir", "write")] == ["mkdir", "write"]
    assert next(r for r in mine if r["op"] == "write")["len"] == 64
    first_client = min(r["t"] for r in recs if r["pid"] not in (0, run.jail_pid))
    assert max(r["t"] for r in mine) < first_client
    assert summarize(run).items_made == 0
    nothing_left(run.trace, before)


@needs_jail
def test_the_timeout_kills_the_client(tmp_path: Path) -> None:
    before = mountinfo()
    start = time.monotonic()
    run = run_client(["sh", "-c", f"mkdir {R}/slow; sleep 987651; echo never"], "sev_guest",
                     tmp_path / "t.jsonl", 1.5, echo=False)
    assert run.status == "timeout"
    assert time.monotonic() - start < 60  # not the sleep: the 1.5 s timeout and the 5 s kill grace
    assert b"never" not in run.stdout_tail
    nothing_left(run.trace, before, "sleep 987651")


@needs_jail
def test_the_cli_runs_a_client_and_maps_its_status(tmp_path: Path) -> None:
    before = mountinfo()
    p = cli("client", "--plans", "none", "--trace", "t.jsonl", "--", "sh", "-c", f"mkdir {R}/a && rmdir {R}/a",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("client exited 0 in ") and "items made 1, removed 1" in line, line
    assert (tmp_path / "t.jsonl").stat().st_size > 0
    p = cli("client", "--plans", "none", "--trace", str(tmp_path / "u.jsonl"), "--", "sh", "-c", "exit 3",
            cwd=tmp_path)
    assert p.returncode == 1 and "client exited 3" in p.stderr, p.stderr
    assert "needs a command" in one_line_error(cli("client", "--", cwd=tmp_path))
    assert "emulator" in one_line_error(cli("client", "--plans", "none", "--emulate", "nonesuch",
                                            "--trace", str(tmp_path / "v.jsonl"), "--", "true", cwd=tmp_path))
    nothing_left(tmp_path / "t.jsonl", before)


@needs_jail
def test_the_cli_runs_every_plan_by_default(tmp_path: Path) -> None:
    """No --plans: every plan, the rules x plans table on stdout, the traces in ./tsm-client."""
    before = mountinfo()
    p = cli("client", "--", "sh", "-c", f"mkdir {R}/a && rmdir {R}/a", cwd=tmp_path)
    assert p.returncode == 0, (p.stdout, p.stderr)
    table = p.stdout.splitlines()
    assert table[0].split() == ["rule", *PLANS], table
    taken = ("foreign-name", "name-taken")  # the client's mkdir meets EEXIST: `sh -c` fails
    assert table[-1].split() == ["exit", "status", *("1" if plan in taken else "0" for plan in PLANS)]
    assert "FAIL" not in p.stdout
    assert p.stderr.splitlines() == [f"client: 0 rule failure(s) over {len(PLANS)} plan(s); traces in tsm-client"]
    out = tmp_path / "tsm-client"
    assert sorted(f.name for f in out.iterdir()) == sorted(f"{plan}.jsonl" for plan in PLANS)
    for plan in PLANS:
        assert (out / f"{plan}.jsonl").stat().st_size > 0, plan
        nothing_left(out / f"{plan}.jsonl", before)


@needs_jail
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_everything(sig: signal.Signals, tmp_path: Path) -> None:
    before = mountinfo()
    trace = tmp_path / "t.jsonl"
    sleep = f"sleep {987600 + sig}"  # the SIGINT and SIGTERM runs may run side by side (xdist)
    p = start_cli(tmp_path, "client", "--plans", "none", "--trace", str(trace), "--",
                  "sh", "-c", f"mkdir {R}/x && echo ready && {sleep}")
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(p.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(120)  # the namespace and the emulator start first (both cores may be busy)
    try:
        assert line == ["ready\n"], (line, p.poll())
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    nothing_left(trace, before, sleep)


@needs_jail
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_plans_ends_everything(sig: signal.Signals, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) or SIGTERM to `tsm-conformance client` (every plan, the default) while the
    second plan's client runs, with a child of its own: exit 130 with one line and no table, nothing
    mounted, no process of the namespace left (the jail, the emulator, the client and its child),
    the namespace gone, no temporary directory and no later plan's trace."""
    before = mountinfo()
    tmp, second, first = tmp_path / "tmp", tmp_path / "second", tmp_path / "first"
    tmp.mkdir()
    client = (f"mkdir {R}/c$$ || exit 1; "
              f"if [ -e {first} ]; then sleep 987654 & "
              f"echo $$ $! $(readlink /proc/self/ns/mnt) > {second}.tmp && mv {second}.tmp {second}; wait; fi; "
              f"rmdir {R}/c$$; echo $$ > {first}")
    p = start_cli(tmp_path, "client", "--", "sh", "-c", client, TMPDIR=str(tmp))
    try:
        wait_for("the second plan's client", second.exists, p)
        sh, child, ns = second.read_text().split()
        namespace = in_namespace(ns)  # the jail, the emulator, sh, its child
        ours = {Proc.of(int(sh)), Proc.of(int(child)), Proc.of(Proc.of(int(sh)).ppid)}  # the jail: sh's parent
        emulator = [q for q in namespace if " emulate " in (cmdline(q.pid) or "")]
        assert ours <= set(namespace) and len(emulator) == 1, (ours, namespace)
        unshare = Proc.of(Proc.of(int(sh)).ppid).ppid  # outside the namespace, the jail's parent
        namespace.append(Proc.of(unshare))
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, (p.returncode, out, err)
    assert err.splitlines() == ["tsm-conformance: interrupted"] and out == "", (out, err)
    assert not [q for q in namespace if q.running()], [q for q in namespace if q.running()]
    wait_for("every process of the namespace reaped", lambda: all(q.gone() for q in namespace))
    last = max(int(q.start) for q in namespace)  # namespace ids are reused too: a later jail's are others'
    assert not [q for q in in_namespace(ns) if int(q.start) <= last]
    assert mountinfo() == before
    assert not list(tmp.iterdir())  # the runner's temporary directory (the jail's status file)
    assert sorted(f.name for f in (tmp_path / "tsm-client").iterdir()) == ["generation-bump.jsonl", "none.jsonl"]
    host = Path(R)
    assert not (host.is_dir() and [n for n in os.listdir(host) if n in (f"c{sh}", f"c{first.read_text().strip()}")])


@needs_jail
def test_a_killed_caller_still_ends_everything(tmp_path: Path) -> None:
    """SIGKILL to `tsm-conformance client` (every plan, the default) while the first plan's client
    runs: the jail notices its caller is gone and cleans up."""
    before = mountinfo()
    started = tmp_path / "started"
    p = start_cli(tmp_path, "client", "--", "sh", "-c",
                  f"echo $$ > {started}.tmp && mv {started}.tmp {started} && exec sleep 987653",
                  stderr=subprocess.DEVNULL)
    try:
        wait_for("the client started", started.exists, p)
        client = Proc.of(int(started.read_text()))
    finally:
        p.kill()
        p.wait()
    wait_for("the jail, the emulator and the client gone",
             lambda: not processes_with(str(tmp_path)) and not processes_with("sleep 987653") and client.gone())
    nothing_left(tmp_path / "tsm-client" / "none.jsonl", before, "sleep 987653")


@needs_jail
@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv (util-linux) is not installed")
def test_not_root_is_one_line(tmp_path: Path) -> None:
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                        "tsm_conformance.cli", "client", "--out", str(tmp_path / "out"), "--", "true"],
                       capture_output=True, text=True, env=cli_env(), timeout=60, cwd="/")
    if "Permission denied" in p.stderr and "Traceback" in p.stderr:
        pytest.skip(f"nobody cannot run this checkout: {p.stderr.strip().splitlines()[-1]}")
    assert "needs root" in one_line_error(p)
