"""`compare OLD NEW` (results/compare.py, docs/results.md): every list, the exit status rule, JUnit
against a bundle, bad input.  In-process: Runs built directly, bundles and JUnit files in tmp_path."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tsm_conformance.outcome import Outcome
from tsm_conformance.results.compare import compare, format_text, main, to_json
from tsm_conformance.results.model import CheckResult, Run

FORMAT = "tsm-conformance-results/1"


def run(label: str, *checks: tuple[Any, ...], **kw: Any) -> Run:
    """A Run of (id, outcome value[, seconds]) checks."""
    cs = tuple(CheckResult(id=c[0], area=c[0].split(".")[0], outcome=Outcome(c[1]),
                           duration=float(c[2]) if len(c) > 2 else 0.0, reason=f"{c[0]}: why {c[1]}")
               for c in checks)
    return Run(source=label, kind=kw.pop("kind", "bundle"), label=label, checks=cs, **kw)


def ids(entries: list[Any]) -> list[str]:
    return [e.id for e in entries]


def write_bundle(d: Path, checks: list[dict[str, Any]], env: dict[str, Any] | None = None,
                 stale: list[dict[str, str]] | None = None) -> str:
    """A bundle directory as docs/results.md describes it (the parts compare reads)."""
    d.mkdir()
    (d / "results.json").write_text(json.dumps({"format": FORMAT, "command": "run", "checks": checks,
                                                 "stale_baseline": stale or []}))
    if env is not None:
        (d / "environment.json").write_text(json.dumps(env))
    return str(d)


def env(**over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "tool": {"name": "configfs-tsm-conformance", "version": "0.1.0", "git_revision": "abc123"},
        "host": {"hostname": "builder-1"},
        "target": {"kind": "emulated", "describe": "emulated sev_guest@7.0", "kernel_release": "7.0.0",
                   "provider": "sev_guest"},
        "profile": {"name": "sev_guest", "sha256": {"profiles/sev_guest.yaml": "aa" * 32}},
        "module": {"name": "sev_guest", "srcversion": "S1", "parameters": {"debug": "0", "vmpck_id": "0"}},
        "baselines": [{"path": "baselines/k.yaml", "sha256": "bb" * 32, "entries": 1}],
    }
    for path, v in over.items():
        top, key = path.split("__")
        e[top][key] = v
    return e


# ----------------------------------------------------------------------------- the lists
OLD = run("old",
          ("x.new_fail", "pass"), ("x.new_error", "pass"), ("x.known_fails", "known"), ("x.fixed", "fail"),
          ("x.fixed_xfail", "fail"), ("x.fixed_error", "error"), ("x.still", "fail"), ("x.baselined", "fail"),
          ("x.pass_known", "pass"), ("x.known_pass", "known"), ("x.skipped", "pass"), ("x.not_run", "known"),
          ("x.fail_skipped", "fail"), ("x.running", "skip-not-applicable"), ("x.same", "pass"),
          ("x.pass_xfail", "pass"), ("x.same_skip", "skip-unsupported"), ("x.gone", "pass"))
NEW = run("new",
          ("x.new_fail", "fail"), ("x.new_error", "error"), ("x.known_fails", "timeout"), ("x.fixed", "pass"),
          ("x.fixed_xfail", "xfail"), ("x.fixed_error", "pass"), ("x.still", "xpass"), ("x.baselined", "known"),
          ("x.pass_known", "known"), ("x.known_pass", "pass"), ("x.skipped", "skip-unsupported"),
          ("x.not_run", "not-run"), ("x.fail_skipped", "skip"), ("x.running", "pass"), ("x.same", "pass"),
          ("x.pass_xfail", "xfail"), ("x.same_skip", "skip-unsupported"), ("x.absent_fail", "fail"),
          ("x.absent_pass", "pass"))


def test_each_transition_lands_in_its_list() -> None:
    c = compare(OLD, NEW)
    assert ids(c.new_failures) == ["x.new_fail", "x.new_error", "x.known_fails", "x.absent_fail"]
    assert ids(c.fixed) == ["x.fixed", "x.fixed_xfail", "x.fixed_error"]
    assert [e.new for e in c.fixed] == ["pass", "xfail", "pass"]  # says which
    assert ids(c.still_failing) == ["x.still"]
    assert ids(c.newly_known) == ["x.baselined", "x.pass_known", "x.known_pass"]
    assert ids(c.newly_skipped) == ["x.skipped", "x.not_run", "x.fail_skipped"]
    assert ids(c.newly_running) == ["x.running"]
    assert ids(c.changed) == ["x.pass_xfail"]
    assert ids(c.added) == ["x.absent_fail", "x.absent_pass"]
    assert ids(c.removed) == ["x.gone"]
    assert c.shared == 17 and c.note == ""


def test_each_outcome_list_holds_a_check_once() -> None:
    c = compare(OLD, NEW)
    lists = [c.new_failures, c.fixed, c.still_failing, c.newly_known, c.newly_skipped, c.newly_running, c.changed]
    seen = [i for lst in lists for i in ids(lst)]
    assert len(seen) == len(set(seen))
    assert "x.same" not in seen and "x.same_skip" not in seen


def test_entries_carry_outcomes_and_the_new_reason() -> None:
    c = compare(OLD, NEW)
    e = c.new_failures[0]
    assert (e.id, e.old, e.new, e.reason) == ("x.new_fail", "pass", "fail", "x.new_fail: why fail")
    absent = c.new_failures[-1]
    assert (absent.old, absent.new) == (None, "fail")
    assert (c.removed[0].old, c.removed[0].new, c.removed[0].reason) == ("pass", None, "")


@pytest.mark.parametrize(("old", "new", "status"), [
    ("pass", "fail", 1), ("pass", "error", 1), ("pass", "timeout", 1), ("pass", "xpass", 1),
    ("skip-not-applicable", "fail", 1), ("known", "fail", 1),
    ("fail", "fail", 0), ("pass", "known", 0), ("fail", "known", 0), ("pass", "xfail", 0),
    ("pass", "skip", 0), ("fail", "pass", 0),
])
def test_exit_status_is_1_only_for_a_new_failure(old: str, new: str, status: int) -> None:
    assert compare(run("o", ("a.b", old)), run("n", ("a.b", new))).exit_status == status


def test_a_check_absent_from_old_that_fails_is_new() -> None:
    c = compare(run("o", ("a.b", "pass")), run("n", ("a.b", "pass"), ("a.c", "error")))
    assert ids(c.new_failures) == ["a.c"] and c.exit_status == 1


def test_a_check_removed_while_failing_is_no_new_failure() -> None:
    c = compare(run("o", ("a.b", "pass"), ("a.c", "fail")), run("n", ("a.b", "pass")))
    assert ids(c.removed) == ["a.c"] and c.exit_status == 0


# ----------------------------------------------------------------------------- timing
def test_slower_and_faster() -> None:
    old = run("o", ("t.slow", "pass", 1.0), ("t.fast", "pass", 3.0), ("t.noise", "pass", 0.01),
              ("t.little", "pass", 1.0), ("t.skip", "pass", 1.0), ("t.same", "pass", 2.0))
    new = run("n", ("t.slow", "fail", 2.0), ("t.fast", "pass", 1.0), ("t.noise", "pass", 0.4),
              ("t.little", "pass", 1.4), ("t.skip", "skip", 9.0), ("t.same", "pass", 2.0))
    c = compare(old, new)
    assert ids(c.slower) == ["t.slow"] and ids(c.faster) == ["t.fast"]
    assert (c.slower[0].old_seconds, c.slower[0].new_seconds) == (1.0, 2.0)
    # t.noise is 40 times slower but by under min_seconds; t.little is 0.4 s but 40 % slower
    c = compare(old, new, threshold=0.3, min_seconds=0.3)
    assert ids(c.slower) == ["t.slow", "t.noise", "t.little"]
    c = compare(old, new, threshold=0.0, min_seconds=0.0)
    assert "t.same" not in ids(c.slower) + ids(c.faster)


def test_durations_that_are_no_measurement_are_ignored() -> None:
    old = run("o", ("t.a", "pass", float("inf")), ("t.b", "pass", -5.0), ("t.c", "pass", float("nan")))
    new = run("n", ("t.a", "pass", 1.0), ("t.b", "pass", 1.0), ("t.c", "pass", 9.0))
    c = compare(old, new, threshold=0, min_seconds=0)
    assert c.slower == [] and c.faster == []


@pytest.mark.parametrize("bad", [{"threshold": float("nan")}, {"threshold": -0.1}, {"min_seconds": float("inf")},
                                 {"min_seconds": -1.0}])
def test_compare_refuses_bad_thresholds(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        compare(OLD, NEW, **bad)


# ----------------------------------------------------------------------------- environment, baselines
def test_environment_differences_among_the_keys_that_matter(tmp_path: Path) -> None:
    checks = [{"id": "a.b", "outcome": "pass", "duration": 0.1}]
    a = write_bundle(tmp_path / "a", checks, env())
    new_env = env(tool__version="0.2.0", module__parameters={"debug": "1", "vmpck_id": "0"},
                  host__hostname="builder-2", target__provider="sev_guest")
    del new_env["module"]["srcversion"]
    b = write_bundle(tmp_path / "b", checks, new_env)
    out = io.StringIO()
    assert main(a, b, out=out) == 0
    text = out.getvalue()
    assert "  tool.version: 0.1.0 -> 0.2.0\n" in text
    assert "  module.parameters[debug]: 0 -> 1\n" in text
    assert "  module.srcversion: S1 -> (absent)\n" in text
    assert "hostname" not in text and "vmpck_id" not in text and "target.provider" not in text
    assert "OLD a (bundle; kernel 7.0.0, provider sev_guest" in text


def test_no_environment_differences_between_identical_bundles(tmp_path: Path) -> None:
    checks = [{"id": "a.b", "outcome": "pass"}]
    a, b = write_bundle(tmp_path / "a", checks, env()), write_bundle(tmp_path / "b", checks, env())
    c = json.loads(_json_of(a, b))
    assert c["environment"] == [] and c["exit_status"] == 0


def test_baselines_and_stale_entries(tmp_path: Path) -> None:
    checks = [{"id": "a.b", "outcome": "pass"}]
    a = write_bundle(tmp_path / "a", checks, env())
    e = env()
    e["baselines"] = [{"path": "baselines/k.yaml", "sha256": "cc" * 32, "entries": 2}]
    stale = [{"check": "a.b", "where": "baselines/k.yaml:3", "reason": "fixed upstream"}]
    b = write_bundle(tmp_path / "b", checks, e, stale)
    out = io.StringIO()
    assert main(a, b, out=out) == 0
    text = out.getvalue()
    assert "baselines: baselines/k.yaml (bbbbbbbbbbbb) -> baselines/k.yaml (cccccccccccc)" in text
    assert "STALE BASELINE ENTRIES in NEW (1)\n  a.b  baselines/k.yaml:3  fixed upstream\n" in text
    assert text.rstrip().splitlines()[-1] == (
        "compare: 0 new failure(s), 0 fixed, 1 environment difference(s), 1 stale baseline entry")


# ----------------------------------------------------------------------------- kinds of input
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="tsm-conformance" tests="3">
<properties><property name="tsm.suite_version" value="0.1.0"/><property name="tsm.provider" value="sev_guest"/>
<property name="tsm.kernel_release" value="7.1.0"/></properties>
<testcase classname="tsm.sev_guest.inblob" name="inblob.oversize.efbig" time="0.001">
  <failure message="inblob.oversize.efbig: a write past the limit fails EFBIG">details</failure></testcase>
<testcase classname="tsm.sev_guest.gen" name="gen.fresh.initial" time="0.000"/>
<testcase classname="tsm.sev_guest.provider" name="provider.lock.global" time="0.000">
  <skipped type="pytest.skip" message="known: configfs race"/></testcase>
</testsuite></testsuites>
"""


