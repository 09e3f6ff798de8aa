"""Kernel-log findings of the fuzzers (issue 16): the worker reads the kernel log and the taint word
after every input; a KASAN/KCSAN/lockdep/UBSAN/BUG/WARN/oops/hung-task report or a new taint bit is a
finding (``kernel.*``) with the input's replayable sequence and a bounded ``.kernel.log`` excerpt.

The kernel log here is a stand-in (a regular file or a FIFO) the test appends a report to while the
emulator is fuzzed; the reports are written here from the formats the kernel documents
(Documentation/dev-tools/kasan.rst, lockdep's headers), not copied from anyone's log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from tsm_fuzz import runner, targets, worker
from tsm_fuzz.api import Finding, TargetContext, sequence_hook

KASAN = ["==================================================================",
         "BUG: KASAN: slab-out-of-bounds in tsm_report_read+0x5c/0x1b0",
         "Read of size 8 at addr ffff888004a1c0c0 by task python3/4242",
         "CPU: 1 PID: 4242 Comm: python3 Not tainted 6.16.0 #1",
         "Call Trace:",
         " <TASK>",
         " dump_stack_lvl+0x4b/0x70",
         " kasan_report+0xb5/0xf0",
         " tsm_report_read+0x5c/0x1b0",
         " </TASK>"]
LOCKDEP = ["======================================================",
           "WARNING: possible circular locking dependency detected",
           "6.16.0 #1 Not tainted",
           "------------------------------------------------------"]


def _ctx(spec: str = "tsm_test") -> TargetContext:
    return TargetContext(emulate=spec, prefix=f"tsmkl-{os.getpid()}-")


def _watched(tmp_path: Path, name: str, spec: str = "tsm_test") -> tuple:  # (guarded one, watch, log, taint)
    log, taint = tmp_path / "klog", tmp_path / "tainted"
    log.write_text("[    1.0] before the run: BUG: KASAN: not this run's\n")
    taint.write_text("4096\n")  # O: tsm_test, an out-of-tree module, was loaded before
    ctx = _ctx(spec)
    one = targets.load(name).make(ctx)
    w = worker.KernelWatch(name, ctx, str(log), str(taint))
    w.start()
    return worker.guarded(one, w), w, log, taint


def _append(path: Path, lines: list[str]) -> None:
    with path.open("a") as f:
        f.write("".join(f"[  812.0042] {x}\n" for x in lines))


@pytest.mark.parametrize("name", ["inblob", "privlevel"])
def test_kasan_report_after_an_input_is_its_finding(tmp_path: Path, name: str) -> None:
    one, w, log, _ = _watched(tmp_path, name)
    one(b"\x80\x00\x03abc\x05")  # clean: the log's old lines are not this run's
    _append(log, ["tsm_test: some ordinary line", *KASAN])
    with pytest.raises(Finding) as e:
        one(b"\x80\x00\x03abc\x05")
    f = e.value
    assert f.rule == "kernel.kasan" and "BUG: KASAN: slab-out-of-bounds in tsm_report_read" in f.observed
    assert f.kernel_log is not None and "Call Trace:" in f.kernel_log and "ordinary line" in f.kernel_log
    assert "before the run" not in f.kernel_log and "attributed to the input" in f.kernel_log
    seq = f.sequence
    assert seq is not None and seq.header["rule"] == "kernel.kasan" and seq.header["emulate"] == "tsm_test"
    assert "attributed to the input" in seq.header["note"] and seq.steps[0].op.name == "mkdir"
    assert "BUG: KASAN: slab-out-of-bounds in tsm_report_read" in seq.header["kernel-report"]  # replay --vm's key
    # the sequence replays on the tree it came from, every step as it was
    from tsm_conformance.runstate import make_tree
    from tsm_conformance.seq import format_tsmseq, parse_tsmseq, replay
    again = parse_tsmseq(format_tsmseq(seq))
    assert replay(make_tree(None, "tsm_test"), again, f"tsmkr-{os.getpid()}-") == []
    one(b"\x80\x00\x03abc\x05")  # reported once: the next input is clean again


def test_no_report_no_finding_and_taint_change_is_one(tmp_path: Path) -> None:
    one, w, log, taint = _watched(tmp_path, "privlevel")
    for data in (b"\x003", b"\x01hello", b"\x02junk", b""):
        one(data)
    _append(log, ["tsm_test: outblob_size set to 21000", "systemd[1]: Started Journal Service."])
    one(b"\x003")  # ordinary lines are context, not findings
    taint.write_text(str(4096 | 8192) + "\n")  # E: another unsigned module loaded: not the kernel going wrong
    one(b"\x003")
    taint.write_text(str(4096 | 8192 | 512) + "\n")  # W: a WARN, with no report line we know
    with pytest.raises(Finding) as e:
        one(b"\x003")
    f = e.value
    assert f.rule == "kernel.taint" and "12800 (" in f.observed and "W: a warning" in f.observed
    assert f.sequence is not None and "outblob_size set" in (f.kernel_log or "")
    one(b"\x003")  # the word stays tainted: reported once


def test_oracle_finding_and_kernel_report_together(tmp_path: Path) -> None:
    """A kernel report wins; the oracle's finding of the same input is noted, its sequence kept."""
    one, w, log, _ = _watched(tmp_path, "privlevel", "tsm_test+kstrtouint-lenient")
    _append(log, LOCKDEP)
    with pytest.raises(Finding) as e:
        one(b"\x003x")
    f = e.value
    assert f.rule == "kernel.lockdep" and "circular locking" in f.observed
    assert f.sequence is not None and f.sequence.header["also"].startswith("write(privlevel)")
    assert "EINVAL" in f.sequence.header["expected"] and "the oracle also found" in f.note


