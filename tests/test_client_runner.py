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
from pathlib import Path
from typing import Any

import pytest

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


def processes_with(marker: str) -> list[str]:
    """Command lines (other than ours) that contain ``marker``."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{d.name}: {cmdline}")
    return found


def nothing_left(trace: Path, before: list[str], marker: str | None = None) -> None:
    assert mountinfo() == before
    assert not processes_with(str(trace)), processes_with(str(trace))  # the jail and the emulator name it
    if marker:
        assert not processes_with(marker), processes_with(marker)


def records(run: ClientRun) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.trace.read_text().splitlines()]


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
    assert time.monotonic() - start < 15
    assert b"never" not in run.stdout_tail
    nothing_left(run.trace, before, "sleep 987651")


@needs_jail
def test_the_cli_runs_a_client_and_maps_its_status(tmp_path: Path) -> None:
    before = mountinfo()
    p = cli("client", "--plans", "none", "--trace", "t.jsonl", "--", "sh", "-c", f"mkdir {R}/a && rmdir {R}/a", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("client exited 0 in ") and "items made 1, removed 1" in line, line
    assert (tmp_path / "t.jsonl").stat().st_size > 0
    p = cli("client", "--plans", "none", "--trace", str(tmp_path / "u.jsonl"), "--", "sh", "-c", "exit 3", cwd=tmp_path)
    assert p.returncode == 1 and "client exited 3" in p.stderr, p.stderr
    assert "needs a command" in one_line_error(cli("client", "--", cwd=tmp_path))
    assert "emulator" in one_line_error(cli("client", "--plans", "none", "--emulate", "nonesuch", "--trace", str(tmp_path / "v.jsonl"),
                                            "--", "true", cwd=tmp_path))
    nothing_left(tmp_path / "t.jsonl", before)


@needs_jail
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_everything(sig: signal.Signals, tmp_path: Path) -> None:
    before = mountinfo()
    trace = tmp_path / "t.jsonl"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "conformance"), env.get("PYTHONPATH", "")])
    p = subprocess.Popen([sys.executable, "-m", "tsm_conformance.cli", "client", "--plans", "none", "--trace", str(trace), "--",
                          "sh", "-c", f"mkdir {R}/x && echo ready && sleep 987652"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(p.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(30)
    try:
        assert line == ["ready\n"], (line, p.poll())
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    nothing_left(trace, before, "sleep 987652")


@needs_jail
def test_a_killed_caller_still_ends_everything(tmp_path: Path) -> None:
    """SIGKILL to `tsm-conformance client`: the jail notices its caller is gone and cleans up."""
    before = mountinfo()
    trace = tmp_path / "t.jsonl"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "conformance"), env.get("PYTHONPATH", "")])
    p = subprocess.Popen([sys.executable, "-m", "tsm_conformance.cli", "client", "--plans", "none", "--trace", str(trace), "--",
                          "sh", "-c", "echo ready && sleep 987653"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    finally:
        p.kill()
        p.wait()
    deadline = time.monotonic() + 20
    while (processes_with(str(trace)) or processes_with("sleep 987653")) and time.monotonic() < deadline:
        time.sleep(0.2)
    nothing_left(trace, before, "sleep 987653")


@needs_jail
@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv (util-linux) is not installed")
def test_not_root_is_one_line(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "conformance"), env.get("PYTHONPATH", "")])
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                        "tsm_conformance.cli", "client", "--plans", "none", "--trace", str(tmp_path / "t.jsonl"), "--", "true"],
                       capture_output=True, text=True, env=env, timeout=60, cwd="/")
    if "Permission denied" in p.stderr and "Traceback" in p.stderr:
        pytest.skip(f"nobody cannot run this checkout: {p.stderr.strip().splitlines()[-1]}")
    assert "needs root" in one_line_error(p)
