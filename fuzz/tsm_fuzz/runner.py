"""Runs fuzz targets, one process each (``python -m tsm_fuzz.worker``), and reports JUnit.

Per target: a working corpus (``--corpus DIR/<target>/``, or a temporary copy of the seeds in
``corpora/<target>/`` so the repository's seeds are not polluted), the dictionary
``corpora/<target>.dict`` when present, ``-max_total_time``/``-runs``, and
``-artifact_prefix=<artifacts>/<target>-``.  A target that stops with a crash input is a failure:
the input is shrunk (``worker --minimize``, bounded time) and the JUnit failure carries the
minimised ``.tsmseq``, the crash file and the replay command.  While running, one progress line per
target every few seconds: execs, exec/s, libFuzzer's cov/ft, findings.

On a configfs root (or with ``--kernel-log PATH``) each worker watches the kernel log and the taint
word after every input (``worker.KernelWatch``): a kernel report is a finding (``kernel.kasan``,
``kernel.lockdep``, ``kernel.warn``, ``kernel.taint`` ...) with its ``.kernel.log`` excerpt; one
that does not come again when the input is re-run is kept as found.  Known-bug matches a target
counts (``KNOWN``: not findings) are printed with its result and put in its JUnit testcase.

Ctrl-C or SIGTERM (the command turns it into KeyboardInterrupt) stops the workers still running
(SIGINT, libFuzzer's own way out, then SIGKILL), concludes what they found without minimising, and
reports the rest as not run; the run then exits 130 with its JUnit and summary (``Runner.stop``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TextIO

from tsm_conformance.kernlog import LogTail, bad_dmesg
from tsm_conformance.names import FUZZ, with_pid

from . import targets
from .api import TargetContext

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
STOP_GRACE = 5.0  # seconds stopped workers get to exit on SIGINT before SIGKILL
LIBFUZZER_INTERRUPTED = 72  # libFuzzer's exit status after SIGINT/SIGTERM (-interrupted_exitcode)
_LF = re.compile(r"^#(\d+)\s+\w+\s+(?:cov: (\d+) ft: (\d+) )?.*?exec/s: (\d+)")
_OURS = re.compile(r"^#tsmfz execs=(\d+)")
_KNOWN = re.compile(r"^#tsmfz known=(\{.*\})\s*$")
KMSG, TAINTED = "/dev/kmsg", "/proc/sys/kernel/tainted"


def corpora_dir() -> Path:
    """The repository's ``corpora/`` (seed corpora and dictionaries)."""
    return Path(__file__).resolve().parents[2] / "corpora"


class UsageError(Exception):
    """Bad input: unknown target, bad spec or root (exit 2, one line)."""


@dataclass
class Job:
    target: str
    description: str
    corpus: Path
    log: Path
    proc: subprocess.Popen | None = None
    started: float = 0.0
    wall_start: float = 0.0
    ended: float = 0.0
    execs: int = 0
    cov: int = 0
    ft: int = 0
    tail: deque = field(default_factory=lambda: deque(maxlen=60))
    skipped: str | None = None
    rc: int | None = None
    outcome: str = "pending"  # pass | failure | error | skipped | interrupted (stopped, or never started)
    message: str = ""
    detail: str = ""
    crash: Path | None = None
    tsmseq: Path | None = None
    kernel_log: Path | None = None  # a kernel finding's excerpt
    known: dict[str, int] = field(default_factory=dict)  # known-bug matches (rule -> count), not findings
    known_first: float | None = None  # seconds from the worker's start to its first known-bug match
    reader: threading.Thread | None = field(default=None, repr=False, compare=False)  # reads the worker's output