def test_excerpt_is_bounded_and_holds_the_report(tmp_path: Path) -> None:
    one, w, log, _ = _watched(tmp_path, "inblob")
    _append(log, [f"noise {i} " + "x" * 100 for i in range(500)] + KASAN
            + [f"after {i} " + "y" * 500 for i in range(500)])
    with pytest.raises(Finding) as e:
        one(b"\x02")
    text = e.value.kernel_log or ""
    body = [x for x in text.splitlines() if not x.startswith("# ")]
    assert len(body) <= worker.EXCERPT_LINES and len(text.encode()) <= worker.EXCERPT_BYTES
    assert "BUG: KASAN: slab-out-of-bounds" in text and "noise 499" in text and "noise 400" not in text
    at = next(int(x.rsplit("line ", 1)[1].split()[0]) for x in text.splitlines() if "first report line is line" in x)
    assert "BUG: KASAN" in text.splitlines()[at - 1]


def test_kmsg_overrun_is_noted(tmp_path: Path) -> None:
    """EPIPE from /dev/kmsg (records overwritten before we read them) is not an error: the watch goes
    on with the oldest record left and the excerpt says how many were lost."""
    from tsm_conformance.kernlog import LogTail
    ctx = _ctx()
    one = targets.load("inblob").make(ctx)
    w = worker.KernelWatch("inblob", ctx, None, None)
    items: list[object] = [b"6,10,1,-;tsm_test: ready\n", BlockingIOError(), BrokenPipeError(),
                           b"4,40,2,-;BUG: KCSAN: data-race in tsm_report_read / tsm_report_privlevel_store\n"]

    def fake_read(fd: int, n: int) -> bytes:
        x = items.pop(0) if items else BlockingIOError()
        if isinstance(x, BaseException):
            raise x
        assert isinstance(x, bytes)
        return x
    w.tail = LogTail(str(tmp_path / "kmsg"), _read=fake_read)
    (tmp_path / "kmsg").write_text("")
    assert w.tail.open()
    g = worker.guarded(one, w)
    g(b"\x02")  # tsm_test: ready
    with pytest.raises(Finding) as e:
        g(b"\x02")
    assert e.value.rule == "kernel.kcsan"
    assert "# 29 kernel log record(s) were overwritten" in (e.value.kernel_log or "")