def test_junit_against_a_bundle_by_check_id(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "nightly", [
        {"id": "inblob.oversize.efbig", "outcome": "pass", "duration": 0.001},
        {"id": "gen.fresh.initial", "outcome": "pass"},
        {"id": "provider.lock.global", "outcome": "fail", "reason": "provider.lock.global: race"}], env())
    junit = tmp_path / "now.xml"
    junit.write_text(JUNIT)
    out = io.StringIO()
    assert main(bundle, str(junit), as_json=True, out=out) == 1
    c = json.loads(out.getvalue())
    assert [e["id"] for e in c["new_failures"]] == ["inblob.oversize.efbig"]
    assert [(e["id"], e["old"], e["new"]) for e in c["newly_known"]] == [("provider.lock.global", "fail", "known")]
    assert c["shared"] == 3 and c["added"] == [] and c["removed"] == []
    # a JUnit file says only some of the environment: those are compared, the rest is not "absent"
    assert c["environment"] == [{"key": "target.kernel_release", "old": "7.0.0", "new": "7.1.0"}]
    assert (c["new"]["kind"], c["new"]["kernel"], c["new"]["provider"]) == ("junit", "7.1.0", "sev_guest")
    # the results.json path names the same bundle
    assert main(str(tmp_path / "nightly" / "results.json"), bundle, out=io.StringIO()) == 0


