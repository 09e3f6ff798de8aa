"""The results of one run, read back from a bundle (``results.json``) or a JUnit file: what
``report``, ``compare`` and ``bundle verify`` work on (docs/results.md).

A bundle's ``results.json`` is written by ``results.record`` from each check's typed verdict (the
same one KTAP, JUnit and the exit status derive from: ``outcome.FACES``).  A JUnit file carries
less, so its outcomes are recovered from the testcase elements and the skip reasons' prefixes the
plugin writes (``not-applicable:``, ``unsupported:``, ``not-run:``, ``known:``); a JUnit from
another tool reads as plain pass / fail / error / skip.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..inputs import EVIDENCE_MAX, RESULTS_MAX, InputError, read_bounded
from ..outcome import FACES, Outcome

FORMAT = "tsm-conformance-results/1"  # results.json's "format"
RESULTS = "results.json"
ENVIRONMENT = "environment.json"
MANIFEST = "MANIFEST.sha256"


class ResultsError(ValueError):
    """A results file or bundle that cannot be read: ``str()`` is one line naming it."""


@dataclass(frozen=True)
class CheckResult:
    """One check (or fuzz target) of a run."""

    id: str  # check id, e.g. inblob.oversize.efbig; fuzz.<target> for a fuzz target
    area: str  # the check's area (its id's first part), or the JUnit classname's last part
    outcome: Outcome
    duration: float = 0.0  # seconds
    reason: str = ""  # one line: the skip / xfail / known reason, a failure's or error's first line
    evidence: str = ""  # bundle-relative path of the failure's full text (evidence/<id>.txt), if any
    files: tuple[str, ...] = ()  # bundle-relative paths of more evidence: .tsmseq, kernel-log excerpt
    known: dict[str, str] = field(default_factory=dict)  # the baseline entry that matched (KNOWN)
    text: str = ""  # a JUnit failure's or error's full text (a bundle keeps it in ``evidence``)

    @property
    def failed(self) -> bool:
        """Counts against the run (outcome.FACES: fail, timeout, error, strict xpass)."""
        return FACES[self.outcome].fails_run

    @property
    def status(self) -> str:
        """The column it is counted in (pass, fail, xfail, xpass, skip, error), as KTAP's Totals."""
        return FACES[self.outcome].column


@dataclass(frozen=True)
class Run:
    """One run's results: where they came from, what ran on what, and each check's outcome."""

    source: str  # the bundle directory or JUnit file given
    kind: str  # "bundle" or "junit"
    label: str  # a short name for columns and headings (the bundle's directory name, the file's)
    command: str = "run"  # run, fuzz, vm
    verdict: str = ""  # pass, fail, nothing-ran, interrupted (results.json); derived for JUnit
    exit_status: int | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    checks: tuple[CheckResult, ...] = ()
    stale: tuple[dict[str, str], ...] = ()  # baseline entries that no longer fail
    properties: dict[str, str] = field(default_factory=dict)  # JUnit suite properties

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def areas(self) -> list[str]:
        """Areas in the order their first check appears."""
        return list(dict.fromkeys(c.area for c in self.checks))

    def totals(self) -> dict[str, int]:
        from ..outcome import COLUMNS
        t = dict.fromkeys(COLUMNS, 0)
        for c in self.checks:
            t[c.status] += 1
        return t

    def evidence_text(self, c: CheckResult) -> str:
        """The full failure text of ``c`` (its evidence file in a bundle; empty when there is none),
        read within EVIDENCE_MAX; a missing or unreadable file says so instead of raising."""
        if self.kind != "bundle":
            return c.text
        return read_member(self.source, c.evidence) if c.evidence else ""


def read_member(bundle: str, rel: str, limit: int = EVIDENCE_MAX) -> str:
    """A bundle member's text (bounded; undecodable bytes replaced), or a one-line note of why not."""
    path = member_path(bundle, rel)
    if path is None:
        return f"({rel}: outside the bundle)"
    try:
        return read_bounded(path, limit, "evidence").decode("utf-8", "replace")
    except (InputError, OSError) as e:
        return f"({e})"


def member_path(bundle: str, rel: str) -> str | None:
    """``rel`` inside ``bundle``, or None for a path that would leave it (absolute, ``..``)."""
    if not rel or os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
        return None
    return os.path.join(bundle, rel)


# ----------------------------------------------------------------------------- loading
def load_run(path: str) -> Run:
    """A bundle directory (its results.json) or a JUnit XML file; ``ResultsError`` otherwise."""
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, RESULTS)):
            raise ResultsError(f"{path}: not a bundle (no {RESULTS}; bundles are written by run --bundle DIR)")
        return _from_bundle(path)
    data = _read(path, "results file")
    head = data.lstrip()[:200]
    if head.startswith(b"{"):
        return _from_results_json(path, data, os.path.dirname(path) or ".")
    if head.startswith(b"<"):
        return _from_junit(path, data)
    raise ResultsError(f"{path}: neither a bundle, a results.json nor a JUnit XML file")


def _from_bundle(path: str) -> Run:
    rp = os.path.join(path, RESULTS)
    return _from_results_json(rp, _read(rp, "results file"), path)


def _read(path: str, what: str) -> bytes:
    """A results file within RESULTS_MAX, or ResultsError in one line."""
    try:
        return read_bounded(path, RESULTS_MAX, what)
    except InputError as e:
        raise ResultsError(str(e)) from None
    except OSError as e:
        raise ResultsError(f"{path}: {e.strerror or e}") from None


