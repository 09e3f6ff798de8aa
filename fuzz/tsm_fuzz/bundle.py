"""``tsm-conformance fuzz ... --bundle DIR``: a fuzz run's result bundle (docs/results.md "The
bundle", docs/fuzzing.md "Bundles").

One check per target, id ``fuzz.<target>`` (area ``fuzz``): pass (no finding), fail (a finding),
error (the target could not run), skip-unsupported (the target is unavailable here), not-run (an
interrupt stopped it, or came before it started).  A failure's text goes to
``evidence/fuzz.<target>.txt`` and its artifacts (crash input, ``.json``, ``.tsmseq``,
``.kernel.log`` excerpt, the minimised input) are copied to ``findings/<target>/``.  ``junit.xml``
is the runner's own JUnit (``runner.junit``, what ``--junit`` writes), ``summary.txt`` what the
command printed (``Tee``), ``environment.json`` what ran on what; corpora are not copied (they can
be large).  ``tsm_conformance.results.bundle.seal`` writes the manifest last.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import shutil
import sys
from pathlib import Path
from typing import Any, TextIO

from tsm_conformance.outcome import COLUMNS, FACES, Outcome
from tsm_conformance.results import environment
from tsm_conformance.results.bundle import seal
from tsm_conformance.results.model import ENVIRONMENT, FORMAT, RESULTS

from .runner import EXIT_INTERRUPTED, Job, Runner, junit, known_text

#: the runner's outcome words -> the outcome taxonomy (tsm_conformance/outcome.py)
OUTCOMES = {"pass": Outcome.PASS, "failure": Outcome.FAIL, "error": Outcome.ERROR,
            "skipped": Outcome.SKIP_UNSUPPORTED, "interrupted": Outcome.NOT_RUN, "pending": Outcome.NOT_RUN}
REASON_MAX = 500  # characters of a check's one-line reason (the full text is its evidence)
PROBE_DEADLINE = 30.0  # seconds the target's probe (provider, kernel release) may take
_SEED = re.compile(r"INFO: Seed: (\d+)")


class Tee(io.StringIO):
    """The command's terminal output, passed through and kept: summary.txt is what was printed,
    not a second rendering of it."""

    def __init__(self, terminal: TextIO) -> None:
        super().__init__()
        self.terminal = terminal

    def write(self, s: str) -> int:
        # Ctrl-C or SIGTERM between the two writes would leave a line on the terminal that the
        # summary lacks: both happen with the signals held (delivered right after)
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.terminal.write(s)
            return super().write(s)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def flush(self) -> None:
        self.terminal.flush()

    def keep(self, s: str) -> None:
        """Keep text that went to the terminal another way (stderr)."""
        super().write(s)


class FuzzBundle:
    """Collects what the bundle needs while the fuzz command runs; ``write`` makes it at the end."""

    def __init__(self, directory: str, argv: list[str], names: list[str], max_time: float | None,
                 runs: int | None) -> None:
        self.dir, self.argv, self.names = directory, argv, names
        self.max_time, self.runs = max_time, runs
        self.started = environment.now()
        self.out = Tee(sys.stdout)
        self.runner: Runner | None = None
        self.target: dict[str, Any] = {}

    def note(self, line: str) -> None:
        """A line the command printed on stderr (an interrupt's): part of what it printed."""
        self.out.keep(line + "\n")

    def start(self, r: Runner) -> None:
        """``runner.run``'s ``on_start``: the input is checked, no worker runs yet."""
        self.runner = r
        self.target = target_section(r)

    # ------------------------------------------------------------ writing
    def write(self, exit_status: int) -> None:
        """Every file of the bundle, then its manifest."""
        os.makedirs(self.dir, exist_ok=True)
        r = self.runner
        jobs = list(r.done) if r is not None else []
        seen = {j.target for j in jobs}
        names = r.names if r is not None else self.names
        jobs += [Job(n, "", Path(), Path(), outcome="interrupted", message="not started: interrupted")
                 for n in names if n not in seen]
        if r is not None:
            junit(jobs, os.path.join(self.dir, "junit.xml"), r.emulate, r.root, r.any_filesystem,
                  r.kernel_log, r.kernel_taint)
        else:
            junit(jobs, os.path.join(self.dir, "junit.xml"), None, None)
        checks = [self._check(j) for j in jobs]
        res = self._results(checks, exit_status)
        _write_json(os.path.join(self.dir, RESULTS), res)
        with open(os.path.join(self.dir, "summary.txt"), "w", encoding="utf-8") as f:
            f.write(self.out.getvalue())
        _write_json(os.path.join(self.dir, ENVIRONMENT), self._environment(res, jobs))
        seal(self.dir)

    def _check(self, j: Job) -> dict[str, Any]:
        cid = f"fuzz.{j.target}"
        outcome = OUTCOMES.get(j.outcome, Outcome.ERROR)
        row: dict[str, Any] = {"id": cid, "area": "fuzz", "outcome": outcome.value,
                               "duration": round(j.ended - j.started, 3) if j.ended else 0.0,
                               "reason": _one_line(reason(j, outcome))}
        files = self._findings(j) if outcome in (Outcome.FAIL, Outcome.ERROR) else []
        if files:
            row["files"] = files
        if outcome in (Outcome.FAIL, Outcome.ERROR):
            rel = f"evidence/{cid}.txt"
            os.makedirs(os.path.join(self.dir, "evidence"), exist_ok=True)
            text = f"{cid}: {j.outcome.upper()}: {j.message}\n\n{j.detail}".rstrip("\n") + "\n"
            if files:
                text += "\nin this bundle:\n" + "".join(f"  {f}\n" for f in files)
            with open(os.path.join(self.dir, rel), "w", encoding="utf-8") as f:
                f.write(text)
            row["evidence"] = rel
        return row

    def _findings(self, j: Job) -> list[str]:
        """This run's artifacts of ``j`` copied to findings/<target>/; their bundle-relative paths."""
        r = self.runner
        if r is None or not j.wall_start:
            return []
        t0 = j.wall_start - 1  # as Runner._t0: an earlier run's artifacts in the same directory are not this one's
        try:
            found = sorted(p for p in r.artifacts.glob(f"{j.target}-*") if p.is_file() and p.stat().st_mtime >= t0)
        except OSError:
            return []
        if not found:
            return []
        dest = os.path.join(self.dir, "findings", j.target)
        os.makedirs(dest, exist_ok=True)
        out = []
        for p in found:
            try:
                shutil.copyfile(p, os.path.join(dest, p.name))
            except OSError:
                continue
            out.append(f"findings/{j.target}/{p.name}")
        return out

    def _results(self, checks: list[dict[str, Any]], exit_status: int) -> dict[str, Any]:
        outcomes = [Outcome(c["outcome"]) for c in checks]
        totals = dict.fromkeys(COLUMNS, 0)
        for o in outcomes:
            totals[FACES[o].column] += 1
        if exit_status == EXIT_INTERRUPTED:
            verdict = "interrupted"
        else:
            verdict = "fail" if any(FACES[o].fails_run for o in outcomes) else "pass"
        return {"format": FORMAT, "command": "fuzz", "verdict": verdict, "exit_status": exit_status,
                "started": self.started, "finished": environment.now(), "totals": totals, "checks": checks}

    def _environment(self, res: dict[str, Any], jobs: list[Job]) -> dict[str, Any]:
        env: dict[str, Any] = {"tool": environment.tool(), "python": environment.python(), "host": environment.host()}
        if self.target:
            env["target"] = self.target
        if self.target.get("kind") == "live":  # configfs: the kernel under the tree is this machine's
            env["kernel_config"] = environment.kernel_config()
            provider = self.target.get("provider")
            env["module"] = environment.module(provider) if provider else None
        seeds = {j.target: s for j in jobs if (s := libfuzzer_seed(j.log)) is not None}
        env["run"] = {"argv": self.argv, "seed": seeds or None, "started": res["started"],
                      "finished": res["finished"], "exit_status": res["exit_status"],
                      "targets": [j.target for j in jobs], "max_time": self.max_time, "runs": self.runs}
        return env


def reason(j: Job, outcome: Outcome) -> str:
    """The check's one line: the finding's rule and observation, why it could not run or was not
    run, or what a pass did (execs, known-bug matches)."""
    if outcome is Outcome.PASS:
        secs = j.ended - j.started if j.ended else 0.0
        known = f"; {known_text(j.known)} (known kernel bugs matched; not findings)" if j.known else ""
        return f"{j.execs} execs in {secs:.0f} s, no finding{known}"
    if outcome is Outcome.SKIP_UNSUPPORTED:
        return f"unsupported: {j.skipped or j.message}"
    if outcome is Outcome.NOT_RUN:
        ran = f" after {j.execs} execs" if j.execs else ""
        return f"not-run: {j.message or 'interrupted'}{ran}"
    return j.message


def target_section(r: Runner) -> dict[str, Any]:
    """environment.json's ``target``: kind, describe, kernel release, and the provider (from a
    probe item, as ``run`` reads it; best effort: a tree the probe cannot read leaves it null)."""
    from tsm_conformance.runstate import SetupError, make_tree, probe_tree
    out: dict[str, Any] = {"kind": r.tree_kind, "describe": None, "kernel_release": None, "provider": None}
    try:
        tree = make_tree(r.root, r.emulate, any_filesystem=r.any_filesystem)
        out["kind"], out["describe"], out["kernel_release"] = tree.kind, tree.describe(), tree.kernel_release()
        facts = probe_tree(tree, PROBE_DEADLINE)
    except (SetupError, OSError, ValueError):  # best effort: the run goes on, the keys stay null
        return out
    out.update(provider=facts.provider, attributes=sorted(facts.attributes), privlevel_floor=facts.privlevel_floor)
    if tree.kind == "emulated":
        spec = getattr(tree, "spec", None)
        out["emulated"] = str(spec)
    return out


def libfuzzer_seed(log: Path) -> int | None:
    """The seed libFuzzer chose for a worker (``INFO: Seed: N`` near the top of its log): with
    ``-seed=N`` the same mutations come again."""
    try:
        with open(log, "rb") as f:
            head = f.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return None
    m = _SEED.search(head)
    return int(m[1]) if m else None


def _one_line(text: str) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= REASON_MAX else t[:REASON_MAX - 3] + "..."


def _write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
