"""Fault plans: one client run per world it must cope with, each judged by every rule (issue 17).

A plan is an emulator spec change (``client_fault``, emulator/params.py) or items that exist
before the client starts (``foreign-name``: the names the client made in the plain run, made first
by someone else).  ``name-taken`` catches a client whose names differ from run to run: the first
new name it makes was made by someone else a moment before (its mkdir meets EEXIST).
``run_plans`` runs the client once per plan (``client.runner.run_client``), judges each trace
(``client.rules.judge``) and returns a rules x plans table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .rules import (PLAN_BUSY_ONCE, PLAN_EINTR_ONCE, PLAN_EMPTY_OUTBLOB, PLAN_ENXIO_READ, PLAN_FOREIGN_NAME,
                    PLAN_GENERATION_BUMP, PLAN_NAME_TAKEN, PLAN_SLOW, RULES, RunFacts, Verdict, judge,
                    load_trace)
from .runner import ClientRun, run_client

PLAIN = "none"
PLANS = (PLAIN, PLAN_GENERATION_BUMP, PLAN_EMPTY_OUTBLOB, PLAN_BUSY_ONCE, PLAN_EINTR_ONCE, PLAN_ENXIO_READ,
         PLAN_SLOW, PLAN_FOREIGN_NAME, PLAN_NAME_TAKEN)
EMULATOR_FAULTS = (PLAN_GENERATION_BUMP, PLAN_EMPTY_OUTBLOB, PLAN_BUSY_ONCE, PLAN_EINTR_ONCE, PLAN_ENXIO_READ,
                   PLAN_SLOW, PLAN_NAME_TAKEN)


@dataclass
class PlanResult:
    plan: str
    run: ClientRun
    verdicts: dict[str, Verdict] = field(default_factory=dict)


def spec_for(spec: str, plan: str) -> str:
    """``spec`` with the plan's client_fault parameter (PROVIDER[:K=V,...][@ERA][+QUIRKS])."""
    if plan not in EMULATOR_FAULTS:
        return spec
    head, sep_era, era = spec.partition("@")
    head, sep_q, quirks = head.partition("+") if not sep_era else (head, "", "")
    if sep_era:
        era, sep_q, quirks = era.partition("+")
    name, colon, params = head.partition(":")
    params = f"{params},client_fault={plan}" if colon else f"client_fault={plan}"
    return f"{name}:{params}" + (f"@{era}" if sep_era else "") + (f"+{quirks}" if sep_q else "")


def provider_facts(spec: str) -> tuple[int, bool]:
    """The provider's privlevel floor and whether items show privlevel (probed in-process)."""
    from ..checks.base import probe
    from ..names import RUN, with_pid
    from ..target.emulated import EmulatedTree
    facts = probe(EmulatedTree(spec), with_pid(RUN))
    return facts.privlevel_floor or 0, "privlevel" in facts.attributes


def made_names(records: list, jail_pid: int | None) -> list[str]:
    """Item names the client (not the jail) made with a successful mkdir."""
    out: list[str] = []
    for r in records:
        if r.op == "mkdir" and r.result == 0 and r.owner not in (jail_pid, 0):
            name = str(r.path or "")
            if name and "/" not in name and name not in out:
                out.append(name)
    return out


def run_plans(cmd: list[str], spec: str, out: Path, timeout: float, plans: tuple[str, ...] = PLANS,
              echo: bool = False) -> list[PlanResult]:
    """Run ``cmd`` once per plan; its traces go to ``out/<plan>.jsonl``."""
    floor, shows = provider_facts(spec)
    results: list[PlanResult] = []
    plain_names: list[str] = []
    for plan in plans:
        pre = plain_names if plan == PLAN_FOREIGN_NAME else []
        trace = out / f"{plan}.jsonl"
        run = run_client(cmd, spec_for(spec, plan), trace, timeout, pre_items=pre, echo=echo)
        records = load_trace(str(trace))
        if plan == PLAIN:
            plain_names = made_names(records, run.jail_pid)
        facts = RunFacts(run.status, run.jail_pid or -1, None if plan == PLAIN else plan, floor, shows,
                         claimed=tuple(pre))
        results.append(PlanResult(plan, run, judge(records, facts)))
    return results


def table(results: list[PlanResult]) -> list[str]:
    """Rules x plans: pass / FAIL / - (not exercised)."""
    width = max(len(r) for r in RULES)
    cols = [max(len(p.plan), 4) for p in results]  # a plan's whole name heads its column

    def row(first: str, cells: list[str]) -> str:
        return f"{first:{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, cols))
    lines = [row("rule", [p.plan for p in results])]
    for rule in [r for r in RULES if any(r in p.verdicts for p in results)]:
        cells = []
        for p in results:
            v = p.verdicts.get(rule)
            cells.append({"pass": "pass", "fail": "FAIL"}.get(v.status if v else "", "-"))
        lines.append(row(rule, cells))
    lines.append(row("exit status", [str(p.run.status) for p in results]))
    return lines


def failures(results: list[PlanResult]) -> list[tuple[str, str, list[str]]]:
    """(rule, plan, evidence) of every failed verdict."""
    return [(rule, p.plan, v.evidence) for p in results for rule, v in p.verdicts.items() if v.status == "fail"]


def write_junit(results: list[PlanResult], path: Path, cmd: list[str]) -> None:
    """One testsuite per plan, one testcase per rule (failure: its evidence; skipped: not exercised)."""
    import xml.etree.ElementTree as ET
    root = ET.Element("testsuites", name="tsm-conformance client")
    for p in results:
        s = ET.SubElement(root, "testsuite", name=f"client[{p.plan}]", tests=str(len(p.verdicts)))
        props = ET.SubElement(s, "properties")
        ET.SubElement(props, "property", name="tsm.client.command", value=json.dumps(cmd))
        ET.SubElement(props, "property", name="tsm.client.exit_status", value=str(p.run.status))
        ET.SubElement(props, "property", name="tsm.client.trace", value=str(p.run.trace))
        for rule, v in p.verdicts.items():
            case = ET.SubElement(s, "testcase", classname=f"tsm.client.{p.plan}", name=rule)
            if v.status == "fail":
                ET.SubElement(case, "failure", message=(v.evidence[0] if v.evidence else rule)[:300]).text = \
                    "\n".join(v.evidence)
            elif v.status != "pass":
                ET.SubElement(case, "skipped", message="not exercised: " + " ".join(v.evidence)[:300])
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