def check_corpus(d: Path) -> None:
    """UsageError (one line) unless every input in the corpus directory ``d`` is a regular file
    within ``inputs.CORPUS_INPUT_MAX`` bytes, and the directory holds at most ``CORPUS_FILES``
    of them, ``CORPUS_TOTAL`` bytes in all (libFuzzer loads them all): a FIFO would hang the copy,
    a device or a huge file the fuzzer.  Subdirectories are not inputs (libFuzzer skips them)."""
    from tsm_conformance.inputs import (CORPUS_FILES, CORPUS_INPUT_MAX, CORPUS_TOTAL, InputError, check_file,
                                        size_text)
    total = count = 0
    try:
        entries = sorted(d.iterdir())
    except OSError as e:
        raise UsageError(f"{d}: {e.strerror}") from None
    for f in entries:
        if f.is_dir():
            continue
        try:
            total += check_file(f, CORPUS_INPUT_MAX, "fuzz corpus input").st_size
        except InputError as e:
            raise UsageError(str(e)) from None
        count += 1
        if count > CORPUS_FILES:
            raise UsageError(f"{d}: more than {CORPUS_FILES} inputs, the bound for a fuzz corpus")
        if total > CORPUS_TOTAL:
            raise UsageError(f"{d}: more than {size_text(CORPUS_TOTAL)} of inputs, the bound for a fuzz corpus")


def resolve_targets(names: list[str]) -> list[str]:
    known = targets.names()
    if not names or names == ["all"]:
        return known
    out = []
    for n in names:
        if n not in known:
            from tsm_conformance.suggest import did_you_mean
            raise UsageError(f"unknown fuzz target '{n}'{did_you_mean(n, known)} "
                             f"(tsm-conformance fuzz list shows them)")
        out.append(n)
    return out


#: What the [fuzz] extra (pyproject.toml) brings, as (module, distribution): every worker needs
#: atheris (libFuzzer's driver, also with --no-instrument), JUnit needs junit_xml.  hypothesis, in
#: the extra too, is a dependency of the project itself.
EXTRA = (("atheris", "atheris"), ("junit_xml", "junit-xml"))


def missing_extra() -> str | None:
    """The line to print when this interpreter, the one the workers run (sys.executable), cannot
    import the extra.  Checked before any worker starts: otherwise each worker fails on it and a
    missing junit_xml only shows after the whole run."""
    missing = []
    for module, dist in EXTRA:
        try:
            importlib.import_module(module)
        except ImportError as e:
            missing.append(dist if e.name == module else f"{dist} ({e})")
    if not missing:
        return None
    return (f"fuzzing needs the [fuzz] extra; {', '.join(missing)} cannot be imported "
            f"(pip install 'configfs-tsm-conformance[fuzz]')")


def check_tree(emulate: str | None, root: str | None, any_filesystem: bool = False) -> str:
    """A bad spec or root is a usage error here, before any process starts; the tree's kind
    (``emulated``, ``live`` for configfs, ``fuse``, ``foreign``)."""
    from tsm_conformance.runstate import SetupError, make_tree
    try:
        tree = make_tree(root, emulate, any_filesystem=any_filesystem)
    except SetupError as e:
        raise UsageError(str(e)) from None
    return "emulated" if emulate else str(getattr(tree, "kind", "live"))


