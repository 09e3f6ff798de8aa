"""``vm ... --bundle DIR``: the result bundle of a real-kernel run (docs/results.md "VM bundles").

The guest runs the suite once per provider parameter set, each with ``run --bundle``, straight
onto the results share; the host gathers them under ``runs/<i>/`` (each a whole bundle, verified
on its own) and adds what only the host knows: the merged JUnit (every run, the kernel-log case,
the differential, kselftest), the guest's dmesg, and an ``environment.json`` with the kernel, how
it was built or fetched, QEMU and the parameter sets.  Its ``results.json`` lists every check once
per parameter set, as ``ID[PARAMS]`` (the merged JUnit's names, model.testcases), with the guest
bundle's precise outcomes and evidence where there is one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..outcome import COLUMNS, FACES, Outcome
from ..results import environment
from ..results.bundle import seal
from ..results.model import FORMAT, VM_PARAMS_PROPERTY, case_outcome, testcases
from ..results.record import safe_name

if TYPE_CHECKING:
    from .runner import VmRun


def guest_bundle(results: Path, i: int) -> Path:
    """Where the guest's run ``i`` writes its bundle (on the results share)."""
    return results / f"bundle-{i}"


def _guest_rows(run: VmRun, out: Path) -> tuple[list[dict[str, Any]], set[str], list[dict[str, Any]]]:
    """Rows of every guest bundle (ids qualified), the parameter sets they cover, their environments."""
    rows: list[dict[str, Any]] = []
    covered: set[str] = set()
    envs: list[dict[str, Any]] = []
    for i, params in enumerate(run.params):
        src = guest_bundle(run.results, i)
        if not (src / "results.json").is_file():
            continue
        dest = out / "runs" / str(i)
        shutil.copytree(src, dest)
        res = json.loads((dest / "results.json").read_text())
        for c in res.get("checks") or ():
            c = dict(c, id=f"{c['id']}[{params}]")
            if c.get("evidence"):
                c["evidence"] = f"runs/{i}/{c['evidence']}"
            c["files"] = [f"runs/{i}/{f}" for f in c.get("files") or ()]
            rows.append(c)
        covered.add(params)
        env = json.loads((dest / "environment.json").read_text()) if (dest / "environment.json").is_file() else {}
        envs.append({"params": params, "bundle": f"runs/{i}", "target": env.get("target"),
                     "module": env.get("module"), "exit_status": res.get("exit_status")})
    return rows, covered, envs


def _host_rows(junit: Path, covered: set[str], out: Path) -> list[dict[str, Any]]:
    """The merged JUnit's cases no guest bundle has: kernel log, differential, kselftest, a run
    that produced no bundle."""
    rows = []
    for props, cid, tc in testcases(ET.parse(junit).getroot()):
        if props.get(VM_PARAMS_PROPERTY) in covered:
            continue
        outcome, reason, text = case_outcome(tc)
        row: dict[str, Any] = {"id": cid, "area": cid.split(".")[0], "outcome": outcome.value,
                               "duration": float(tc.get("time") or 0.0), "reason": reason.splitlines()[0][:500]
                               if reason else ""}
        if text:
            rel = f"evidence/{safe_name(cid)}.txt"
            (out / "evidence").mkdir(exist_ok=True)
            (out / rel).write_text(text)
            row["evidence"] = rel
        rows.append(row)
    return rows


def write_vm_bundle(run: VmRun, out: Path, junit: Path, dmesg: str, status: int, argv: list[str],
                    started: str) -> None:
    """Gather the guest bundles and the host's facts into ``out`` and seal it."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(junit, out / "junit.xml")
    (out / "dmesg.txt").write_text(dmesg)
    rows, covered, envs = _guest_rows(run, out)
    rows += _host_rows(junit, covered, out)
    totals = dict.fromkeys(COLUMNS, 0)
    for r in rows:
        totals[FACES[Outcome(r["outcome"])].column] += 1
    failed = any(FACES[Outcome(r["outcome"])].fails_run for r in rows)
    verdict = "fail" if failed or status else ("pass" if rows else "nothing-ran")
    finished = environment.now()
    res = {"format": FORMAT, "command": "vm", "verdict": verdict, "exit_status": status, "started": started,
           "finished": finished, "totals": totals, "checks": rows, "stale_baseline": []}
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    env: dict[str, Any] = {"tool": environment.tool(), "python": environment.python(), "host": environment.host(),
                           "vm": _vm_facts(run)}
    if envs:
        env["target"] = envs[0]["target"]
        env["runs"] = envs
    env["run"] = {"argv": argv, "started": started, "finished": finished, "exit_status": status}
    (out / "environment.json").write_text(json.dumps(env, indent=1) + "\n")
    seal(str(out))


def _vm_facts(run: VmRun) -> dict[str, Any]:
    try:
        version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        version = None
    cfg = run.tree.headers / ".config"
    config = environment.config_options(cfg.read_text(errors="replace")) if cfg.is_file() else None
    return {"kernel_release": run.tree.release, "kernel_image": str(run.tree.image),
            "kernel_source": str(run.tree.source) if run.tree.source else None, "kernel_config": config,
            "accel": run.accel, "qemu": version, "mode": run.mode, "provider_module": run.provider.name,
            "params": run.params, "timeout": run.timeout}