def test_sequence_hook_of_a_bound_method() -> None:
    """The generic hook the sequences target can use: ``last_sequence`` on its Runner object."""
    class T:
        def one(self, data: bytes) -> None:
            pass

        def last_sequence(self) -> str:
            return "seq"
    assert (h := sequence_hook(T().one)) is not None and h() == "seq"
    assert sequence_hook(lambda data: None) is None


def test_minimise_keeps_a_kernel_finding_that_does_not_recur(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A kernel report need not come again (KASAN reports once, WARN_ONCE): the minimiser tries the
    input once and gives up (exit 1: the runner keeps the finding as found), it does not loop."""
    crash = tmp_path / "crash"
    crash.write_bytes(b"\x80\x00\x03abc\x05")
    log = tmp_path / "klog"
    log.write_text("")
    t0 = time.monotonic()
    rc = worker.main(["inblob", "--emulate", "tsm_test", "--artifacts", str(tmp_path), "--minimize", str(crash),
                      "--rule", "kernel.kasan", "--max-time", "30", "--kernel-log", str(log)])
    assert rc == 1 and time.monotonic() - t0 < 20
    assert "does not reproduce kernel.kasan" in capsys.readouterr().err


def test_known_counts_reach_the_worker_output_and_junit(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """KNOWN (known-bug matches, not findings) goes out as '#tsmfz known={json}' when it changed; the
    runner puts it in the target's result line and its JUnit testcase (properties, system-out)."""
    import types
    mod = types.ModuleType("fake_target")
    mod.KNOWN = Counter()  # type: ignore[attr-defined]
    report = worker._known_reporter(mod)
    report()
    mod.KNOWN["provider.read.size_then_fill_integrity"] += 12  # type: ignore[attr-defined]
    report()
    report()
    err = capfd.readouterr().err
    assert err == '#tsmfz known={"provider.read.size_then_fill_integrity": 12}\n'
    m = runner._KNOWN.match(err)
    assert m is not None
    job = runner.Job("sequences", "schedules", Path(), Path(), outcome="pass", execs=5)
    job.known = {"provider.read.size_then_fill_integrity": 12}
    assert runner.known_text(job.known) == "known: provider.read.size_then_fill_integrity x12"
    runner.junit([job], str(tmp_path / "j.xml"), "tsm_test", None)
    case = ET.parse(tmp_path / "j.xml").getroot().find(".//testcase[@name='sequences']")
    assert case is not None and case.find("failure") is None
    prop = case.find("properties/property")
    assert prop is not None and prop.get("name") == "tsm.fuzz.known.provider.read.size_then_fill_integrity"
    assert prop.get("value") == "12"
    assert "known: provider.read.size_then_fill_integrity x12" in (case.findtext("system-out") or "")


def test_kernel_watch_defaults() -> None:
    assert runner.kernel_watch("emulated", None, None) == (None, None, "")
    assert runner.kernel_watch("fuse", None, None)[:2] == (None, None)
    log, taint, note = runner.kernel_watch("live", None, None)
    assert (log == "/dev/kmsg") != bool(note)  # /dev/kmsg when readable, else a note saying why not
    assert runner.kernel_watch("live", "none", "none") == (None, None, "")
    with pytest.raises(runner.UsageError, match="--kernel-log /nonexistent/kmsg: No such file"):
        runner.kernel_watch("emulated", "/nonexistent/kmsg", None)


# ----------------------------------------------------------------------------- the whole command
def _tsm(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tsm_conformance.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _when_fuzzing(log: Path, write: object) -> threading.Thread:
    """Call ``write()`` once the worker is fuzzing (libFuzzer's INITED in its log): the kernel
    log is open by then, positioned at its end."""
    def run() -> None:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            if log.exists() and "INITED" in log.read_text(errors="replace"):
                time.sleep(0.5)
                write()  # type: ignore[operator]
                return
            time.sleep(0.1)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_fuzz_run_finds_a_kasan_report_and_replay_runs(tmp_path: Path) -> None:
    klog, taint = tmp_path / "klog", tmp_path / "tainted"
    klog.write_text("")
    taint.write_text("0\n")
    t = _when_fuzzing(tmp_path / "fuzz-artifacts" / "inblob.log", lambda: _append(klog, KASAN))
    res = _tsm("fuzz", "inblob", "--emulate", "tsm_test", "--max-time", "60", "--junit", "f.xml",
               "--minimize-time", "3", "--kernel-log", str(klog), "--kernel-taint", str(taint), cwd=tmp_path)
    t.join(5)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    assert "kernel.kasan: kernel log: " in res.stdout and "kept as found" in res.stdout
    case = ET.parse(tmp_path / "f.xml").getroot().find(".//testcase[@name='inblob']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None and failure.get("message", "").startswith("kernel.kasan: ")
    assert "BUG: KASAN: slab-out-of-bounds" in (failure.text or "")
    art = tmp_path / "fuzz-artifacts"
    seqs, logs = sorted(art.glob("inblob-*.tsmseq")), sorted(art.glob("inblob-*.kernel.log"))
    assert len(seqs) == 1 and len(logs) == 1 and seqs[0].name[:-7] == logs[0].name[:-11]
    assert "Call Trace:" in logs[0].read_text()
    rep = _tsm("replay", str(seqs[0]), cwd=tmp_path)  # the header's emulate: line names the tree
    assert rep.returncode == 0 and "0 differ" in rep.stdout, rep.stdout + rep.stderr


@pytest.mark.slow
def test_fuzz_run_with_a_fifo_log_and_no_report_passes_then_finds(tmp_path: Path) -> None:
    """A FIFO stands in for /dev/kmsg: nothing but ordinary lines, the run passes; a lockdep
    report in it, the run fails with kernel.lockdep."""
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer: list[int] = []

    def write(lines: list[str]) -> None:
        try:
            if not writer:
                writer.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO unless the worker reads it
            os.write(writer[0], "".join(f"4,{i + 1},0,-;{x}\n" for i, x in enumerate(lines)).encode())
        except OSError:
            pass  # the short run ended first: the second run's report is what the test depends on
    try:
        t = _when_fuzzing(tmp_path / "a" / "privlevel.log", lambda: write(["tsm_test: ready"]))
        res = _tsm("fuzz", "privlevel", "--emulate", "tsm_test", "--max-time", "4", "--artifacts", "a",
                   "--kernel-log", str(fifo), "--kernel-taint", "none", cwd=tmp_path)
        t.join(5)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        assert "watching kernel log" in res.stdout and "1 passed" in res.stdout
        for fd in writer:
            os.close(fd)
        writer.clear()
        t = _when_fuzzing(tmp_path / "b" / "privlevel.log", lambda: write(LOCKDEP))
        res = _tsm("fuzz", "privlevel", "--emulate", "tsm_test", "--max-time", "60", "--artifacts", "b",
                   "--minimize-time", "0", "--kernel-log", str(fifo), cwd=tmp_path)
        t.join(5)
        assert res.returncode == 1 and "kernel.lockdep" in res.stdout, res.stdout[-3000:] + res.stderr[-2000:]
        assert len(list((tmp_path / "b").glob("privlevel-*.kernel.log"))) == 1
        seq = next((tmp_path / "b").glob("privlevel-*.tsmseq"))
        rep = _tsm("replay", str(seq), "--emulate", "tsm_test", cwd=tmp_path)
        assert rep.returncode == 0, rep.stdout + rep.stderr
    finally:
        for fd in writer:
            os.close(fd)