def test_no_shared_check_id_is_explained_and_exit_follows_the_rule() -> None:
    c = compare(run("o", ("a.b", "pass")), run("n", ("test_x.test_y", "fail")))
    assert c.shared == 0 and "share no check id" in c.note and c.exit_status == 1
    text = format_text(c)
    assert [ln for ln in text.splitlines() if ln.startswith("note: ")] == [f"note: {c.note}"]
    assert compare(run("o", ("a.b", "pass")), run("n", ("c.d", "pass"))).exit_status == 0


# ----------------------------------------------------------------------------- the report
def test_text_report_order_and_last_line() -> None:
    text = format_text(compare(OLD, NEW))
    heads = [m.group(1) for m in re.finditer(r"^([A-Z][A-Z ]+) \(", text, re.M)]
    assert heads[0] == "NEW FAILURES"
    assert heads == ["NEW FAILURES", "FIXED", "STILL FAILING", "NEWLY KNOWN", "NEWLY SKIPPED", "NEWLY RUNNING",
                     "OTHER OUTCOME CHANGES", "ADDED", "REMOVED"]
    assert "  !! x.new_error  pass -> error\n      x.new_error: why error\n" in text
    assert "  x.fixed_xfail  fail -> xfail\n" in text
    assert text.splitlines()[0].startswith("OLD old (bundle; kernel ?, provider ?; 18 checks)")
    assert text.splitlines()[-1] == ("compare: 4 new failure(s), 3 fixed, 1 still failing, 3 newly known, "
                                     "3 newly skipped, 1 newly running, 1 other change(s), 2 added, 1 removed")


