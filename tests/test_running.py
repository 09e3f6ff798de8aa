"""Running it for real: KTAP (checked by a strict parser written from ktap.rst) agreeing with JUnit,
detect, clean, no leftovers after SIGINT/SIGTERM/SIGKILL, hung operations, budgets, one-line errors."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from .test_cli import REPO, cli, one_line_error
from .test_fuse import emulate, needs_fuse

DIRECTIVES = ("SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR")
RESULT = re.compile(r"^(ok|not ok) (\d+)(?: ([^#]*?))?(?: # (.*))?$")


def parse_ktap(text: str) -> tuple[list[dict], dict[str, int]]:
    """Strict KTAP v1 (Documentation/dev-tools/ktap.rst): version line, plan, results numbered 1..N
    matching the plan, subtests indented two spaces with their own version and plan before their
    result line, known directives only, no '#' in descriptions.  Returns the top-level tests (each
    with 'subtests') and the '# Totals:' counts."""
    lines = text.splitlines()
    totals: dict[str, int] = {}

    def block(i: int, depth: int) -> tuple[list[dict], int]:
        ind = "  " * depth
        assert lines[i] == ind + "KTAP version 1", (i, lines[i])
        m = re.fullmatch(re.escape(ind) + r"1\.\.(\d+)", lines[i + 1])
        assert m, (i + 1, lines[i + 1])
        plan, i, tests, pending = int(m.group(1)), i + 2, [], None
        while i < len(lines):
            ln = lines[i]
            if ln == ind + "  KTAP version 1":
                pending, i = block(i, depth + 1)
                continue
            if not ln.startswith(ind) or (depth and not ln.startswith(ind)):
                break
            body = ln[len(ind):]
            if body.startswith("# "):
                if body.startswith("# Totals: ") and depth == 0:
                    totals.update({k: int(v) for k, v in (x.split(":") for x in body[10:].split())})
                i += 1
                continue
            if body.startswith(" "):
                break  # a deeper line outside a subtest block: caller decides (never valid here)
            m = RESULT.match(body)
            assert m, (i, ln)
            ok, num, desc, directive = m.group(1), int(m.group(2)), m.group(3) or "", m.group(4)
            assert num == len(tests) + 1, (i, ln)
            if directive:
                word = directive.split()[0]
                assert word in DIRECTIVES, (i, ln)
                if word in ("ERROR", "TIMEOUT"):
                    assert ok == "not ok", (i, ln)
                if word == "SKIP":
                    assert ok == "ok", (i, ln)
            tests.append({"ok": ok == "ok", "id": desc, "directive": directive or "", "subtests": pending or []})
            pending = None
            i += 1
        assert pending is None, "a subtest block without its result line"
        assert len(tests) == plan, (plan, len(tests))
        return tests, i

    tests, end = block(0, 0)
    assert end == len(lines), (end, lines[end:end + 3])
    return tests, totals


def leaf_counts(tests: list[dict]) -> dict[str, int]:
    c = dict.fromkeys(("pass", "fail", "xfail", "xpass", "skip", "error"), 0)
    for area in tests:
        for t in area["subtests"]:
            d = t["directive"].split()[0] if t["directive"] else ""
            if d == "SKIP":
                c["skip"] += 1
            elif d == "XFAIL":
                c["xfail"] += 1
            elif d == "ERROR":
                c["error"] += 1
            elif t["ok"]:
                c["pass"] += 1
            else:
                c["fail"] += 1  # TIMEOUT, XPASS(strict) and plain failures
    return c


def junit_counts(path: Path) -> dict[str, int]:
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def agreeing_counts(ktap: Path, junit: Path) -> tuple[list[dict], dict[str, int]]:
    """Parse the KTAP strictly and check that its leaves, its Totals line and the JUnit file all
    count the same checks the same way."""
    tests, totals = parse_ktap(ktap.read_text())
    c = leaf_counts(tests)
    assert {k: totals[k] for k in c if k != "xpass"} == {k: v for k, v in c.items() if k != "xpass"}
    j = junit_counts(junit)
    assert j["tests"] == sum(totals.values())
    assert j["failures"] == totals["fail"] + totals["xpass"]
    assert j["errors"] == totals["error"]
    assert j["skipped"] == totals["skip"] + totals["xfail"]
    return tests, totals


def test_a_run_stopped_by_x_reports_every_planned_check_in_both_formats(tmp_path: Path) -> None:
    """-x: the checks after the first failure are SKIP not-run in KTAP *and* skipped in JUnit, with
    the reason naming -x; the kernel evidence is not lost to it (FUSE/live only, so not here)."""
    ktap, junit = tmp_path / "k.txt", tmp_path / "j.xml"
    p = cli("run", "--emulate", "sev_guest+read-bumps-generation", "--ktap", str(ktap), "--junit", str(junit),
            "-q", "--", "-x", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    tests, totals = agreeing_counts(ktap, junit)
    assert totals["fail"] == 1
    why = "-x stopped the run after the first failure"
    not_run = ktap.read_text().count(f"# SKIP not-run: {why}")
    assert not_run >= 10 and f"{why}: {not_run} of the skipped checks did not run" in p.stdout
    skipped = [e.get("message", "") for e in ET.parse(junit).getroot().iter("skipped")]
    assert sum(f"not-run: {why}" in m for m in skipped) == not_run


@pytest.mark.parametrize("spec,profile", [("tsm_test", "tsm_test"), ("sev_guest+inblob-truncate", "sev_guest")])
def test_ktap_is_strict_and_agrees_with_junit(tmp_path: Path, spec: str, profile: str) -> None:
    ktap, junit = tmp_path / "k.txt", tmp_path / "j.xml"
    p = cli("run", "--emulate", spec, "--profile", profile, "--ktap", str(ktap), "--junit", str(junit),
            "--", "--tsm-check", "[!m]*", cwd=tmp_path)
    assert p.returncode in (0, 1), p.stderr
    tests, totals = agreeing_counts(ktap, junit)
    if spec == "tsm_test":  # the size-then-fill race: known (the shipped baseline), not failed
        assert totals["fail"] == 0 and p.returncode == 0
        assert "provider.read.size_then_fill_integrity # SKIP known: configfs size-then-fill" in ktap.read_text()
    else:
        assert totals["fail"] >= 1 and not next(a for a in tests if a["id"] == "inblob")["ok"]
    assert "tsm summary per area" in p.stdout and "tsm: [1/" in p.stderr


@pytest.mark.parametrize("stdout_ktap", [["--format", "ktap"], ["--ktap", "-"]])
def test_ktap_on_stdout_is_ktap_alone(tmp_path: Path, stdout_ktap: list[str]) -> None:
    """--format ktap and --ktap -: stdout is KTAP alone; pytest's report and the progress lines
    go to stderr, each progress line on a line of its own.  Repeated --tsm-check flags add up."""
    p = cli("run", "--emulate", "tdx_guest", *stdout_ktap, "--", "--tsm-check", "inblob.*", "--tsm-check",
            "cache.*", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    tests, totals = parse_ktap(p.stdout)
    assert sorted(t["id"] for t in tests) == ["cache", "inblob"] and totals["pass"] >= 1
    assert "passed" in p.stderr
    progress = [ln for ln in p.stderr.splitlines() if "tsm: [" in ln]
    assert len(progress) == 2 and all(ln.startswith("tsm: [") for ln in progress), p.stderr


def test_kselftest_wrapper_skips_without_configfs_tsm_and_fails_on_bad_setup(tmp_path: Path) -> None:
    """Exit 4 and a KTAP skip plan only when the machine has no configfs-tsm (or no provider); a
    mistake in TSM_ROOT/TSM_EMULATE/TSM_ARGS is a failure with "Bail out!"; TSM_ARGS reach the run."""
    base = dict(os.environ, PYTHONPATH=str(REPO / "conformance"),
                TSM_CONFORMANCE=f"{sys.executable} -m tsm_conformance.cli")

    def wrapper(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(REPO / "kselftest" / "tsm_conformance.sh")], capture_output=True,
                              text=True, env={**base, **env}, timeout=120, cwd=tmp_path)  # ./tsm-failures
    for absent in (dict(TSM_ROOT=str(tmp_path / "config" / "tsm" / "report")),
                   dict(TSM_EMULATE="sev_guest:registered=0")):
        p = wrapper(**absent)
        assert p.returncode == 4, p.stdout + p.stderr
        # a short fixed reason (kernel CI databases make it a result name), the detail on a diagnostic line
        assert p.stdout.startswith("KTAP version 1\n1..0 # SKIP no configfs-tsm\n# ") \
            and p.stdout.count("\n") == 3, p.stdout
    for mistake, says in ((dict(TSM_ROOT=str(tmp_path)), "not configfs"),
                          (dict(TSM_EMULATE="sev_guest+nope"), "unknown quirk 'nope'"),
                          (dict(TSM_EMULATE="sev_guest", TSM_ARGS="--profile nosuch"), "nosuch")):
        p = wrapper(**mistake)
        assert p.returncode == 2, p.stdout + p.stderr
        assert p.stdout.startswith("KTAP version 1\n1..0\nBail out! ") and says in p.stdout, p.stdout
    p = wrapper(TSM_EMULATE="tdx_guest", TSM_ARGS="-- --tsm-check inblob.*")
    assert p.returncode == 0, p.stdout + p.stderr
    parse_ktap(p.stdout)
    p = wrapper(TSM_EMULATE="sev_guest", TSM_ARGS="--profile sev_guest-svsm -- --tsm-check discovery.*")
    assert p.returncode == 1 and "profile sev_guest-svsm" in p.stdout, p.stdout  # the profile was used


def test_detect_prints_profile_and_evidence() -> None:
    p = cli("detect", "--emulate", "sev_guest-svsm")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("profile sev_guest-svsm ")
    assert "svsm present" in p.stdout and "privlevel_floor  2" in p.stdout and "kernel " in p.stdout
    assert cli("detect", "--emulate", "tdx_guest").stdout.startswith("profile tdx_guest ")
    assert "no report provider is registered" in one_line_error(cli("detect", "--emulate", "tsm_test:registered=0"))


@pytest.mark.parametrize("limit,deadline,not_run", [
    (["--op-timeout", "1"], "(--op-timeout)", r"not-run: read\(fd\d+ = r0/outblob"),
    # the default 90 s --op-timeout: the deadline is what is left of --budget time (a kselftest TIMEOUT)
    (["--budget", "time=3"], "(what was left of --budget time)", r"not-run: time budget of 3 s used up \(read\(fd\d+"),
])
def test_hung_report_in_process_ends_within_its_limit(tmp_path: Path, limit: list[str], deadline: str,
                                                      not_run: str) -> None:
    t0 = time.monotonic()
    p = cli("run", "--emulate", "sev_guest+report-hangs", *limit, "--ktap", str(tmp_path / "k"), cwd=tmp_path)
    took = time.monotonic() - t0
    assert p.returncode == 1 and took < 30, (took, p.stdout[-1500:])
    # the fd number depends on what the check opened first (privlevel at the floor, the nonce)
    assert re.search(r"hung: read\(fd\d+ = r0/outblob", p.stdout) and deadline in p.stdout
    assert re.search(not_run, p.stdout)  # later checks are skipped, naming why
    k = (tmp_path / "k").read_text()
    assert re.search(r"not ok \d+ cache\.\S+ # TIMEOUT", k)
    parse_ktap(k)


def test_budget_skips_as_not_run(tmp_path: Path) -> None:
    p = cli("run", "--emulate", "sev_guest", "--budget", "reports=3", "--", "-rs", cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:]
    assert "not-run: report budget used up" in p.stdout
    p = cli("run", "--emulate", "sev_guest", "--budget", "reports=1000,time=1h", "--", "-rs", "--tsm-check",
            "concurrency.*", cwd=tmp_path)
    assert p.returncode == 4 and "not-run: concurrency checks make uncounted reports" in p.stdout, p.stdout[-2000:]
    p = cli("run", "--emulate", "sev_guest", "--budget", "time=0.001", "--", "-rs", cwd=tmp_path)
    assert "not-run: time budget of 0.001 s used up" in p.stdout
    assert "reports=N" in one_line_error(cli("run", "--emulate", "sev_guest", "--budget", "lots"))
    for bad, says in (("reports=0", "reports must be at least 1"), ("time=inf", "positive, finite"),
                      ("time=0", "positive, finite"), ("reports=5,reports=6", "reports given twice")):
        assert says in one_line_error(cli("run", "--emulate", "sev_guest", "--budget", bad)), bad


def test_one_line_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.mkdir()
    assert "configfs is not mounted" in one_line_error(cli("run", "--root", str(cfg / "tsm" / "report")))
    assert "no report provider is registered (mkdir gives ENXIO)" in one_line_error(
        cli("run", "--emulate", "sev_guest:registered=0"))
    env = dict(os.environ, FUSE_LIBRARY_PATH="/nonexistent/libfuse3.so.3")
    env["PYTHONPATH"] = str(REPO / "conformance")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run([sys.executable, "-m", "tsm_conformance.cli", "emulate", "sev_guest", "--mount", str(mnt)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert one_line_error(p).startswith("tsm-conformance: FUSE unavailable: ")
    assert "--op-timeout" in one_line_error(cli("run", "--emulate", "sev_guest", "--op-timeout", "0"))
    (tmp_path / "afile").write_text("")
    assert one_line_error(cli("run", "--emulate", "sev_guest", "--seq-dir", str(tmp_path / "afile"))).endswith(
        "afile is not a directory")
    assert "not a place for files" in one_line_error(cli("run", "--emulate", "sev_guest", "--seq-dir", "/proc/x"))
    assert "not a regular file" in one_line_error(cli("run", "--emulate", "sev_guest", "--junit", "/dev/full"))
    assert "not both" in one_line_error(cli("run", "--emulate", "sev_guest", "--format", "ktap", "--ktap", "k"))
    assert "positive, finite" in one_line_error(cli("run", "--emulate", "sev_guest", "--op-timeout", "nan"))
    assert "matches no check" in one_line_error(cli("run", "--emulate", "sev_guest", "--", "--tsm-check", "x*"))
    assert "larger than any report" in one_line_error(cli("inspect", "/dev/zero"))
    fifo = tmp_path.parent / f"{tmp_path.name}-fifo"  # open() of it would wait for a writer forever
    os.mkfifo(fifo)
    assert "not a regular file" in one_line_error(cli("inspect", str(fifo)))
    assert sorted(os.listdir(tmp_path)) == ["afile", "config", "mnt"]  # no empty output files, no seq dirs
    for spec, says in [("tsm_test:delay_ms=abc", "tsm_test parameter delay_ms=abc: expected an integer 0..3600000"),
                       ("sev_guest:vmpl=abc", "sev_guest parameter vmpl=abc: expected an integer 0..3"),
                       ("sev_guest:vmpl=4", "sev_guest parameter vmpl=4: expected an integer 0..3"),
                       ("tsm_test:dely_ms=5", "unknown tsm_test parameter 'dely_ms'; did you mean 'delay_ms'?"),
                       ("sev_guest:foo=1", "unknown sev_guest parameter 'foo' (known: "),
                       ("tdx_guest:quote_status=bad", "tdx_guest parameter quote_status=bad: expected ok | error"),
                       ("sev_guest:vmpl=1,vmpl=2", "parameter vmpl given twice")]:
        assert says in one_line_error(cli("run", "--emulate", spec)), spec
    nobody = tmp_path / "ro"
    nobody.mkdir()
    os.chmod(tmp_path, 0o755)
    if os.geteuid() == 0:
        def drop() -> None:
            os.setgid(65534)
            os.setuid(65534)
        try:
            p = subprocess.run([sys.executable, "-m", "tsm_conformance.cli", "run", "--root", str(nobody)],
                               capture_output=True, text=True, env=env, timeout=60, preexec_fn=drop)
        except PermissionError:  # the interpreter itself is not executable for nobody here
            return
        if "Permission denied" not in p.stderr:
            assert "run as root" in one_line_error(p)


#: run arguments that refuse to start, and what their one line says ({tmp}: the test's directory)
REFUSED = [(["--emulate", "sev_guest", "--budget", "lots"], "--budget lots: expected reports=N"),
           (["--emulate", "sev_guest", "--profile", "nosuch"], "unknown profile 'nosuch'"),
           (["--emulate", "sev_guest+nope"], "unknown quirk 'nope'"),
           (["--root", "{tmp}"], "not configfs"),
           (["--emulate", "sev_guest:registered=0"], "no report provider is registered"),
           (["--emulate", "sev_guest", "--op-timeout", "0"], "--op-timeout must be"),
           (["--emulate", "sev_guest", "--on-hang", "maybe"], "invalid choice: 'maybe'"),
           (["--emulate", "sev_guest", "--", "--no-such-pytest-opt"],
            "tsm-conformance: pytest: unrecognized arguments: --no-such-pytest-opt"),
           (["--emulate", "sev_guest", "--", "--maxfail", "abc"],
            "tsm-conformance: pytest: argument --maxfail: invalid int value: 'abc'"),
           (["--emulate", "sev_guest", "--", "--tsm-check"], "pytest: argument --tsm-check: expected one argument"),
           (["--emulate", "sev_guest", "--", "-k", "bad("], "Wrong expression passed to '-k': bad(: at column 5"),
           (["--emulate", "sev_guest", "--", "-m", "a and"], "Wrong expression passed to '-m'"),
           (["--emulate", "sev_guest", "--", "nosuch.py"], "file or directory not found: nosuch.py"),
           (["--emulate", "sev_guest", "--", "old.xml"], "old.xml: only the configfs-tsm checks are collected here"),
           (["--emulate", "sev_guest", "--", "-W", "bad::Nonsense"], "invalid action: 'bad'"),
           (["--emulate", "sev_guest", "--", "-p", "nosuchplugin"], "Error importing plugin \"nosuchplugin\"")]


def _old_outputs(tmp_path: Path) -> dict[Path, tuple[bytes, int]]:
    """A --ktap and a --junit file from an earlier run, dated a day back: (content, mtime) each."""
    before = {}
    for name, text in (("old.ktap", "KTAP version 1\n1..0 # SKIP an earlier run\n"), ("old.xml", "<testsuites/>\n")):
        f = tmp_path / name
        f.write_text(text)
        os.utime(f, ns=(time.time_ns() - 86400 * 10**9,) * 2)
        before[f] = (f.read_bytes(), f.stat().st_mtime_ns)
    return before


@pytest.mark.parametrize("args,says", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_refused_run_leaves_its_output_files_as_they_were(tmp_path: Path, args: list[str], says: str) -> None:
    """Outputs are written only when the run starts: a run refused before (its arguments, its
    set-up, pytest's own usage errors, all one line on stderr and exit 2) leaves an existing --ktap
    file as it leaves --junit's; KTAP on stdout (--format ktap, --ktap -) still gets its document."""
    before = _old_outputs(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    cut = args.index("--") if "--" in args else len(args)
    for outputs in (["--ktap", "old.ktap"], ["--format", "ktap"], ["--ktap", "-"]):
        p = cli("run", *args[:cut], *outputs, "--junit", "old.xml", "-q", *args[cut:], cwd=tmp_path)
        line = one_line_error(p)
        assert line.startswith("tsm-conformance") and says in line, (outputs, line)
        assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in before} == before, outputs
        if outputs[0] == "--ktap" and outputs[1] != "-":
            assert p.stdout == "", p.stdout
        else:  # KTAP on stdout: a document that says the run did not happen
            plan = "1..0 # SKIP " if "registered=0" in args[1] else "1..0\nBail out! "
            assert p.stdout.startswith(f"KTAP version 1\n{plan}") and p.stdout.count("\n") <= 3, p.stdout
    assert sorted(os.listdir(tmp_path)) == ["old.ktap", "old.xml"]  # no seq dir, no other file


def test_a_run_refused_for_its_outputs_leaves_them_as_they_were(tmp_path: Path) -> None:
    """Even the refusal about the outputs themselves: --ktap and --junit naming one file."""
    before = _old_outputs(tmp_path)
    for junit in ("old.ktap", str(tmp_path / "old.ktap")):
        line = one_line_error(cli("run", "--emulate", "sev_guest", "--ktap", "old.ktap", "--junit", junit,
                                  cwd=tmp_path))
        assert line == "tsm-conformance: --ktap and --junit both name old.ktap"
        assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in before} == before
    p = cli("run", "--emulate", "sev_guest", "--ktap", "old.ktap", "--junit", "old.xml", "--", "--tsm-check",
            "inblob.*", cwd=tmp_path)  # a run that starts replaces both
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    agreeing_counts(tmp_path / "old.ktap", tmp_path / "old.xml")


