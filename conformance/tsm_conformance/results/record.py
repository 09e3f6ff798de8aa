"""``--bundle DIR`` for a suite run: a pytest plugin object that writes the bundle (docs/results.md).

Registered by the plugin when ``--tsm-bundle`` is given.  It gives the run's JUnit a home in the
bundle when no ``--junitxml`` was asked for (else copies it there at the end), writes a KTAP copy
(``results.ktap``), each failure's text and ``.tsmseq``, the terminal report (``summary.txt``),
``results.json`` from each check's typed verdict (the one KTAP and JUnit derive from),
``profile.yaml``, ``environment.json``, and seals it (``bundle.seal``: ``MANIFEST.sha256``).
``run`` seals it again once its exit status is known (``finish``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import IO, Any

import pytest

from ..ktap import KtapReporter, verdict_of
from ..outcome import COLUMNS, FACES, Outcome, run_result
from . import environment
from .bundle import seal
from .model import ENVIRONMENT, FORMAT, MANIFEST, RESULTS

#: JUnit testcase properties the plugin sets (plugin.py names them; plain strings here, a layer below)
SEQUENCE_PROPERTY, KNOWN_PROPERTY, KNOWN_FAILURE_PROPERTY = "tsm.sequence", "tsm.known", "tsm.known.failure"


def bundle_problem(directory: str) -> str | None:
    """The one line for a --bundle directory that cannot be used (it must be absent or empty, so
    a bundle never mixes two runs), or None."""
    from ..outputs import dir_problem
    if os.path.lexists(directory):
        if not os.path.isdir(directory):
            return f"--bundle {directory}: not a directory"
        try:
            if os.listdir(directory):
                return f"--bundle {directory}: not empty (a bundle holds one run: give a new directory)"
        except OSError as e:
            return f"--bundle {directory}: {e.strerror}"
    why = dir_problem(directory)
    return f"--bundle {directory}: {why}" if why else None


def safe_name(check_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", check_id)[:200]


class BundleRecorder:
    """Collects each check's verdict, duration and evidence; writes the bundle at the end."""

    def __init__(self, config: pytest.Config, state: Any, directory: str, argv: list[str]) -> None:
        self.config, self.state, self.dir, self.argv = config, state, directory, argv
        self.started = environment.now()
        os.makedirs(os.path.join(directory, "evidence"), exist_ok=True)
        self.sequences = os.path.join(directory, "sequences")
        self.rows: dict[str, dict[str, Any]] = {}  # nodeid -> results.json entry
        self.order: list[str] = []
        self.summary: list[str] = []
        self.interrupted = False
        self.ktap_file: IO[str] = open(os.path.join(directory, "results.ktap"), "w", encoding="utf-8")  # noqa: SIM115
        self.ktap = KtapReporter(self.ktap_file, None, summary=False, key=os.path.join(directory, "results.ktap"))
        junit = config.option.xmlpath if hasattr(config.option, "xmlpath") else None
        self.junit_elsewhere = junit
        if not junit and hasattr(config.option, "xmlpath"):  # before junitxml's pytest_configure reads it
            config.option.xmlpath = os.path.join(directory, "junit.xml")
        from ..checks import statemachine
        if statemachine.SEED is None:  # fixed now, so the bundle can say which seed ran
            statemachine.SEED = statemachine.seed_in_use()
        self.seed = statemachine.SEED

    def register(self) -> None:
        pm = self.config.pluginmanager
        pm.register(self.ktap, "tsm-bundle-ktap")
        main = pm.get_plugin("tsm-ktap")
        if main is not None:  # run-level diagnostics (kernel log, stale entries) in both KTAP copies
            self.ktap.diagnostics = main.diagnostics

    # ------------------------------------------------------------ hooks
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Copy what pytest prints (the terminal reporter exists from here on) into summary.txt."""
        if self.config.pluginmanager.get_plugin("terminalreporter") is None:
            return
        tw = self.config.get_terminal_writer()
        write = tw.write

        def tee(msg: str, **kw: Any) -> None:
            self.summary.append(msg)
            write(msg, **kw)
        tw.write = tee  # type: ignore[method-assign]  # a copy of the terminal report: summary.txt

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nid = report.nodeid
        row = self.rows.get(nid)
        if row is None:
            name = nid.rsplit("::", 1)[-1]
            row = self.rows[nid] = {"id": name, "area": name.split(".")[0], "outcome": None, "duration": 0.0,
                                    "reason": ""}
            self.order.append(nid)
        row["duration"] = round(row["duration"] + float(getattr(report, "duration", 0.0) or 0.0), 6)
        v = verdict_of(report)
        if v is None or (row["outcome"] is not None and v.outcome is not Outcome.ERROR):
            return
        row["outcome"], row["reason"] = v.outcome.value, v.reason or _first_line(report.longreprtext)
        props = dict(report.user_properties)
        text = str(props.get(KNOWN_FAILURE_PROPERTY) or "") if v.outcome is Outcome.KNOWN else \
            (report.longreprtext if not FACES[v.outcome].ok else "")
        if text:
            rel = f"evidence/{safe_name(row['id'])}.txt"
            with open(os.path.join(self.dir, rel), "w", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
            row["evidence"] = rel
        seq = props.get(SEQUENCE_PROPERTY)
        if seq:
            row.setdefault("files", []).append(self._take(str(seq)))
        if v.outcome is Outcome.KNOWN and self.state is not None:
            e = self.state.known_entry(row["id"])
            if e is not None:
                row["known"] = e.as_dict()

    def _take(self, path: str) -> str:
        """A .tsmseq the run wrote: moved into the bundle when it is already there, else copied."""
        os.makedirs(self.sequences, exist_ok=True)
        dest = os.path.join(self.sequences, os.path.basename(path))
        if os.path.abspath(path) != os.path.abspath(dest):
            shutil.copyfile(path, dest)
        return os.path.relpath(dest, self.dir)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """After every report, JUnit's file and the per-area table (the terminal's last lines)."""
        try:
            self.ktap_file.close()
        except OSError:
            pass
        self.write(None)

    # ------------------------------------------------------------ writing
    def results(self, exit_status: int | None) -> dict[str, Any]:
        checks = [self.rows[n] for n in self.order if self.rows[n]["outcome"] is not None]
        outcomes = [Outcome(c["outcome"]) for c in checks if not c["id"].startswith("environment.")]
        evidence = [Outcome(c["outcome"]) for c in checks if c["id"].startswith("environment.")]
        verdict = {"fail": "fail", "ok": "pass", "nothing-ran": "nothing-ran"}[run_result(outcomes, evidence)]
        if exit_status is None:  # a pytest run of the plugin: the status `run` would give (finish: run's own)
            exit_status = 130 if self.interrupted else {"fail": 1, "pass": 0, "nothing-ran": 4}[verdict]
        if exit_status == 130:
            verdict = "interrupted"
        totals = dict.fromkeys(COLUMNS, 0)
        for c in checks:
            totals[FACES[Outcome(c["outcome"])].column] += 1
        stale = [e.as_dict() for e in getattr(self.state, "stale", [])]
        return {"format": FORMAT, "command": "run", "verdict": verdict, "exit_status": exit_status,
                "started": self.started, "finished": environment.now(), "totals": totals, "checks": checks,
                "stale_baseline": stale}

    def write(self, exit_status: int | None) -> None:
        """Every file of the bundle, then its manifest (again with ``run``'s exit status: finish)."""
        d = self.dir
        if self.junit_elsewhere and os.path.isfile(self.junit_elsewhere):
            shutil.copyfile(self.junit_elsewhere, os.path.join(d, "junit.xml"))
        res = self.results(exit_status)
        _write_json(os.path.join(d, RESULTS), res)
        with open(os.path.join(d, "summary.txt"), "w", encoding="utf-8") as f:
            f.write(_plain("".join(self.summary)))
        env = self.environment(res)
        _write_json(os.path.join(d, ENVIRONMENT), env)
        seal(d)

    def environment(self, res: dict[str, Any]) -> dict[str, Any]:
        st = self.state
        env: dict[str, Any] = {"tool": environment.tool(), "python": environment.python(), "host": environment.host()}
        if st is None:
            return env
        f = st.facts
        env["target"] = {"kind": st.tree.kind, "describe": f.target, "kernel_release": f.kernel_release,
                         "provider": f.provider, "attributes": sorted(f.attributes),
                         "privlevel_floor": f.privlevel_floor}
        if st.tree.kind == "live":  # the kernel under the tree is this machine's
            env["kernel_config"] = environment.kernel_config()
            env["module"] = environment.module(f.provider) if f.provider else None
        elif st.tree.kind == "emulated":
            env["module"] = {"name": f.provider, "emulated": str(getattr(st.tree, "spec", "")),
                             "parameters": dict(getattr(getattr(st.tree, "spec", None), "params", None) or {})}
        env["profile"] = self.profile(st.profile)
        env["baselines"] = [{"path": p, "sha256": h, "entries": n} for p, h, n in st.baseline.files]
        env["run"] = {"argv": self.argv, "seed": self.seed, "started": res["started"], "finished": res["finished"],
                      "exit_status": res["exit_status"]}
        return env

    def profile(self, p: Any) -> dict[str, Any]:
        """The profile's chain of files with their sha256, and the resolved profile.yaml's."""
        from ..profile.render import render_profile
        from ..profile.search import display_path, find
        text = render_profile(p)
        path = os.path.join(self.dir, "profile.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        files = []
        chain = [find(n) for n in p.extends]
        for src in [p.path, *(display_path(x) if x is not None else n for x, n in zip(chain, p.extends))]:
            try:
                files.append({"path": src, "sha256": environment.sha256_file(src)})
            except OSError:
                files.append({"path": src, "sha256": None})
        return {"name": p.name, "path": p.path, "files": files, "resolved_sha256": environment.sha256_file(path)}


def finish(directory: str, exit_status: int) -> None:
    """``run``'s last word on the bundle: its exit status (130, 4 ...) in results.json and
    environment.json, and the manifest made again."""
    for name, key in ((RESULTS, None), (ENVIRONMENT, "run")):
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue
        target = d.get(key) if key else d
        if isinstance(target, dict):
            target["exit_status"] = exit_status
            if key is None and exit_status == 130:
                target["verdict"] = "interrupted"
        _write_json(path, d)
    if os.path.exists(os.path.join(directory, MANIFEST)):
        seal(directory)


def _write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.write("\n")


def _first_line(text: str) -> str:
    t = (text or "").strip()
    return t.splitlines()[0][:500] if t else ""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _plain(text: str) -> str:
    """Terminal text without colour codes."""
    return _ANSI.sub("", text)