def _readable(path: str) -> str:
    """'' when ``path`` opens for reading without blocking, else why not."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError as e:
        return os.strerror(e.errno or 0)
    return ""


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def kernel_watch(kind: str, kernel_log: str | None, kernel_taint: str | None) -> tuple[str | None, str | None, str]:
    """(log, taint word, a note when a default could not be had) the workers watch.  Defaults on a
    configfs root: /dev/kmsg when it can be read, and /proc/sys/kernel/tainted; elsewhere nothing
    unless asked.  ``none`` turns either off; a path given that cannot be read is a UsageError."""
    note = []
    log: str | None
    if kernel_log is None:
        log = KMSG if kind == "live" else None
        why = _readable(KMSG) if log else ""
        if why:
            note.append(f"{KMSG}: {why}: kernel reports are not watched (run as root, or give --kernel-log PATH)")
            log = None
    else:
        log = None if kernel_log == "none" else kernel_log
        why = _readable(log) if log else ""
        if why:
            raise UsageError(f"--kernel-log {log}: {why}")
    taint: str | None
    if kernel_taint is None:
        taint = TAINTED if kind == "live" and not _readable(TAINTED) else None
    else:
        taint = None if kernel_taint == "none" else kernel_taint
        why = _readable(taint) if taint else ""
        if why:
            raise UsageError(f"--kernel-taint {taint}: {why}")
    return log, taint, "; ".join(note)


def replay_command(path: Path, emulate: str | None, root: str | None, any_filesystem: bool = False) -> str:
    where = f"--emulate {emulate}" if emulate else f"--root {root}" + (" --any-filesystem" if any_filesystem else "")
    return f"tsm-conformance replay {path} {where}"


class Runner:
    def __init__(self, names: list[str], *, emulate: str | None, root: str | None, max_time: float | None,
                 runs: int | None, corpus: str | None, artifacts: str, jobs: int, instrument: bool = True,
                 minimize_time: float = 10.0, out: TextIO = sys.stdout, interval: float = 3.0,
                 any_filesystem: bool = False, kernel_log: str | None = None, kernel_taint: str | None = None,
                 kernel_note: str = "", profile: str | None = None) -> None:
        self.names, self.emulate, self.root, self.profile = names, emulate, root, profile
        self.kernel_log, self.kernel_taint, self.kernel_note = kernel_log, kernel_taint, kernel_note
        self._klog: LogTail | None = None  # the runner's own tail of the kernel log (a worker the kernel killed)
        self.any_filesystem = any_filesystem
        self.max_time, self.runs = max_time, runs
        self.corpus_root = Path(corpus) if corpus else None
        self.artifacts = Path(artifacts)
        self.jobs = max(1, jobs)
        self.instrument = instrument
        self.minimize_time = minimize_time
        self.out = out
        self.interval = interval
        self.tmp: Path | None = None
        self.done: list[Job] = []  # every target's Job as it is made (also what an interrupted run got to)
        self.interrupted = False  # Ctrl-C / SIGTERM stopped the run
        self.tree_kind = "emulated" if emulate else "live"  # check_tree's answer (run() sets it)

    # ------------------------------------------------------------------ set-up
    def _corpus(self, name: str) -> Path:
        """The target's working corpus; its inputs (the seeds, an existing --corpus directory) are
        checked against their bounds first (``check_corpus``), before anything is copied or run."""
        seeds = corpora_dir() / name
        if seeds.is_dir():
            check_corpus(seeds)
        if self.corpus_root is not None:
            work = self.corpus_root / name
            if not work.exists():
                work.mkdir(parents=True)
                if seeds.is_dir():
                    for f in seeds.iterdir():
                        if f.is_file():
                            shutil.copy2(f, work / f.name)
            elif work.is_dir():
                check_corpus(work)
            else:
                raise UsageError(f"{work}: not a directory (--corpus DIR keeps each target's corpus in DIR/<target>/)")
            return work
        assert self.tmp is not None
        work = self.tmp / name
        if seeds.is_dir():
            shutil.copytree(seeds, work)
        else:
            work.mkdir()
        return work

    def _root_args(self) -> list[str]:
        prof = ["--profile", self.profile] if self.profile else []
        if not self.root:
            return prof
        return ["--root", self.root] + (["--any-filesystem"] if self.any_filesystem else []) + prof

    def _kernel_args(self) -> list[str]:
        return (["--kernel-log", self.kernel_log] if self.kernel_log else []) + \
            (["--kernel-taint", self.kernel_taint] if self.kernel_taint else [])

    def _command(self, job: Job, mod: object) -> list[str]:
        cmd = [sys.executable, "-m", "tsm_fuzz.worker", job.target, "--artifacts", str(self.artifacts)]
        if self.emulate:
            cmd += ["--emulate", self.emulate]
        cmd += self._root_args() + self._kernel_args()
        if not self.instrument:
            cmd.append("--no-instrument")
        lf = [f"-artifact_prefix={self.artifacts}/{job.target}-", "-timeout=20", "-rss_limit_mb=2048",
              "-print_final_stats=1"]
        if self.max_time:
            lf.append(f"-max_total_time={int(max(1, self.max_time))}")
        if self.runs is not None:
            lf.append(f"-runs={self.runs}")
        max_len = getattr(mod, "MAX_LEN", None)
        if max_len:
            lf.append(f"-max_len={max_len}")
        d = corpora_dir() / f"{job.target}.dict"
        if d.is_file():
            lf.append(f"-dict={d}")
        return cmd + ["--"] + lf + [str(job.corpus)]

    # ------------------------------------------------------------------ running
    def _reader(self, job: Job) -> None:
        assert job.proc is not None and job.proc.stdout is not None
        # Ctrl-C and SIGTERM are for the main thread: delivered to this one, they would be raised
        # in the main thread at once, even inside bundle.Tee.write, whose mask holds them only
        # for the thread that writes (a line on the terminal the summary lacks)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        # line-buffered: the log shows the worker's progress while it runs
        with open(job.log, "w", buffering=1) as log:
            for line in job.proc.stdout:
                log.write(line)
                job.tail.append(line.rstrip("\n"))
                m = _OURS.match(line)
                if m:
                    job.execs = max(job.execs, int(m[1]))
                    continue
                m = _KNOWN.match(line)
                if m:
                    try:
                        job.known = {str(k): int(v) for k, v in json.loads(m[1]).items()}
                    except (ValueError, AttributeError):
                        pass
                    if job.known and job.known_first is None:  # how long a known bug took to show
                        job.known_first = time.monotonic() - job.started
                    continue
                m = _LF.match(line)
                if m:
                    job.execs = max(job.execs, int(m[1]))
                    if m[2]:
                        job.cov, job.ft = int(m[2]), int(m[3])

    def _findings(self, name: str) -> list[Path]:
        return sorted(p for p in self.artifacts.glob(f"{name}-*.json") if not p.name.endswith("-min.json"))

    def _progress(self, running: list[Job]) -> None:
        now = time.monotonic()
        for j in running:
            el = max(now - j.started, 1e-6)
            self.out.write(f"  {j.target:16} {j.execs:>9} execs {j.execs / el:>8.0f} exec/s  cov {j.cov:>5} "
                           f"ft {j.ft:>6}  findings {len(self._findings(j.target))}  {el:5.0f}s\n")
        self.out.flush()

    def run(self) -> list[Job]:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="tsm-fuzz-corpus-"))
        try:
            return self._run()
        except KeyboardInterrupt:
            self.interrupted = True
            self.stop()
            return self.done
        finally:
            if self._klog is not None:
                self._klog.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def context(self) -> TargetContext:
        """What a target may look at to say it cannot run here (e.g. no measurement registers)."""
        return TargetContext(emulate=self.emulate, root=self.root, any_filesystem=self.any_filesystem,
                             options={"profile": self.profile} if self.profile else {})

    def _run(self) -> list[Job]:
        jobs = self.done
        pending: list[tuple[Job, ModuleType]] = []
        for name in self.names:
            mod = targets.load(name)
            job = Job(name, mod.DESCRIPTION, Path(), self.artifacts / f"{name}.log")
            jobs.append(job)
            why = targets.unavailable(mod, self.context())
            if why:
                job.outcome, job.skipped, job.message = "skipped", why, why
                continue
            job.corpus = self._corpus(name)
            pending.append((job, mod))
        where = f"emulated {self.emulate}" if self.emulate else " ".join(["root", *self._root_args()[1:]])
        budget = f"{self.max_time:g}s" if self.max_time else f"{self.runs} runs"
        at_once = min(self.jobs, max(len(pending), 1))
        watched = ", ".join(x for x in (self.kernel_log and f"kernel log {self.kernel_log}",
                                        self.kernel_taint and f"taint {self.kernel_taint}") if x)
        self.out.write(f"tsm-fuzz: {len(pending)} target(s) on {where}, {budget} each, {at_once} at a time; "
                       f"artifacts in {self.artifacts}{'; watching ' + watched if watched else ''}\n")
        if self.kernel_note:
            self.out.write(f"tsm-fuzz: {self.kernel_note}\n")
        if self.kernel_log and not _is_fifo(self.kernel_log):  # a FIFO's lines would go to one reader only
            tail = LogTail(self.kernel_log)
            self._klog = tail if tail.open() else None
        self._loop(pending)
        return jobs

    def _loop(self, pending: list[tuple[Job, ModuleType]]) -> None:
        running: list[Job] = []
        last = time.monotonic()
        while pending or running:
            while pending and len(running) < self.jobs:
                job, mod = pending.pop(0)
                job.started, job.wall_start = time.monotonic(), time.time()
                # stdout too: atheris prints an uncaught exception's traceback there
                job.proc = subprocess.Popen(self._command(job, mod), stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True, errors="replace",
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
                t = threading.Thread(target=self._reader, args=(job,), daemon=True)
                t.start()
                job.reader = t
                running.append(job)
            time.sleep(0.2)
            for job in list(running):
                assert job.proc is not None and job.reader is not None
                if job.proc.poll() is not None:
                    job.reader.join(5)
                    job.ended = time.monotonic()
                    job.rc = job.proc.returncode
                    running.remove(job)
                    self._conclude(job)
                    self._sweep(job)
                    self._result_line(job)
            if running and time.monotonic() - last >= self.interval:
                last = time.monotonic()
                self._progress(running)

    def _result_line(self, job: Job) -> None:
        known = f" - {known_text(job.known)} (first after {job.known_first:.1f} s)" \
            if job.known and job.known_first is not None else ""
        self.out.write(f"  {job.target:16} {job.outcome.upper()}: {job.execs} execs in "
                       f"{job.ended - job.started:.0f}s{(' - ' + job.message) if job.message else ''}"
                       f"{known}\n")
        self.out.flush()

    def stop(self) -> None:
        """After Ctrl-C / SIGTERM: stop the workers still running (SIGINT, then SIGKILL after
        STOP_GRACE), conclude each started target from what it left (a crash input is still a
        finding, not minimised: no time for it), and mark the rest interrupted."""
        for name in self.names[len(self.done):]:  # interrupted while the jobs were being made
            self.done.append(Job(name, "", Path(), self.artifacts / f"{name}.log"))
        started = [j for j in self.done if j.outcome == "pending" and j.proc is not None]
        signalled = [j for j in started if j.proc is not None and j.proc.poll() is None]
        try:
            for j in signalled:
                assert j.proc is not None
                j.proc.send_signal(signal.SIGINT)  # libFuzzer: "run interrupted; exiting"
            deadline = time.monotonic() + STOP_GRACE
            for j in signalled:
                assert j.proc is not None
                try:
                    j.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        finally:  # even when a second signal cuts the wait short: no worker outlives the runner
            for j in signalled:
                assert j.proc is not None
                if j.proc.poll() is None:
                    j.proc.kill()
                    j.proc.wait()
        self.minimize_time = 0.0
        for j in started:
            assert j.proc is not None
            if j.reader is not None:
                j.reader.join(5)
            j.ended, j.rc = j.ended or time.monotonic(), j.proc.returncode
            self._sweep(j)
            # a terminal's Ctrl-C reaches the workers too: one may have exited on it already
            stopped = j in signalled or j.rc == LIBFUZZER_INTERRUPTED
            if not stopped or self._crashes(j):
                self._conclude(j)
            else:
                j.outcome, j.message = "interrupted", "stopped by an interrupt"
            self._result_line(j)
        for j in self.done:
            if j.outcome == "pending":
                j.outcome, j.message = "interrupted", "not started: interrupted"

    def _kernel_reports(self) -> str:
        """The report lines the kernel log gained since the last call (the runner's own reading:
        a worker the kernel killed in an oops writes no finding)."""
        if self._klog is None:
            return ""
        lines = self._klog.read_new()
        bad = bad_dmesg("\n".join(lines))
        return "\n".join(bad[:50])

    def _sweep(self, job: Job) -> None:
        """Items a worker left on a live or FUSE tree (libFuzzer exits without Python's cleanup)."""
        if not self.root or job.proc is None:
            return
        prefix = with_pid(FUZZ, job.proc.pid)
        try:
            for name in os.listdir(self.root):
                if name.startswith(prefix):
                    try:
                        os.rmdir(os.path.join(self.root, name))
                    except OSError:
                        pass
        except OSError:
            pass

    # ------------------------------------------------------------------ results
    def _crashes(self, job: Job) -> list[Path]:
        """The crash, timeout and oom inputs libFuzzer wrote for ``job`` in this run."""
        crashes = sorted(self.artifacts.glob(f"{job.target}-crash-*")) + \
            sorted(self.artifacts.glob(f"{job.target}-timeout-*")) + sorted(self.artifacts.glob(f"{job.target}-oom-*"))
        return [c for c in crashes if c.stat().st_mtime >= self._t0(job)]

    def _conclude(self, job: Job) -> None:
        crashes = self._crashes(job)
        if job.rc == 0 and not crashes:
            job.outcome = "pass"
            return
        tail = "\n".join(job.tail)
        if not crashes:
            job.outcome = "error"
            job.message = f"worker exited {job.rc} without a crash input"
            job.detail = tail
            reports = self._kernel_reports()
            if reports:
                job.message += " (the kernel log has reports: an oops may have killed it)"
                job.detail = f"kernel log report lines during the run:\n{reports}\n\n{tail}"
            return
        crash = max(crashes, key=lambda p: p.stat().st_mtime)
        job.crash = crash
        kind = crash.name[len(job.target) + 1:].split("-")[0]
        findings = [f for f in self._findings(job.target) if f.stat().st_mtime >= self._t0(job)]
        if kind != "crash":
            job.outcome = "failure"
            job.message = f"libFuzzer {kind}: the target did not return in time" if kind == "timeout" \
                else f"libFuzzer {kind}"
            job.detail = f"crash input: {crash}\n\n{tail}"
            return
        if not findings:
            job.outcome = "error"
            job.message = "harness error: an exception other than Finding (see the traceback)"
            job.detail = f"crash input: {crash}\n\n{tail}"
            return
        info = json.loads(max(findings, key=lambda p: p.stat().st_mtime).read_text())
        kernel = str(info.get("rule", "")).startswith("kernel.")
        mini = self._minimize(job, crash, info["rule"] if kernel else None)
        kept = ""
        if mini is not None:
            info = mini
        elif kernel and self.minimize_time > 0:
            kept = "minimised : no - the kernel report did not come again when the input was re-run: kept as found"
        job.outcome = "failure"
        job.message = f"{info['rule']}: {info['observed']}"
        parts = []
        if info.get("tsmseq"):
            job.tsmseq = Path(info["tsmseq"])
            parts.append(job.tsmseq.read_text())
            parts.append(f"sequence  : {job.tsmseq}")
            parts.append(f"replay    : {replay_command(job.tsmseq, self.emulate, self.root, self.any_filesystem)}")
        else:
            traceback = [ln for ln in job.tail if ln.strip()]
            parts.append("\n".join(traceback[-25:]))
        parts.append(f"crash file: {crash}")
        if mini is not None and mini.get("input"):
            parts.append(f"minimised : {mini['input']} ({mini['size']} bytes)")
        if kept:
            parts.append(kept)
        if info.get("note"):
            parts.append(f"note      : {info['note']}")
        if info.get("kernel_log"):
            job.kernel_log = Path(info["kernel_log"])
            parts.append(f"kernel log: {job.kernel_log}")
            try:
                parts.append("\n" + job.kernel_log.read_text(errors="replace").rstrip("\n"))
            except OSError:
                pass
        job.detail = "\n".join(parts)

    def _t0(self, job: Job) -> float:
        # artifacts from an earlier run in the same directory are not this run's findings
        return job.wall_start - 1

    def _minimize(self, job: Job, crash: Path, rule: str | None = None) -> dict | None:
        """The minimised finding's info; None when minimising is off, failed, or the input no
        longer breaks ``rule`` (a kernel report that does not come again: kept as found)."""
        if self.minimize_time <= 0:
            return None
        cmd = [sys.executable, "-m", "tsm_fuzz.worker", job.target, "--artifacts", str(self.artifacts),
               "--minimize", str(crash), "--max-time", str(self.minimize_time)]
        if rule:
            cmd += ["--rule", rule]
        if self.emulate:
            cmd += ["--emulate", self.emulate]
        cmd += self._root_args() + self._kernel_args()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=self.minimize_time + 60)
        except subprocess.TimeoutExpired:
            return None
        if res.returncode != 0 or not res.stdout.strip():
            return None
        path = Path(res.stdout.strip().splitlines()[-1])
        info = json.loads(path.read_text())
        inp = Path(str(path).removesuffix(".json") + ".input")
        info["input"], info["size"] = str(inp), inp.stat().st_size if inp.exists() else None
        return info