def test_nothing_new_says_so() -> None:
    same = run("a", ("a.b", "pass", 0.1), ("a.c", "skip"))
    c = compare(same, same)
    assert c.exit_status == 0
    assert format_text(c).splitlines()[-1] == "compare: 0 new failure(s), 0 fixed"
    assert "NEW FAILURES" not in format_text(c)


def test_control_characters_in_a_reason_do_not_reach_the_terminal() -> None:
    new = Run(source="n", kind="junit", label="n\x1b[2J", checks=(
        CheckResult("a.b", "a", Outcome.FAIL, reason="boom \x1b]0;owned\x07 \r\nmore"),))
    text = format_text(compare(run("o", ("a.b", "pass")), new))
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "boom ]0;owned more" in text


def test_json_document() -> None:
    d = json.loads(to_json(compare(OLD, NEW)))
    assert d["format"] == "tsm-conformance-compare/1" and d["exit_status"] == 1
    assert d["counts"]["new_failures"] == 4 and d["counts"]["removed"] == 1
    assert d["new_failures"][0] == {"id": "x.new_fail", "old": "pass", "new": "fail", "reason": "x.new_fail: why fail",
                                    "old_seconds": None, "new_seconds": None}
    assert (d["threshold"], d["min_seconds"]) == (0.5, 0.5)


# ----------------------------------------------------------------------------- bad input
def _json_of(a: str, b: str) -> str:
    out = io.StringIO()
    main(a, b, as_json=True, out=out)
    return out.getvalue()


def _bad_inputs(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "notjson.json").write_text("{ not json")
    (tmp_path / "wrong.json").write_text(json.dumps({"format": "something-else"}))
    (tmp_path / "checks.json").write_text(json.dumps({"format": FORMAT, "checks": 5}))
    (tmp_path / "text.txt").write_text("hello\n")
    (tmp_path / "emptydir").mkdir()
    return {name: str(tmp_path / name) for name in ("missing.xml", "notjson.json", "wrong.json", "checks.json",
                                                    "text.txt", "emptydir")}


@pytest.mark.parametrize("which", ["missing.xml", "notjson.json", "wrong.json", "checks.json", "text.txt", "emptydir"])
@pytest.mark.parametrize("side", ["old", "new"])
def test_bad_input_is_one_line_and_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str,
                                     side: str) -> None:
    good = tmp_path / "good.xml"
    good.write_text(JUNIT)
    bad = _bad_inputs(tmp_path)[which]
    args = (bad, str(good)) if side == "old" else (str(good), bad)
    assert main(*args) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.startswith(f"tsm-conformance: {bad}") and cap.err.count("\n") == 1, cap.err


@pytest.mark.parametrize(("kw", "opt"), [({"threshold": float("nan")}, "--threshold"),
                                         ({"threshold": -1.0}, "--threshold"),
                                         ({"min_seconds": float("inf")}, "--min-seconds"),
                                         ({"min_seconds": -0.5}, "--min-seconds")])
def test_bad_option_is_one_line_and_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], kw: dict[str, float],
                                      opt: str) -> None:
    good = tmp_path / "good.xml"
    good.write_text(JUNIT)
    assert main(str(good), str(good), **kw) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.count("\n") == 1
    assert cap.err.startswith(f"tsm-conformance: compare: {opt} must be a finite number >= 0")


def test_main_prints_to_stdout_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.xml"
    good.write_text(JUNIT)
    assert main(str(good), str(good)) == 0  # its failure is not new
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out.splitlines()[-1] == "compare: 0 new failure(s), 0 fixed, 1 still failing"


def test_another_tools_junit_has_no_environment_to_differ(tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_text('<testsuite name="x"><testcase classname="pkg.mod" name="test_a" time="0.1"/></testsuite>')
    bundle = write_bundle(tmp_path / "b", [{"id": "pkg.mod.test_a", "outcome": "pass"}], env())
    d = json.loads(_json_of(str(other), bundle))
    assert d["environment"] == [] and d["shared"] == 1 and d["old"]["kernel"] == "?"