def _handles_signals(pid: int) -> bool:
    """The command handles SIGINT/SIGTERM: SIGTERM is caught (/proc/PID/status SigCgt; the
    interpreter catches only SIGINT by itself), from the package's first lines on (the start-up
    handler, then the command's own).  Before that the interpreter is still starting up, and a
    signal gets Python's default: a traceback, or death by that signal."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except OSError:
        pass
    return False


def _ktap_results(path: Path) -> int:
    """Result lines (subtests and areas) the run has written to its --ktap file so far."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    return len(re.findall(r"^ *(?:not )?ok \d+ ", text, re.M))


def _wait_for(p: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll until ``ready()`` (an observable point of the run), however loaded the machine is."""
    end = time.monotonic() + timeout
    while not ready():
        assert p.poll() is None, f"the run ended ({p.returncode}) before {what}"
        assert time.monotonic() < end, f"no {what} within {timeout:g} s"
        time.sleep(0.002)


def _run(tmp_path: Path, *args: str, stderr: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "conformance"))
    return subprocess.Popen([sys.executable, "-m", "tsm_conformance.cli", "run", *args], stdout=subprocess.DEVNULL,
                            stderr=stderr, text=True, env=env, cwd=tmp_path)


def test_interrupted_emulated_runs_leave_nothing_and_complete_ktap(tmp_path: Path) -> None:
    """SIGINT/SIGTERM at random points while the checks of an in-process emulated run go on (after
    the n-th KTAP result, n random): exit 130, the end-of-run line says 0 items are left (listed
    after the sweep), no traceback, and KTAP and JUnit both still list every planned check (the
    unrun ones as skipped not-run)."""
    rng = random.Random(61)
    for n, sig in enumerate([signal.SIGINT, signal.SIGTERM] * 3):
        ktap, junit = tmp_path / f"k{n}", tmp_path / f"j{n}.xml"
        p = _run(tmp_path, "--emulate", "sev_guest", "-q", "--ktap", str(ktap), "--junit", str(junit))
        results = rng.randint(1, 40)  # of ~90: the run has seconds of checks left
        _wait_for(p, lambda ktap=ktap, results=results: _ktap_results(ktap) >= results, f"{results} KTAP results")
        time.sleep(rng.uniform(0, 0.02))
        p.send_signal(sig)
        err = p.communicate(timeout=120)[1]
        assert "Traceback" not in err and "could not be removed" not in err, err
        assert p.returncode == 130, (p.returncode, err)
        assert re.search(r"interrupted; 0 report items left in emulated sev_guest", err), err
        agreeing_counts(ktap, junit)  # the unrun checks are skipped in both


@pytest.mark.parametrize("finalizer", ["module-lock", "del", "weakref", "exec"])
def test_an_interrupt_in_the_import_system_or_a_finalizer_still_ends_the_command(tmp_path: Path,
                                                                                   finalizer: str) -> None:
    """The CLI's real handling, with SIGTERM handled inside importlib's weakref callback for a module
    lock (it printed 'Exception ignored in: <function _get_module_lock.<locals>.cb>' with a traceback
    and left the global import lock held), inside a __del__ or another weakref callback (Python drops
    the KeyboardInterrupt raised there), or passing through code run by exec() of a string (CPython
    then killed the process with SIGINT at exit): one 'interrupted' line, exit 130.  The main thread
    waits in the finalizer for a lock another thread holds while it sends the signal, so the handler
    runs exactly there."""
    script = tmp_path / "interrupted_finalizer.py"
    script.write_text(f"""
import _imp, importlib._bootstrap, os, signal, sys, threading, time, weakref
from tsm_conformance import cli

def signal_while_main_waits(hold, let_go):
    held = threading.Event()
    def other():
        hold()
        held.set()
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)
        let_go()
    threading.Thread(target=other).start()
    held.wait()

