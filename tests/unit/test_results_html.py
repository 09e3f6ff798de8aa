"""The HTML report (results/html.py, docs/results.md): one self-contained, escaped, well-formed page;
each failing check's evidence inside a <details>; with several runs a checks x runs matrix marking
what changed since the first; ``write_report``'s one-line errors, and nothing written on them."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tsm_conformance.results import html
from tsm_conformance.results.model import Run, load_run

# ----------------------------------------------------------------------------- bundles
OVERSIZE = "inblob.oversize.efbig"
PRIV_MAX = "privlevel.range.max_enforced"
RACE = "provider.read.size_then_fill_integrity"
EVIL = "<script>alert(1)</script>"
ISSUE = "https://bugzilla.kernel.org/show_bug.cgi?id=218000"

CLEAN_CHECKS: list[dict[str, Any]] = [
    {"id": "lifecycle.mkdir.creates_item", "outcome": "pass", "duration": 0.002},
    {"id": OVERSIZE, "outcome": "pass", "duration": 0.001},
    {"id": "inblob.pwrite.zero_fills_gap", "outcome": "pass", "duration": 0.001},
    {"id": PRIV_MAX, "outcome": "pass", "duration": 0.003},
    {"id": "privlevel.range.floor_enforced", "outcome": "skip-not-applicable",
     "reason": "not-applicable: the provider's privlevel_floor is 0"},
    {"id": "host.quote_failed.reported", "outcome": "skip-unsupported", "reason": "unsupported: not a TDX host"},
]

ENVIRONMENT: dict[str, Any] = {
    "tool": {"name": "tsm-conformance", "version": "0.1.0", "git_revision": "b15b138", "git_dirty": False},
    "python": {"version": "3.11.9", "implementation": "CPython"},
    "host": {"kernel_release": "6.12.0", "machine": {"vendor": "QEMU", "cpu": "AMD EPYC"}, "hostname": "ci-7"},
    "target": {"kind": "emulated", "describe": "emulated sev_guest", "kernel_release": "6.13.0-tsm",
               "provider": "sev_guest", "attributes": ["inblob", "outblob", "auxblob", "privlevel"]},
    "kernel_config": {"CONFIG_TSM_REPORTS": "y", "CONFIG_SEV_GUEST": "m"},
    "module": {"name": "sev_guest", "parameters": {"vmpck_id": "-1"}},
    "profile": {"name": "sev_guest", "files": [{"path": "profiles/sev_guest.yaml", "sha256": "ab" * 32}]},
    "baselines": [{"path": "baselines/known-kernel-bugs.yaml", "sha256": "cd" * 32, "entries": 3}],
    "run": {"command": ["tsm-conformance", "run", "--emulate", "sev_guest"], "seed": 1234,
            "started": "2026-12-07T04:22:55Z", "finished": "2026-12-07T04:22:59Z", "exit_status": 0},
    "lab": {"rack": "B4", "notes": "an unknown key, shown as it is"},
}


def make_bundle(where: Path, checks: list[dict[str, Any]], *, environment: dict[str, Any] | None = None,
                verdict: str | None = None, stale: list[dict[str, str]] | None = None) -> str:
    """A bundle directory as docs/results.md describes it: results.json, environment.json and each
    check's evidence.  A check's "text" is its evidence/<id>.txt; its "members" ({path: text}) its files."""
    where.mkdir(parents=True)
    entries = []
    for c in checks:
        entry = {k: v for k, v in c.items() if k not in ("text", "members")}
        entry.setdefault("area", c["id"].split(".")[0])
        if "text" in c:
            entry["evidence"] = f"evidence/{c['id']}.txt"
            (where / "evidence").mkdir(exist_ok=True)
            (where / entry["evidence"]).write_text(c["text"])
        for rel, text in c.get("members", {}).items():
            (where / rel).parent.mkdir(parents=True, exist_ok=True)
            (where / rel).write_text(text)
        if c.get("members"):
            entry["files"] = list(c["members"])
        entries.append(entry)
    failed = any(c["outcome"] in ("fail", "timeout", "error", "xpass") for c in checks)
    results = {"format": "tsm-conformance-results/1", "command": "run",
               "verdict": verdict or ("fail" if failed else "pass"), "exit_status": 1 if failed else 0,
               "started": "2026-12-07T04:22:55Z", "finished": "2026-12-07T04:22:59Z",
               "checks": entries, "stale_baseline": stale or []}
    (where / "results.json").write_text(json.dumps(results))
    if environment is not None:
        (where / "environment.json").write_text(json.dumps(environment))
    return str(where)


def evidence_text(check_id: str, observed: str) -> str:
    """An evidence file as the suite writes one (report_text.render_failure)."""
    return (f"{check_id}: the rule\n  expected : EFBIG\n  observed : {observed}\n"
            f"  profile  : profiles/sev_guest.yaml:41 inblob.max\n  target   : emulated sev_guest\n"
            f"Operation sequence that reproduces it (r0, r1: fresh report items; fd0, fd1: files ...):\n"
            f"    mkdir r0\n    open r0/inblob O_WRONLY -> fd0\n    write fd0 4097 bytes -> 4097\n")


def with_outcome(checks: list[dict[str, Any]], check_id: str, **change: Any) -> list[dict[str, Any]]:
    return [{**c, **change} if c["id"] == check_id else c for c in checks]


def failing_run(tmp_path: Path, name: str = "quirk-a") -> Run:
    checks = with_outcome(CLEAN_CHECKS, OVERSIZE, outcome="fail", reason=f"{OVERSIZE}: a write past the limit fails",
                          text=evidence_text(OVERSIZE, "write returned 4097 (no error)"),
                          members={f"sequences/{OVERSIZE}-1a2b3c4d.tsmseq": "# tsmseq 1\nmkdir r0\n",
                                   "kernel.log": "[  12.5] sev-guest: report request rejected\n"})
    return load_run(make_bundle(tmp_path / name, checks, environment=ENVIRONMENT))


# ----------------------------------------------------------------------------- parsing the page
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class El:
    tag: str
    attrs: dict[str, str]
    children: list[El | str] = field(default_factory=list)

    def iter(self, tag: str | None = None, cls: str | None = None) -> list[El]:
        out = []
        for ch in self.children:
            if isinstance(ch, El):
                if (tag is None or ch.tag == tag) and (cls is None or cls in ch.classes):
                    out.append(ch)
                out += ch.iter(tag, cls)
        return out

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def text(self) -> str:
        return "".join(ch if isinstance(ch, str) else ch.text() for ch in self.children)


class Tree(HTMLParser):
    """A strict tree of the page: every element the template opens, it closes in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = El("#document", {})
        self.stack = [self.root]
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = El(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(el)
        if tag not in VOID:
            self.stack.append(el)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(El(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> El:
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [tree.root], [e.tag for e in tree.stack]
    assert tree.doctype.lower() == "doctype html"
    return tree.root


def by_id(doc: El) -> dict[str, El]:
    return {e.attrs["id"]: e for e in doc.iter() if "id" in e.attrs}


def details_text(doc: El) -> str:
    return "\n".join(d.text() for d in doc.iter("details"))


def assert_self_contained(page: str, doc: El, allowed_links: tuple[str, ...] = ()) -> None:
    assert len(doc.iter("html")) == 1 and doc.iter("html")[0].attrs.get("lang") == "en"
    assert [m.attrs for m in doc.iter("meta") if "charset" in m.attrs] == [{"charset": "utf-8"}]
    assert len(doc.iter("title")) == 1 and doc.iter("title")[0].text().strip()
    assert not doc.iter("script") and not doc.iter("link") and not doc.iter("iframe") and not doc.iter("img")
    assert "@import" not in page and "url(" not in page
    for el in doc.iter():
        assert "src" not in el.attrs, el
        href = el.attrs.get("href")
        if href is not None:
            assert href.startswith("#") and href[1:] in by_id(doc) or href in allowed_links, href
    links = re.findall(r"https?://[^\s\"'<>]+", page)
    assert set(links) <= set(allowed_links), links


# ----------------------------------------------------------------------------- one run
def test_a_clean_run_is_one_self_contained_page(tmp_path: Path) -> None:
    run = load_run(make_bundle(tmp_path / "clean", CLEAN_CHECKS, environment=ENVIRONMENT))
    page = html.render([run])
    doc = parse(page)
    assert_self_contained(page, doc)
    assert "verdict-good" in doc.iter("p", "headline")[0].iter("span")[0].classes
    assert doc.iter("p", "headline")[0].text().split() == ["Verdict:", "pass", "(exit", "status", "0)"]
    assert not doc.iter("details")  # nothing failed, nothing to expand
    assert not doc.iter("table", "matrix")
    # totals: one header per column, in outcome.COLUMNS' order
    totals = doc.iter("table", "totals")[0]
    assert [th.text() for th in totals.iter("th")] == ["pass", "fail", "xfail", "xpass", "skip", "error"]
    assert [td.text() for td in totals.iter("td")] == ["4", "0", "0", "0", "2", "0"]
    # every table header says what it heads
    assert all(th.attrs.get("scope") in ("col", "row", "rowgroup") for th in doc.iter("th"))


def test_checks_are_grouped_by_area_in_the_runs_order(tmp_path: Path) -> None:
    run = load_run(make_bundle(tmp_path / "clean", CLEAN_CHECKS, environment=ENVIRONMENT))
    doc = parse(html.render([run]))
    section = by_id(doc)["run-1"]
    assert [h.text() for h in section.iter("h4", "area")] == ["lifecycle", "inblob", "privlevel", "host"]
    rows = section.iter("tr", "check")
    assert [r.iter("th")[0].text() for r in rows] == [c["id"] for c in CLEAN_CHECKS]
    # the precise outcome beside its column; the reason; the duration
    cells = {r.iter("th")[0].text(): [td.text() for td in r.iter("td")] for r in rows}
    assert cells["privlevel.range.floor_enforced"] == [
        "skip (skip-not-applicable)", "0.000", "not-applicable: the provider's privlevel_floor is 0"]
    assert cells[PRIV_MAX] == ["pass", "0.003", ""]
    assert rows[0].attrs["id"] == "run-1-check-lifecycle.mkdir.creates_item"


def test_environment_sections_are_tables_in_the_documented_order(tmp_path: Path) -> None:
    run = load_run(make_bundle(tmp_path / "clean", CLEAN_CHECKS, environment=ENVIRONMENT))
    doc = parse(html.render([run]))
    parts = by_id(doc)["run-1"].iter("section", "env-part")
    assert [p.iter("h4")[0].text() for p in parts] == [
        "tool", "python", "host", "target", "kernel_config", "module", "profile", "baselines", "run", "lab"]
    part = {p.iter("h4")[0].text(): p for p in parts}
    host = {r.iter("th")[0].text(): r.iter("td")[0] for r in part["host"].iter("table")[0].iter("tr")
            if r in part["host"].iter("table")[0].iter("tbody")[0].children}
    assert host["kernel_release"].text() == "6.12.0"
    assert host["machine"].iter("table", "kv")  # a nested dict is a nested table
    assert "inblob, outblob, auxblob, privlevel" in part["target"].text()
    assert "sev_guest.yaml" in part["profile"].text() and "ab" * 32 in part["profile"].text()
    assert "an unknown key, shown as it is" in part["lab"].text()
    assert "no" in part["tool"].text()  # git_dirty: false
    assert "tsm-conformance run --emulate sev_guest" in part["run"].text()  # a command line, as typed


def test_deep_environment_nesting_is_shown_as_text(tmp_path: Path) -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for i in range(200):
        deep = {f"k{i}": deep}
    run = load_run(make_bundle(tmp_path / "deep", CLEAN_CHECKS, environment={"lab": deep}))
    doc = parse(html.render([run]))
    lab = by_id(doc)["run-1"].iter("section", "env-part")[0]
    assert len(lab.iter("table")) == html.ENV_DEPTH - 1
    assert '"leaf": 1' in lab.text()


def test_failing_checks_evidence_and_files_are_inside_details(tmp_path: Path) -> None:
    run = failing_run(tmp_path)
    page = html.render([run])
    doc = parse(page)
    assert_self_contained(page, doc)
    assert doc.iter("p", "headline")[0].iter("span")[0].classes == ["verdict", "verdict-bad"]
    details = doc.iter("details")
    assert len(details) == 1
    row = by_id(doc)[f"run-1-check-{OVERSIZE}"]
    assert row.iter("td")[0].text() == "fail"
    text = details_text(doc)
    assert evidence_text(OVERSIZE, "write returned 4097 (no error)") in text
    assert "# tsmseq 1\nmkdir r0\n" in text and "sev-guest: report request rejected" in text
    titles = [h.text() for h in details[0].iter("h5")]
    assert titles == [f"evidence/{OVERSIZE}.txt", f"sequences/{OVERSIZE}-1a2b3c4d.tsmseq", "kernel.log"]
    assert len(details[0].iter("pre")) == 3


def test_evidence_and_reasons_are_escaped(tmp_path: Path) -> None:
    checks = with_outcome(CLEAN_CHECKS, PRIV_MAX, outcome="fail", reason=f"{PRIV_MAX}: <b>4</b> & \"'",
                          text=f"{PRIV_MAX}: observed {EVIL}\nnul\x00 esc\x1b[0m\n",
                          members={"kernel.log": f"</pre></details>{EVIL}"})
    run = load_run(make_bundle(tmp_path / "evil", checks, environment={**ENVIRONMENT, EVIL: EVIL}))
    page = html.render([run])
    doc = parse(page)
    assert_self_contained(page, doc)
    assert not doc.iter("script") and not doc.iter("b")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and EVIL not in page
    text = details_text(doc)
    assert f"observed {EVIL}" in text and f"</pre></details>{EVIL}" in text
    assert "nul\u2400 esc\u241b[0m" in text  # control characters shown, not passed through
    assert "\x00" not in page and "\x1b" not in page
    assert by_id(doc)[f"run-1-check-{PRIV_MAX}"].iter("td")[2].text() == f"{PRIV_MAX}: <b>4</b> & \"'"


def test_known_failure_shows_its_baseline_entry_and_only_http_links_become_links(tmp_path: Path) -> None:
    checks = [*CLEAN_CHECKS,
              {"id": RACE, "area": "provider", "outcome": "known", "duration": 0.2,
               "reason": "known: configfs size-then-fill read race", "text": f"{RACE}: short read\n",
               "known": {"where": "baselines/known-kernel-bugs.yaml:12", "reason": "configfs race", "link": ISSUE}},
              {"id": "provider.read.eof", "area": "provider", "outcome": "known",
               "known": {"where": "b.yaml:3", "reason": "r", "link": "javascript:alert(1)"}}]
    stale = [{"check": "gen.wrap_guard.ebusy", "where": "baselines/known-kernel-bugs.yaml:30",
              "reason": "fixed in 6.14?"}]
    run = load_run(make_bundle(tmp_path / "known", checks, environment=ENVIRONMENT, stale=stale))
    page = html.render([run])
    doc = parse(page)
    assert_self_contained(page, doc, allowed_links=(ISSUE,))
    assert "verdict-good" in doc.iter("p", "headline")[0].iter("span")[0].classes  # known does not fail a run
    details = doc.iter("details")
    assert len(details) == 2
    race, eof = details
    assert [a.attrs["href"] for a in race.iter("a")] == [ISSUE]
    assert "baselines/known-kernel-bugs.yaml:12" in race.text() and f"{RACE}: short read" in race.text()
    assert not eof.iter("a") and "javascript:alert(1)" in eof.text()
    assert "no evidence file was recorded" in eof.text()
    assert by_id(doc)[f"run-1-check-{RACE}"].iter("td")[0].text() == "skip (known)"
    warning = by_id(doc)["run-1"].iter("div", "warn")[0]
    assert "gen.wrap_guard.ebusy" in warning.text() and "baselines/known-kernel-bugs.yaml:30" in warning.text()


def test_a_junit_only_run_renders_with_its_suite_properties(tmp_path: Path) -> None:
    junit = tmp_path / "tsm.xml"
    junit.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="tsm-conformance" tests="3">'
        '<properties><property name="tsm.target" value="emulated sev_guest+inblob-truncate"/>'
        '<property name="tsm.suite_version" value="0.1.0"/><property name="tsm.provider" value="sev_guest"/>'
        '<property name="tsm.kernel_release" value="7.0.0-tsm-emulated"/></properties>'
        f'<testcase classname="tsm.inblob" name="{OVERSIZE}" time="0.001">'
        f'<failure message="{OVERSIZE}: a write past the limit fails EFBIG">long text</failure></testcase>'
        f'<testcase classname="tsm.privlevel" name="{PRIV_MAX}" time="0.002"/>'
        '<testcase classname="tsm.privlevel" name="privlevel.range.floor_enforced" time="0">'
        '<skipped type="pytest.skip" message="not-applicable: floor is 0"/></testcase>'
        '</testsuite></testsuites>')
    run = load_run(str(junit))
    page = html.render([run])
    doc = parse(page)
    assert_self_contained(page, doc)
    section = by_id(doc)["run-1"]
    assert "JUnit suite properties" in [h.text() for h in section.iter("h3")]
    assert "emulated sev_guest+inblob-truncate" in section.text()
    assert by_id(doc)[f"run-1-check-{OVERSIZE}"].iter("td")[0].text() == "fail"
    assert "a JUnit file carries no evidence" in details_text(doc)
    # a matrix column is headed by its suite properties' target
    assert html.target_summary(run) == ("7.0.0-tsm-emulated", "sev_guest", "emulated sev_guest+inblob-truncate")


def test_evidence_beyond_the_reports_budget_is_cut_with_a_note(tmp_path: Path) -> None:
    checks = with_outcome(CLEAN_CHECKS, OVERSIZE, outcome="fail", text="A" * 300)
    checks = with_outcome(checks, PRIV_MAX, outcome="fail", text="B" * 300)
    run = load_run(make_bundle(tmp_path / "big", checks))
    doc = parse(html.render([run], evidence_total=500))
    first, second = doc.iter("details")
    assert "A" * 300 in first.text() and not first.iter("p", "note")
    assert "B" * 200 in second.text() and "B" * 201 not in second.text()
    assert "truncated" in second.iter("p", "note")[0].text()
    assert "Evidence truncated" in doc.iter("p", "notice")[0].text()
    # once used up, further evidence is not even read
    assert html.Budget(0).take("x", lambda: pytest.fail("read past the budget")).note.startswith("not embedded")
    more = load_run(make_bundle(tmp_path / "more", with_outcome(CLEAN_CHECKS, OVERSIZE, outcome="fail", text="C" * 9)))
    (details,) = parse(html.render([more], evidence_total=0)).iter("details")
    assert not details.iter("pre") and "C" * 9 not in details.text()
    assert details.iter("p", "note")[0].text().startswith("not embedded: the report's 0 characters of evidence")


# ----------------------------------------------------------------------------- several runs
def three_runs(tmp_path: Path) -> list[Run]:
    clean = load_run(make_bundle(tmp_path / "clean", CLEAN_CHECKS, environment=ENVIRONMENT))
    env_b = {**ENVIRONMENT, "target": {**ENVIRONMENT["target"], "kernel_release": "6.14.0-rc1"}}
    b_checks = with_outcome(CLEAN_CHECKS, PRIV_MAX, outcome="fail", reason="privlevel 4 accepted",
                            text=evidence_text(PRIV_MAX, "write '4' returned 2 (no error)"))
    b_checks = with_outcome(b_checks, "privlevel.range.floor_enforced", outcome="skip-unsupported")
    b_checks = [c for c in b_checks if c["id"] != "host.quote_failed.reported"]
    b_checks.append({"id": "cleanup.items.none_left", "outcome": "pass"})
    quirk_b = load_run(make_bundle(tmp_path / "quirk-b", b_checks, environment=env_b))
    return [clean, failing_run(tmp_path), quirk_b]


def test_several_runs_give_a_matrix_of_checks_by_runs(tmp_path: Path) -> None:
    runs = three_runs(tmp_path)
    page = html.render(runs)
    doc = parse(page)
    assert_self_contained(page, doc)
    matrix = doc.iter("table", "matrix")[0]
    heads = matrix.iter("thead")[0].iter("th")
    assert len(heads) == 1 + len(runs)
    assert heads[1].text().startswith("1. clean") and "6.13.0-tsm" in heads[1].text()
    assert "sev_guest" in heads[3].text() and "6.14.0-rc1" in heads[3].text()
    ids = [c["id"] for c in CLEAN_CHECKS] + ["cleanup.items.none_left"]
    rows = matrix.iter("tr", "check")
    assert sorted(r.iter("th")[0].text() for r in rows) == sorted(ids)  # one row per check
    assert all(len(r.iter("td")) == len(runs) for r in rows)  # one column per run
    assert [r.iter("th")[0].text() for r in matrix.iter("tr", "area")] == [
        "lifecycle", "inblob", "privlevel", "host", "cleanup"]
    assert [r.iter("th")[0].text() for r in rows][-1] == "cleanup.items.none_left"


def test_matrix_marks_what_changed_since_the_first_run(tmp_path: Path) -> None:
    doc = parse(html.render(three_runs(tmp_path)))
    matrix = doc.iter("table", "matrix")[0]
    cells = {r.iter("th")[0].text(): r.iter("td") for r in matrix.iter("tr", "check")}
    changed = {(check, n) for check, tds in cells.items() for n, td in enumerate(tds, 1) if "changed" in td.classes}
    assert changed == {(OVERSIZE, 2), (PRIV_MAX, 3), ("privlevel.range.floor_enforced", 3),
                       ("cleanup.items.none_left", 3), ("host.quote_failed.reported", 3)}
    for check, n in changed:
        td = cells[check][n - 1]
        assert td.attrs["title"].startswith(f"changed: {check}: ")
        assert td.iter("span", "marker")[0].text() == html.CHANGED and "(changed)" in td.text()
    assert cells[OVERSIZE][1].iter("a")[0].text() == "fail" and "st-fail" in cells[OVERSIZE][1].classes
    assert cells[PRIV_MAX][2].attrs["title"] == f"changed: {PRIV_MAX}: fail here, pass in run 1 (clean)"
    assert cells[PRIV_MAX][1].attrs["title"] == f"{PRIV_MAX}: pass" and "changed" not in cells[PRIV_MAX][1].classes
    assert cells["privlevel.range.floor_enforced"][2].text().startswith("skip-unsupported")
    # absent: a dash, no link; gone since run 1 is a change, as is a check run 1 does not have
    gone = cells["host.quote_failed.reported"][2]
    assert gone.text().startswith("—") and not gone.iter("a") and "absent" in gone.classes
    assert gone.attrs["title"] == "changed: host.quote_failed.reported: absent here, skip-unsupported in run 1 (clean)"
    assert [td.text() for td in cells["cleanup.items.none_left"][:2]] == ["—", "—"]
    assert cells["cleanup.items.none_left"][2].attrs["title"].endswith(": pass here, absent in run 1 (clean)")
    # and the list above the matrix, each linking to its row
    changes = doc.iter("ul", "changes")[0].iter("li")
    assert [li.text() for li in changes] == [
        f"{OVERSIZE}: pass in run 1; run 2 (quirk-a): fail",
        f"{PRIV_MAX}: pass in run 1; run 3 (quirk-b): fail",
        "privlevel.range.floor_enforced: skip-not-applicable in run 1; run 3 (quirk-b): skip-unsupported",
        "host.quote_failed.reported: skip-unsupported in run 1; run 3 (quirk-b): absent",
        "cleanup.items.none_left: absent in run 1; run 3 (quirk-b): pass"]
    assert [li.iter("a")[0].attrs["href"] for li in changes][0] == f"#matrix-{OVERSIZE}"


def test_matrix_cells_link_to_the_checks_evidence(tmp_path: Path) -> None:
    runs = three_runs(tmp_path)
    doc = parse(html.render(runs))
    ids = by_id(doc)
    for a in doc.iter("table", "matrix")[0].iter("a"):
        assert a.attrs["href"][1:] in ids, a.attrs["href"]
    row = ids[f"run-3-check-{PRIV_MAX}"]
    evidence = ids["run-3"].iter("details")[0]
    assert evidence_text(PRIV_MAX, "write '4' returned 2 (no error)") in evidence.text()
    assert row.iter("td")[0].text() == "fail"
    assert evidence_text(OVERSIZE, "write returned 4097 (no error)") in ids["run-2"].iter("details")[0].text()
    assert [s.attrs["id"] for s in doc.iter("section", "run")] == ["run-1", "run-2", "run-3"]


def test_anchor_ids_are_safe_and_distinct() -> None:
    assert html.check_anchor(2, OVERSIZE) == "run-2-check-inblob.oversize.efbig"
    odd = ["tests.test_x[a b]", "tests.test_x[a_b]", "tests.test_x[a-b]", 'x"><script>', "ü"]
    anchors = [html.safe_id(i) for i in odd]
    assert len(set(anchors)) == len(odd)
    assert all(re.fullmatch(r"[A-Za-z0-9._~-]+", a) for a in anchors)


@pytest.mark.parametrize("link, href", [
    (ISSUE, ISSUE), ("http://lore.kernel.org/x", "http://lore.kernel.org/x"), ("javascript:alert(1)", ""),
    ("https://", ""), ("bugzilla 218000", ""), ("https://a.b/ c", ""), ("//evil.example/x", ""), ("", "")])
def test_only_absolute_http_links_become_links(link: str, href: str) -> None:
    assert html.http_link(link) == href


@pytest.mark.parametrize("verdict, cls", [("pass", "verdict-good"), ("fail", "verdict-bad"),
                                          ("nothing-ran", "verdict-warn"), ("interrupted", "verdict-warn"),
                                          (EVIL, "verdict-other")])
def test_each_verdict_shows_as_its_word_and_colour(tmp_path: Path, verdict: str, cls: str) -> None:
    run = load_run(make_bundle(tmp_path / "b", CLEAN_CHECKS, verdict=verdict))
    doc = parse(html.render([run]))
    badge = doc.iter("p", "headline")[0].iter("span")[0]
    assert badge.classes == ["verdict", cls] and badge.text() == verdict
    assert not doc.iter("script")


def test_no_runs_is_still_a_page() -> None:
    doc = parse(html.render([]))
    assert "No runs were given." in doc.text()


# ----------------------------------------------------------------------------- write_report
def test_write_report_writes_atomically_and_exits_0_even_for_a_failing_run(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    failing_run(tmp_path)
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    out.write_text("old")
    assert html.write_report([str(tmp_path / "quirk-a")], str(out)) == 0
    assert capsys.readouterr().err == ""
    assert os.listdir(out.parent) == ["report.html"]  # no temporary file left
    assert evidence_text(OVERSIZE, "write returned 4097 (no error)").splitlines()[1] in out.read_text()
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_report_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_bundle(tmp_path / "clean", CLEAN_CHECKS)
    assert html.write_report([str(tmp_path / "clean")], "-") == 0
    out = capsys.readouterr()
    assert out.out.startswith("<!DOCTYPE html>") and out.err == ""


@pytest.mark.parametrize("case", ["missing", "not-a-bundle", "bad-json", "one-bad-of-two"])
def test_write_report_refuses_a_bad_input_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        case: str) -> None:
    good = make_bundle(tmp_path / "clean", CLEAN_CHECKS)
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text("{not json")
    paths = {"missing": [str(tmp_path / "nope")], "not-a-bundle": [str(tmp_path / "empty")],
             "bad-json": [str(tmp_path / "bad.json")], "one-bad-of-two": [good, str(tmp_path / "nope")]}[case]
    out = tmp_path / "report.html"
    assert html.write_report(paths, str(out)) == 2
    err = capsys.readouterr()
    assert err.out == "" and err.err.startswith("tsm-conformance: ") and err.err.count("\n") == 1
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["bad.json", "clean", "empty"]


@pytest.mark.parametrize("case", ["no-directory", "a-directory", "no-paths", "too-many", "unwritable", "an-input",
                                  "in-a-bundle"])
def test_write_report_refuses_a_bad_output_or_count_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    good = make_bundle(tmp_path / "clean", CLEAN_CHECKS)
    output = str(tmp_path / "report.html")
    paths = [good]
    if case == "no-directory":
        output = str(tmp_path / "absent" / "report.html")
    elif case == "a-directory":
        output = str(tmp_path)
    elif case == "no-paths":
        paths = []
    elif case == "too-many":
        paths = [good] * (html.MAX_RUNS + 1)
    elif case == "an-input":
        output = os.path.join(good, "results.json")
        paths = [output]
    elif case == "in-a-bundle":
        output = os.path.join(good, "report.html")
    else:  # as root, a mode is no refusal: stand in for a read-only filesystem
        monkeypatch.setattr(html.os, "access", lambda path, mode: False)
    before = sorted(os.listdir(good))
    assert html.write_report(paths, output) == 2
    err = capsys.readouterr().err
    assert err.startswith("tsm-conformance: ") and err.count("\n") == 1, err
    assert sorted(os.listdir(tmp_path)) == ["clean"] and sorted(os.listdir(good)) == before


def test_write_report_accepts_max_runs(tmp_path: Path) -> None:
    good = make_bundle(tmp_path / "clean", CLEAN_CHECKS[:2])
    out = tmp_path / "r.html"
    assert html.write_report([good] * html.MAX_RUNS, str(out)) == 0
    doc = parse(out.read_text())
    assert len(doc.iter("table", "matrix")[0].iter("thead")[0].iter("th")) == html.MAX_RUNS + 1
    assert "No check changed since run 1." in doc.text() and not doc.iter("td", "changed")


def test_write_failure_leaves_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    good = make_bundle(tmp_path / "clean", CLEAN_CHECKS)

    def replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(html.os, "replace", replace)
    assert html.write_report([good], str(tmp_path / "report.html")) == 2
    err = capsys.readouterr().err
    assert err == f"tsm-conformance: {tmp_path / 'report.html'}: cannot write (No space left on device)\n"
    assert sorted(os.listdir(tmp_path)) == ["clean"]