def _json(path: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ResultsError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None


def _from_results_json(path: str, data: bytes, bundle: str) -> Run:
    d = _json(path, data)
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ResultsError(f"{path}: not a tsm-conformance results file (format is not {FORMAT!r})")
    env: dict[str, Any] = {}
    ep = os.path.join(bundle, ENVIRONMENT)
    if os.path.exists(ep):
        e = _json(ep, _read(ep, "environment file"))
        env = e if isinstance(e, dict) else {}
    for key in ("checks", "stale_baseline"):
        if not isinstance(d.get(key) or [], list):
            raise ResultsError(f"{path}: {key!r} is not a list")
    checks = []
    for i, c in enumerate(d.get("checks") or ()):
        try:
            checks.append(CheckResult(
                id=str(c["id"]), area=str(c.get("area") or str(c["id"]).split(".")[0]),
                outcome=Outcome(c["outcome"]), duration=float(c.get("duration") or 0.0),
                reason=str(c.get("reason") or ""), evidence=str(c.get("evidence") or ""),
                files=tuple(str(f) for f in c.get("files") or ()),
                known={str(k): str(v) for k, v in (c.get("known") or {}).items()}))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ResultsError(f"{path}: checks[{i}] is malformed ({type(e).__name__}: {e})") from None
    stale = tuple({str(k): str(v) for k, v in s.items()} for s in d.get("stale_baseline") or () if isinstance(s, dict))
    label = os.path.basename(os.path.abspath(bundle)) if os.path.isdir(bundle) else os.path.basename(path)
    status = d.get("exit_status")
    return Run(source=bundle, kind="bundle", label=label, command=str(d.get("command") or "run"),
               verdict=str(d.get("verdict") or ""), exit_status=status if isinstance(status, int) else None,
               environment=env, checks=tuple(checks), stale=stale)


# JUnit ------------------------------------------------------------------------
_SKIP_PREFIXES = (("not-applicable:", Outcome.SKIP_NA), ("unsupported:", Outcome.SKIP_UNSUPPORTED),
                  ("not-run:", Outcome.NOT_RUN), ("known:", Outcome.KNOWN))


#: the suite property the VM runner gives each parameter set's suite (vm/runner.py merge_junit): a
#: check id runs once per parameter set there, so its case is named ``ID[PARAMS]``
VM_PARAMS_PROPERTY = "tsm.vm.module_params"


def suite_properties(suite: ET.Element) -> dict[str, str]:
    """A testsuite's own properties (not its testcases')."""
    return {str(p.get("name")): str(p.get("value") or "") for p in suite.findall("properties/property")}


def testcases(root: ET.Element) -> Iterator[tuple[dict[str, str], str, ET.Element]]:
    """(suite properties, case id, testcase) of every testcase, ids qualified by the VM parameter
    set where there is one."""
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for s in suites:
        props = suite_properties(s)
        for tc in s.findall("testcase"):
            name, cls = tc.get("name") or "?", tc.get("classname") or ""
            cid = name if "." in name or not cls else f"{cls}.{name}"
            if VM_PARAMS_PROPERTY in props:
                cid = f"{cid}[{props[VM_PARAMS_PROPERTY]}]"
            yield props, cid, tc


def case_outcome(tc: ET.Element) -> tuple[Outcome, str, str]:
    """(outcome, reason, failure text) of one testcase, as the plugin writes them (module docstring)."""
    tprops = {p.get("name"): p.get("value") or "" for p in tc.iter("property")}
    for tag, oc in (("failure", Outcome.FAIL), ("error", Outcome.ERROR)):
        el = tc.find(tag)
        if el is not None:
            reason = el.get("message") or ""
            if oc is Outcome.FAIL and (reason.startswith("hung") or "TIMEOUT" in reason[:20]):
                oc = Outcome.TIMEOUT
            return oc, reason, el.text or ""
    sk = tc.find("skipped")
    if sk is None:
        return Outcome.PASS, "", ""
    reason = sk.get("message") or ""
    if sk.get("type") == "pytest.xfail":
        return Outcome.XFAIL, reason, ""
    if "tsm.not_run" in tprops:
        return Outcome.NOT_RUN, reason, ""
    return next((o for pre, o in _SKIP_PREFIXES if reason.startswith(pre)), Outcome.SKIP), reason, ""


def _from_junit(path: str, data: bytes) -> Run:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ResultsError(f"{path}: not valid XML ({e})") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ResultsError(f"{path}: not a JUnit file (root element <{root.tag}>)")
    props: dict[str, str] = {}
    checks = []
    for sprops, cid, tc in testcases(root):
        for k, v in sprops.items():
            props.setdefault(k, v)
        outcome, reason, text = case_outcome(tc)
        try:
            duration = float(tc.get("time") or 0.0)
        except ValueError:
            duration = 0.0
        cls = tc.get("classname") or ""
        area = cid.split(".")[0] if "." in cid else (cls.rsplit(".", 1)[-1] or "tests")
        first = (reason or text).strip().splitlines()[0] if (reason or text).strip() else ""
        checks.append(CheckResult(id=cid, area=area, outcome=outcome, duration=duration, reason=first,
                                  text=text[:EVIDENCE_MAX] if not FACES[outcome].ok else ""))
    fails = any(c.failed for c in checks)
    return Run(source=path, kind="junit", label=os.path.basename(path), verdict="fail" if fails else "pass",
               environment={}, checks=tuple(checks), properties=props)