class Obj:
    pass

def command(argv):  # in place of the command _dispatch would run
    lock = threading.Lock()
    wait = lambda *_: (lock.acquire(), lock.release())
    if {finalizer!r} == "module-lock":
        obj = importlib._bootstrap._get_module_lock("tsm_probe")
        signal_while_main_waits(_imp.acquire_lock, _imp.release_lock)
    elif {finalizer!r} == "del":
        Obj.__del__ = wait
        obj = Obj()
        signal_while_main_waits(lock.acquire, lock.release)
    elif {finalizer!r} == "weakref":
        obj = Obj()
        ref = weakref.ref(obj, wait)
        signal_while_main_waits(lock.acquire, lock.release)
    else:
        obj = None
        signal_while_main_waits(lock.acquire, lock.release)
        exec("lock.acquire(); lock.release()", {{"lock": lock}})
    try:
        del obj  # the finalizer runs now
        end = time.monotonic() + 20
        while time.monotonic() < end:  # the interrupt comes here
            pass
        print("not interrupted", file=sys.stderr)
        return 0
    finally:
        if _imp.lock_held():
            print("the import lock is still held", file=sys.stderr)

cli._dispatch = command
sys.argv[1:] = ["detect"]
sys.exit(cli.main())
""")
    _ends_interrupted(script)


def test_a_signal_while_the_command_installs_its_handlers_is_one_line_and_130(tmp_path: Path) -> None:
    """SIGINT handled the moment the command's SIGINT handler is in place (before SIGTERM's): its
    KeyboardInterrupt came from signals.unwind_on_signals, outside the command's own handling, and
    the process died by SIGINT with a traceback.  Now: one 'interrupted' line, exit 130."""
    script = tmp_path / "interrupted_installing.py"
    script.write_text("""
