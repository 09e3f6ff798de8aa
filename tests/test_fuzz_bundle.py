"""``tsm-conformance fuzz ... --bundle DIR`` (docs/fuzzing.md "Bundles", docs/results.md).

The real command in a subprocess, short budgets: a clean run's bundle verifies and says pass; a
seeded fault's bundle says fail with the evidence and the finding's artifacts; an edited bundle
does not verify; a used directory is refused before anything runs; SIGTERM still leaves a whole
bundle, with no worker left behind.  One in-process case covers the outcomes a short run on the
emulator does not give (skip, error).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tsm_conformance.results.bundle import verify
from tsm_fuzz.bundle import FuzzBundle
from tsm_fuzz.runner import Job, Runner

pytestmark = pytest.mark.slow

TSM = str(Path(sys.executable).with_name("tsm-conformance"))
TIMEOUT = 180  # seconds any one command may take (the fuzz budgets here are 5-20 s)


def _tsm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TSM, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def _results(bundle: Path) -> dict:
    return json.loads((bundle / "results.json").read_text())


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Two targets on the faithful emulator, with --junit too."""
    d = tmp_path_factory.mktemp("clean")
    res = _tsm("fuzz", "inblob", "privlevel", "--emulate", "tsm_test", "--max-time", "5", "--junit", "j.xml",
               "--bundle", "B", cwd=d)
    return d, res