def known_text(known: dict[str, int]) -> str:
    """``known: size-then-fill race x12``: known-bug matches, not findings."""
    return "known: " + ", ".join(f"{rule} x{n}" for rule, n in sorted(known.items(), key=lambda kv: (-kv[1], kv[0])))


def junit(jobs: list[Job], path: str, emulate: str | None, root: str | None, any_filesystem: bool = False,
          kernel_log: str | None = None, kernel_taint: str | None = None) -> None:
    import xml.etree.ElementTree as ET

    from junit_xml import TestCase, TestSuite, to_xml_report_string
    cases = []
    props_of: dict[str, dict[str, str]] = {}
    for j in jobs:
        el = (j.ended - j.started) if j.ended else 0.0
        out = f"{j.description}\n{j.execs} execs, cov {j.cov}, ft {j.ft}"
        if j.known:
            out += f"\n{known_text(j.known)} (known kernel bugs matched; not findings)"
        props = {f"tsm.fuzz.known.{rule}": str(n) for rule, n in sorted(j.known.items())}
        if j.known_first is not None:
            props["tsm.fuzz.known_first_s"] = f"{j.known_first:.1f}"
        if j.kernel_log:
            props["tsm.fuzz.kernel_log"] = str(j.kernel_log)
        if props:
            props_of[j.target] = props
        # classname "fuzz": JUnit readers (results.model.testcases) take a dotless name's id as
        # classname.name, so the testcase is fuzz.<target>, the id a --bundle's results.json gives it
        tc = TestCase(j.target, classname="fuzz", elapsed_sec=el, stdout=out)
        if j.outcome == "failure":
            tc.add_failure_info(message=j.message, output=j.detail, failure_type="finding")
        elif j.outcome == "error":
            tc.add_error_info(message=j.message, output=j.detail)
        elif j.outcome == "skipped":
            tc.add_skipped_info(message=f"unsupported: {j.skipped}")
        elif j.outcome in ("interrupted", "pending"):  # pending: a second interrupt cut the stop short
            tc.add_skipped_info(message=f"not-run: {j.message or 'interrupted'}")
        cases.append(tc)
    where = f"root {root}" + (" --any-filesystem" if any_filesystem else "")
    props = {"target": f"emulated {emulate}" if emulate else where,
             "tsm.fuzz.kernel_log": kernel_log or "none", "tsm.fuzz.kernel_taint": kernel_taint or "none"}
    suite = TestSuite("tsm-fuzz", cases, properties=props)
    text = to_xml_report_string([suite])
    if props_of:  # junit_xml has no testcase properties: add them (pytest's JUnit has them there too)
        root_el = ET.fromstring(text)
        for case in root_el.iter("testcase"):
            extra = props_of.get(case.get("name", ""))
            if extra:
                el_props = ET.Element("properties")
                for k, v in extra.items():
                    ET.SubElement(el_props, "property", name=k, value=v)
                case.insert(0, el_props)
        text = ET.tostring(root_el, encoding="unicode", xml_declaration=True)
    Path(path).write_text(text)