import signal, sys
from tsm_conformance import cli, signals

install = signal.signal
def installing(sig, handler):
    old = install(sig, handler)
    if sig == signal.SIGINT and handler is signals._handler:
        signal.raise_signal(signal.SIGINT)  # handled right here, before SIGTERM's handler
    return old
signal.signal = installing
sys.argv[1:] = ["detect"]
sys.exit(cli.main())
""")
    _ends_interrupted(script)


def _ends_interrupted(script: Path) -> None:
    """Run ``script`` as a module (as the tests and the kselftest wrapper run the CLI: only then
    does CPython's exit look at its unhandled-KeyboardInterrupt mark): one line, exit 130."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "conformance"), str(script.parent)]))
    p = subprocess.run([sys.executable, "-m", script.stem], capture_output=True, text=True, env=env, timeout=120)
    assert (p.returncode, p.stderr) == (130, "tsm-conformance: interrupted\n")


def test_signals_at_any_point_of_start_up_end_quietly(tmp_path: Path) -> None:
    """SIGINT/SIGTERM at random points between the CLI installing its handlers and the first check's
    result (imports of pytest, the plugin and the checks, where interrupts land in the import system
    and in finalizers; probing; collection): exit 130, no traceback, no 'Exception ignored'.  The
    window is measured on this machine, as loaded as it is, by a first run signalled at its end."""
    rng = random.Random(130)
    window = 0.0
    for n in range(11):
        ktap = tmp_path / f"k{n}"
        p = _run(tmp_path, "--emulate", "sev_guest", "-q", "--ktap", str(ktap))
        _wait_for(p, lambda p=p: _handles_signals(p.pid), "signal handlers")
        if n == 0:
            t0 = time.monotonic()
            _wait_for(p, lambda ktap=ktap: _ktap_results(ktap) >= 1, "a KTAP result")
            window = time.monotonic() - t0
        else:
            time.sleep(rng.uniform(0, window))
        p.send_signal([signal.SIGINT, signal.SIGTERM][n % 2])
        err = p.communicate(timeout=120)[1]
        assert p.returncode == 130, (p.returncode, err)
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert "interrupted" in err.splitlines()[-1], err


#: A pytest plugin for the run: it holds a lock the run is about to take in a Python-level __enter__
#: (at the first check: the watchdog guard's Event; at the first rmdir: the emulator's inode lock),
#: and once the main thread waits for it simulates the signal (_thread.interrupt_main: no EINTR, so
#: the handler runs right after the lock call returns, in that __enter__), then lets it go.
_SIGNAL_AFTER_THE_LOCK = """
import _thread, os, sys, threading, time
from tsm_conformance.checks.deadline import WATCHDOG
from tsm_conformance.emulator.kernel import Kernel
from tsm_conformance.plugin import run_state

def signal_when_it_waits_for(lock):
    lock.acquire()
    main = threading.main_thread().ident

    def waiting():
        f = sys._current_frames().get(main)
        me = f.f_locals.get("self") if f is not None and f.f_code.co_name == "__enter__" else None
        return (f, f.f_lasti) if getattr(me, "_lock", getattr(me, "lock", None)) is lock else None

    def signal_once_it_waits():
        seen = None
        while seen is None or waiting() != seen:  # the same instruction twice: blocked in acquire
            seen = waiting()
            time.sleep(0.05)
        _thread.interrupt_main(int(os.environ["TSM_TEST_SIGNAL"]))
        lock.release()
    threading.Thread(target=signal_once_it_waits, daemon=True).start()

def pytest_runtest_setup(item):  # the check runs in the item's setup, after this
    if getattr(pytest_runtest_setup, "done", False):
        return
    pytest_runtest_setup.done = True
    if os.environ["TSM_TEST_LOCK"] == "event":
        signal_when_it_waits_for(WATCHDOG._wake._cond._lock)
        return
    kernel = run_state(item.config).tree.kernel

    def at_rmdir(frame, event, arg):
        if event == "call" and frame.f_code is Kernel.rmdir.__code__:
            sys.setprofile(None)
            signal_when_it_waits_for(kernel._dir_lock)
    sys.setprofile(at_rmdir)
"""


@pytest.mark.parametrize(("lock", "sig"), [("event", signal.SIGINT), ("inode", signal.SIGTERM)])
def test_a_signal_right_after_a_with_statement_took_its_lock_ends_the_run(tmp_path: Path, lock: str,
                                                                          sig: signal.Signals) -> None:
    """A signal handled right after a Python-level __enter__ took its lock (threading.Condition's
    under the watchdog guard's Event; the emulator's inode lock) is raised a moment later, outside
    it: raised there, the with statement was never entered and the lock stayed held, so the
    end-of-run sweep's guard waited for the Event forever (the start-up test's rare hang), or the
    check's rmdir waited for the inode lock until its 90 s deadline.  Now: exit 130 at once, every
    item removed, no traceback."""
    (tmp_path / "signal_after_the_lock.py").write_text(_SIGNAL_AFTER_THE_LOCK)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "conformance"), str(tmp_path)]),
               TSM_TEST_LOCK=lock, TSM_TEST_SIGNAL=str(int(sig)))
    p = subprocess.Popen([sys.executable, "-m", "tsm_conformance.cli", "run", "--emulate", "sev_guest", "-q",
                          "--", "-p", "signal_after_the_lock"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        err = p.communicate(timeout=120)[1]
    finally:
        p.kill()
    assert p.returncode == 130 and "Traceback" not in err and "Exception ignored" not in err, (p.returncode, err)
    assert re.fullmatch(r"tsm-conformance: interrupted; 0 report items left in emulated sev_guest@7.0 .*",
                        err.strip().splitlines()[-1]), err


def test_a_signal_after_the_cleanup_does_not_change_the_exit_status(tmp_path: Path) -> None:
    """SIGINT after the n-th area's progress line, then SIGTERM the moment the leftover line is out
    (the cleanup is done): the process still exits 130 (it used to die by the second signal:
    shutdown restores default handlers)."""
    for n in range(4):
        p = _run(tmp_path, "--emulate", "sev_guest")
        assert p.stderr is not None
        lines = []
        areas = 0
        for line in p.stderr:
            lines.append(line)
            if "tsm: [" in line:  # an area finished: the checks are running
                areas += 1
                if areas == n + 1:
                    p.send_signal(signal.SIGINT)
            if "report items left" in line:
                p.send_signal(signal.SIGTERM)
                break
        rest = p.communicate(timeout=120)[1]
        assert p.returncode == 130, (p.returncode, "".join(lines) + rest)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_at_the_end_of_pytests_session_leaves_the_promised_line_last(tmp_path: Path,
                                                                               sig: signal.Signals) -> None:
    """A signal while pytest finishes its session (the not-run results, KTAP, JUnit, the summary:
    outside pytest's own interrupt handling) used to add a bare 'tsm-conformance: interrupted' after
    the leftovers line, and could cut KTAP or JUnit short.  It waits for the session's end (held
    there by a plugin that sleeps in pytest_sessionfinish), then the run exits 130: both files
    complete and agreeing, the leftovers line last."""
    (tmp_path / "slow_session_end.py").write_text(
        "import os, pathlib, time\n"
        "def pytest_sessionfinish(session):\n"
        "    pathlib.Path(os.environ['TSM_TEST_MARK']).write_text('finishing')\n"
        "    time.sleep(1)\n")
    mark = tmp_path / "finishing"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "conformance"), str(tmp_path)]),
               TSM_TEST_MARK=str(mark))
    p = subprocess.Popen([sys.executable, "-m", "tsm_conformance.cli", "run", "--emulate", "sev_guest", "-q",
                          "--ktap", "k.ktap", "--junit", "j.xml", "--", "-p", "slow_session_end",
                          "--tsm-check", "inblob.*"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    _wait_for(p, mark.exists, "the end of the session")
    p.send_signal(sig)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and "Traceback" not in err, (p.returncode, err)
    lines = err.strip().splitlines()
    assert re.fullmatch(r"tsm-conformance: interrupted; 0 report items left in emulated sev_guest@7.0 .*",
                        lines[-1]), err
    assert sum("interrupted" in ln for ln in lines) == 1, err
    _, totals = agreeing_counts(tmp_path / "k.ktap", tmp_path / "j.xml")
    assert totals["pass"] == 8, totals  # every check had run: the signal came after them


def test_a_signal_while_the_command_starts_is_one_line_and_130(tmp_path: Path) -> None:
    """From the package's first lines on (tsm_conformance/__init__.py, before cli.py's imports:
    argparse, typing, ...), SIGINT/SIGTERM end the command with exit 130 and one line, not a
    KeyboardInterrupt traceback or death by SIGTERM; both entry points, signals at random moments
    of the first 150 ms after the handler is in place."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "conformance"))
    entry_points = [[sys.executable, "-m", "tsm_conformance.cli"]]
    script = Path(sys.executable).parent / "tsm-conformance"
    if script.exists():  # the console script of this environment's install
        entry_points.append([str(script)])
    rng = random.Random(15)
    for cmd in entry_points:
        for n in range(8):
            p = subprocess.Popen([*cmd, "run", "--emulate", "sev_guest", "-q"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
            _wait_for(p, lambda p=p: _handles_signals(p.pid), "the start-up handler", timeout=30)
            time.sleep(rng.uniform(0, 0.15))
            p.send_signal([signal.SIGINT, signal.SIGTERM][n % 2])
            err = p.communicate(timeout=120)[1]
            assert p.returncode == 130, (cmd, n, p.returncode, err)
            assert "Traceback" not in err and "KeyboardInterrupt" not in err, (cmd, n, err)
            assert err.strip().splitlines()[-1].startswith("tsm-conformance: interrupted"), (cmd, n, err)
    assert os.listdir(tmp_path) == []


def test_the_start_up_handler_is_the_commands_alone() -> None:
    """The package's first lines, in the command's process, end it on a signal with one line and
    130 (a signal right after them, before cli.py is imported: it was a KeyboardInterrupt
    traceback); a library user, the pytest plugin or a script that runs the CLI's main() keeps
    Python's handlers."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "conformance"))
    as_command = ("import os, signal, sys, time; sys.argv[0] = '/usr/bin/tsm-conformance'; import tsm_conformance; "
                  "os.kill(os.getpid(), signal.{}); time.sleep(30); print('not interrupted')")
    for sig in ("SIGINT", "SIGTERM"):
        p = subprocess.run([sys.executable, "-c", as_command.format(sig)], capture_output=True, text=True, env=env,
                           timeout=60)
        assert (p.returncode, p.stdout, p.stderr) == (130, "", "tsm-conformance: interrupted\n"), (sig, p.stderr)
    code = ("import signal, sys, tsm_conformance, tsm_conformance.cli; "
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
            "signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, tsm_conformance._BEFORE_THE_COMMAND)")
    for argv in (["-c", code], ["-c", code, "-m", "tsm_conformance.cli"]):
        # SIGINT at its default first: a test run started in the background of a non-interactive
        # shell inherits it ignored, and Python then installs no default_int_handler at all
        p = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=60,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        assert (p.returncode, p.stdout) == (0, "True True {}\n"), (argv, p.stdout, p.stderr)


def test_closed_stdout_does_not_end_the_run(tmp_path: Path) -> None:
    """`run | head -1`: the run goes on to its cleanup and exit status, without a BrokenPipeError."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "conformance"))
    for fmt in ([], ["--format", "ktap"]):
        p = subprocess.run(f"{sys.executable} -m tsm_conformance.cli run --emulate sev_guest+stale-outblob "
                           f"{' '.join(fmt)} 2>err.txt | head -1; echo \"rc=${{PIPESTATUS[0]}}\"",
                           shell=True, executable="/bin/bash", capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
        err = (tmp_path / "err.txt").read_text()
        assert p.stdout.strip().endswith("rc=1"), (p.stdout, err[-2000:])
        assert "BrokenPipe" not in err and "Traceback" not in err, err[-2000:]


def _ours(report: Path) -> list[str]:
    return [n for n in os.listdir(report) if n.startswith("tsmct-")]


@needs_fuse
def test_killed_runs_leave_nothing_and_clean_removes_sigkill_leftovers(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rng = random.Random(6)
    with emulate("sev_guest", mnt):
        report = mnt / "tsm" / "report"
        for n, sig in enumerate([signal.SIGINT, signal.SIGTERM] * 4):
            ktap = tmp_path / f"k{n}"
            p = _run(tmp_path, "--root", str(report), "-q", "--ktap", str(ktap))
            if n % 2:  # while the checks (and their workers) run
                results = rng.randint(1, 40)
                _wait_for(p, lambda ktap=ktap, results=results: _ktap_results(ktap) >= results,
                          f"{results} KTAP results")
                time.sleep(rng.uniform(0, 0.02))
            else:  # in start-up or probing, once the CLI handles signals
                _wait_for(p, lambda p=p: _handles_signals(p.pid), "signal handlers")
                time.sleep(rng.uniform(0, 0.5))
            p.send_signal(sig)
            err = p.communicate(timeout=120)[1]
            assert "Traceback" not in err, err
            assert p.returncode == 130, (p.returncode, err)
            assert _ours(report) == [], (sig, _ours(report))
        leftovers = 0
        for n in range(6):
            ktap = tmp_path / f"killed{n}"
            p = _run(tmp_path, "--root", str(report), "-q", "--ktap", str(ktap), stderr=subprocess.DEVNULL)
            results = rng.randint(1, 40)
            _wait_for(p, lambda ktap=ktap, results=results: _ktap_results(ktap) >= results, f"{results} KTAP results")
            p.kill()
            p.wait(30)
            leftovers += len(_ours(report))
        os.mkdir(report / "tsmct-999999-7")  # a dead run's item, made certain
        os.mkdir(report / "keepme")  # not ours: clean must leave it
        alive = f"tsmct-{os.getpid()}-0"  # a running process's item: kept unless --force
        os.mkdir(report / alive)
        p = cli("clean", "--root", str(report))
        assert p.returncode == 0, p.stdout + p.stderr
        assert "removed tsmct-999999-7" in p.stdout
        assert f"kept {alive}: process {os.getpid()} is still running (--force" in p.stdout
        assert sorted(os.listdir(report)) == sorted(["keepme", alive])
        p = cli("clean", "--root", str(report), "--force")
        assert p.returncode == 0 and f"removed {alive}" in p.stdout, p.stdout + p.stderr
        assert sorted(os.listdir(report)) == ["keepme"]
        os.rmdir(report / "keepme")
    assert "not configfs" in one_line_error(cli("clean", "--root", str(tmp_path)))


@needs_fuse
def test_a_fuse_daemon_killed_mid_run_ends_the_workers_quietly(tmp_path: Path) -> None:
    """The emulate daemon SIGKILLed while a concurrency check's worker threads read (their close()
    got ENOTCONN, which escaped the threads as PytestUnhandledThreadExceptionWarning tracebacks on
    stdout): the workers end quietly, and the harness error says why in one line."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    report = mnt / "tsm" / "report"
    env = dict(os.environ, PYTHONPATH=str(REPO / "conformance"))
    for check in ("concurrency.item.generation_protocol", "concurrency.rmdir.during_reads"):
        with emulate("sev_guest", mnt) as daemon:
            p = subprocess.Popen([sys.executable, "-m", "tsm_conformance.cli", "run", "--root", str(report), "-q",
                                  "--", "--tsm-check", check, "--tsm-check", "concurrency.items.*"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
            # the check's own item (not the probe's): its workers read from now on
            _wait_for(p, lambda: any(re.fullmatch(r"tsmct-\d+-\d+", n) for n in os.listdir(report)), "a check's item")
            time.sleep(0.05)
            daemon.kill()
            daemon.wait(30)
            out, err = p.communicate(timeout=120)
        assert p.returncode == 1, (p.returncode, out[-3000:], err)
        assert "the tree went away (ENOTCONN" in out, out[-3000:]
        for noise in ("Traceback", "Exception in thread", "PytestUnhandledThreadExceptionWarning", "HarnessError",
                      "Exception ignored"):
            assert noise not in out and noise not in err, (noise, out[-3000:], err)


@needs_fuse
def test_hung_report_over_fuse_ends_within_budget(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with emulate("tdx_guest+report-hangs", mnt):
        t0 = time.monotonic()
        p = cli("run", "--root", str(mnt / "tsm" / "report"), "--op-timeout", "1", cwd=tmp_path)
        took = time.monotonic() - t0
        assert p.returncode == 1 and took < 30, (took, p.stdout[-1500:])
        assert re.search(r"hung: read\(fd\d+ = r0/outblob", p.stdout), p.stdout[-1500:]
        assert _ours(mnt / "tsm" / "report") == []


def _concurrency_hang(root: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    p = cli("run", *root, "--op-timeout", "1", "-q", "--", "--tsm-check", "concurrency.*", cwd=tmp_path)
    return p, time.monotonic() - t0


def _says_join_and_leaves_the_item(p: subprocess.CompletedProcess[str]) -> None:
    """The hang is the workers' join; the item a worker is blocked in is not rmdir'ed (on a real
    kernel that rmdir waits uninterruptibly) but reported as left."""
    assert "hung: join(1 writer and 3 readers for 1 s): no result after" in p.stdout, p.stdout[-1500:]
    assert "rmdir(r0)" not in p.stdout and "hung in the cleanup" not in p.stdout
    assert "1 report item(s) could not be removed" in p.stderr and "Traceback" not in p.stderr


def test_hang_in_a_concurrency_check_still_ends_the_run(tmp_path: Path) -> None:
    """A worker hung holding the lock an rmdir of its item needs: the check fails as hung at the
    join, nothing waits on that lock again, and the run ends naming the item left (it used to wait
    forever)."""
    p, took = _concurrency_hang(["--emulate", "sev_guest+report-hangs"], tmp_path)
    assert p.returncode == 1 and took < 30, (took, p.stderr[-800:])
    assert "could not be removed from emulated sev_guest@7.0+report-hangs: tsmct-" in p.stderr
    _says_join_and_leaves_the_item(p)


@needs_fuse
def test_hang_in_a_concurrency_check_over_fuse_still_ends_the_run(tmp_path: Path) -> None:
    """The same over FUSE.  It used to wait forever: the rmdir waited behind the hung read in the
    daemon, first in libfuse's own path lock, where no INTERRUPT reaches (the emulator's lock waits
    now answer INTERRUPT too: test_lock_waits_fail_eintr_once_the_caller_is_interrupted)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with emulate("sev_guest+report-hangs", mnt):
        report = mnt / "tsm" / "report"
        p, took = _concurrency_hang(["--root", str(report)], tmp_path)
        assert p.returncode == 1 and took < 30, (took, p.stderr[-800:])
        assert f"could not be removed from fuse {report}: tsmct-" in p.stderr
        _says_join_and_leaves_the_item(p)