def test_clean_run_bundle_verifies(clean: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    d, res = clean
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    v = _tsm("bundle", "verify", "B", cwd=d)
    assert v.returncode == 0, v.stdout + v.stderr
    r = _results(d / "B")
    assert (r["format"], r["command"], r["verdict"], r["exit_status"]) == ("tsm-conformance-results/1", "fuzz",
                                                                            "pass", 0)
    assert [(c["id"], c["area"], c["outcome"]) for c in r["checks"]] == [("fuzz.inblob", "fuzz", "pass"),
                                                                         ("fuzz.privlevel", "fuzz", "pass")]
    assert r["totals"] == {"pass": 2, "fail": 0, "xfail": 0, "xpass": 0, "skip": 0, "error": 0}
    assert all("execs" in c["reason"] and c["duration"] > 0 for c in r["checks"])


def test_clean_run_bundle_contents(clean: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    d, res = clean
    b = d / "B"
    # the JUnit is the runner's (--junit's) own; summary.txt is what the command printed
    assert (b / "junit.xml").read_bytes() == (d / "j.xml").read_bytes()
    assert (b / "summary.txt").read_text() == res.stdout
    assert "PASS" in res.stdout and "tsm-fuzz: 2 passed" in res.stdout
    env = json.loads((b / "environment.json").read_text())
    assert {"tool", "python", "host", "target", "run"} <= env.keys()
    assert (env["target"]["kind"], env["target"]["provider"]) == ("emulated", "tsm_test")
    assert env["target"]["describe"].startswith("emulated tsm_test")
    run = env["run"]
    assert (run["exit_status"], run["targets"], run["max_time"]) == (0, ["inblob", "privlevel"], 5.0)
    assert run["argv"][:3] == ["tsm-conformance", "fuzz", "inblob"] and run["started"] and run["finished"]
    files = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    # no corpora (they can be large), no evidence for a pass
    assert files == ["MANIFEST.sha256", "environment.json", "junit.xml", "results.json", "summary.txt"]


@pytest.mark.parametrize("member", ["results.json", "junit.xml", "summary.txt", "environment.json"])
def test_edited_bundle_fails_verify(clean: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path,
                                    member: str) -> None:
    d, _ = clean
    import shutil
    b = tmp_path / "B"
    shutil.copytree(d / "B", b)
    with open(b / member, "a", encoding="utf-8") as f:
        f.write("\n")
    v = _tsm("bundle", "verify", str(b), cwd=tmp_path)
    assert v.returncode == 1, v.stdout + v.stderr
    assert f"{member}: sha256 differs from MANIFEST.sha256" in v.stdout


def test_finding_bundle(tmp_path: Path) -> None:
    spec = "sev_guest+inblob-truncate"
    res = _tsm("fuzz", "inblob", "--emulate", spec, "--max-time", "20", "--minimize-time", "1", "--bundle", "B",
               cwd=tmp_path)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    b = tmp_path / "B"
    r = _results(b)
    assert (r["verdict"], r["exit_status"], r["totals"]["fail"]) == ("fail", 1, 1)
    (c,) = r["checks"]
    assert (c["id"], c["outcome"], c["evidence"]) == ("fuzz.inblob", "fail", "evidence/fuzz.inblob.txt")
    assert "EFBIG" in c["reason"] and "\n" not in c["reason"]
    evidence = (b / c["evidence"]).read_text()
    assert evidence.startswith("fuzz.inblob: FAILURE: ") and "# tsmseq 1" in evidence
    assert all(f.startswith("findings/inblob/") and (b / f).is_file() for f in c["files"])
    seqs = [f for f in c["files"] if f.endswith(".tsmseq")]
    assert seqs and any(f.endswith(".json") for f in c["files"]) and any("-crash-" in f for f in c["files"])
    v = _tsm("bundle", "verify", "B", cwd=tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr
    # the bundled sequence is the finding: it replays on the same tree
    minimised = next(f for f in seqs if f.endswith("-min.tsmseq"))
    rep = _tsm("replay", str(b / minimised), "--emulate", spec, cwd=tmp_path)
    assert rep.returncode == 0 and "0 differ" in rep.stdout, rep.stdout + rep.stderr


def test_used_bundle_directory_is_refused_before_fuzzing(tmp_path: Path) -> None:
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "old").write_text("x")
    res = _tsm("fuzz", "inblob", "--emulate", "tsm_test", "--max-time", "5", "--bundle", "B", cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == "", res.stdout + res.stderr
    assert res.stderr.splitlines() == ["tsm-conformance fuzz: --bundle B: not empty (a bundle holds one run: "
                                       "give a new directory)"]
    assert sorted(os.listdir(tmp_path)) == ["B"] and os.listdir(tmp_path / "B") == ["old"]  # no artifacts


def _workers_of(artifacts: Path) -> list[int]:
    """Processes whose command line names this run's artifacts directory (its workers)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(artifacts).encode() in cmd:
            pids.append(int(pid))
    return pids


def test_sigterm_still_writes_a_whole_bundle(tmp_path: Path) -> None:
    art = tmp_path / "art"
    p = subprocess.Popen([TSM, "fuzz", "inblob", "privlevel", "--emulate", "tsm_test", "--max-time", "120",
                          "--jobs", "1", "--artifacts", str(art), "--bundle", "B"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    guard = threading.Timer(TIMEOUT, p.kill)  # a hang fails the test instead of blocking it
    guard.start()
    try:
        assert p.stdout is not None
        seen = ""
        while "exec/s" not in seen:  # the first progress line: a worker is fuzzing
            line = p.stdout.readline()
            assert line, f"the command ended before fuzzing: {seen}"
            seen += line
        assert _workers_of(art)
        p.send_signal(signal.SIGTERM)
        # the rest through the same buffered stream: communicate() reads the pipe's descriptor and
        # would miss a line readline() already buffered (two lines arriving in one read, under load)
        out = p.stdout.read()
        assert p.stderr is not None
        err = p.stderr.read()  # one line: it cannot fill the pipe while stdout is read first
        p.wait(timeout=TIMEOUT)
    finally:
        guard.cancel()
    assert p.returncode == 130, seen + out + err
    assert err.splitlines() == ["tsm-conformance fuzz: interrupted"]
    assert not _workers_of(art)  # stopped, not orphaned
    r = _results(tmp_path / "B")
    assert (r["verdict"], r["exit_status"]) == ("interrupted", 130)
    assert [(c["id"], c["outcome"]) for c in r["checks"]] == [("fuzz.inblob", "not-run"),
                                                              ("fuzz.privlevel", "not-run")]
    assert r["checks"][1]["reason"] == "not-run: not started: interrupted"
    summary = (tmp_path / "B" / "summary.txt").read_text()
    assert summary == seen + out + "tsm-conformance fuzz: interrupted\n"
    assert "INTERRUPTED" in summary and "2 interrupted" in summary
    v = _tsm("bundle", "verify", "B", cwd=tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr


def test_skipped_and_error_targets(tmp_path: Path) -> None:
    """A target unavailable here is skip-unsupported; one that could not run is an error with its
    evidence (in-process: the emulator gives neither in a short run)."""
    r = Runner(["inblob", "privlevel"], emulate="tsm_test", root=None, max_time=1, runs=None, corpus=None,
               artifacts=str(tmp_path / "art"), jobs=1)
    r.done = [Job("inblob", "d", Path(), Path(), outcome="skipped", skipped="needs a thing this host lacks",
                  message="needs a thing this host lacks"),
              Job("privlevel", "d", Path(), Path(), outcome="error", message="worker exited 3 without a crash input",
                  detail="the worker's last lines", started=1.0, ended=3.5)]
    rec = FuzzBundle(str(tmp_path / "B"), ["tsm-conformance", "fuzz"], r.names, 1.0, None)
    rec.start(r)
    rec.write(1)
    assert verify(str(tmp_path / "B")) == []
    res = _results(tmp_path / "B")
    assert [(c["id"], c["outcome"], c["reason"]) for c in res["checks"]] == [
        ("fuzz.inblob", "skip-unsupported", "unsupported: needs a thing this host lacks"),
        ("fuzz.privlevel", "error", "worker exited 3 without a crash input")]
    assert (res["verdict"], res["totals"]["skip"], res["totals"]["error"]) == ("fail", 1, 1)
    assert "the worker's last lines" in (tmp_path / "B" / "evidence" / "fuzz.privlevel.txt").read_text()