def run(names: list[str], *, emulate: str | None, root: str | None, max_time: float | None, runs: int | None,
        corpus: str | None, artifacts: str, junit_path: str | None, jobs: int, instrument: bool = True,
        minimize_time: float = 10.0, out: TextIO = sys.stdout,
        progress_interval: float = 3.0, any_filesystem: bool = False, kernel_log: str | None = None,
        kernel_taint: str | None = None, profile: str | None = None,
        on_start: Callable[[Runner], None] | None = None) -> tuple[int, list[Job]]:
    """The whole fuzz run; (exit code, jobs).  UsageError for bad input.  ``kernel_log`` /
    ``kernel_taint``: a path, ``none``, or None for the default (``kernel_watch``).  ``profile``:
    the expectations (default: what the tree's probe picks, as for ``run``).  ``on_start``: called
    with the Runner once the input is checked, before any worker starts (``--bundle``: what ran on
    what, and the jobs even when an interrupt ends the run before they are returned).  Interrupted
    (``Runner.stop``): exit 130."""
    chosen = resolve_targets(names)
    missing = missing_extra()
    if missing:
        raise UsageError(missing)
    kind = check_tree(emulate, root, any_filesystem)
    log, taint, note = kernel_watch(kind, kernel_log, kernel_taint)
    r = Runner(chosen, emulate=emulate, root=root, max_time=max_time, runs=runs, corpus=corpus,
               artifacts=artifacts, jobs=jobs, instrument=instrument, minimize_time=minimize_time, out=out,
               interval=progress_interval, any_filesystem=any_filesystem, kernel_log=log, kernel_taint=taint,
               kernel_note=note, profile=profile)
    r.tree_kind = kind
    if on_start is not None:
        on_start(r)
    done = r.run()
    if junit_path:
        junit(done, junit_path, emulate, root, any_filesystem, log, taint)
    for j in done:
        if j.outcome in ("failure", "error"):
            out.write(f"\n{j.target}: {j.outcome.upper()}: {j.message}\n{j.detail}\n")
    n = {k: sum(1 for j in done if j.outcome == k) for k in ("pass", "failure", "error", "skipped", "interrupted")}
    known = [f"{j.target} ({known_text(j.known)[len('known: '):]})" for j in done if j.known]
    tail = f"; {'; '.join(known)}" if known else ""
    if known and not (n["failure"] or n["error"]):
        tail = f"; only known bugs hit: {'; '.join(known)}"
    stopped = f", {n['interrupted']} interrupted" if r.interrupted else ""
    out.write(f"tsm-fuzz: {n['pass']} passed, {n['failure']} found, {n['error']} errors, {n['skipped']} skipped"
              f"{stopped}{tail}\n")
    if r.interrupted:
        return EXIT_INTERRUPTED, done
    return (EXIT_FAIL if n["failure"] or n["error"] else EXIT_OK), done

