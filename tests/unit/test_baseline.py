"""Baselines (profile/baseline.py, docs/results.md "Known failures"): ranges, matching, and one-line
errors naming file:line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsm_conformance.checks.base import all_checks
from tsm_conformance.profile.baseline import DEFAULT, Context, in_range, load_baselines
from tsm_conformance.profile.errors import ProfileError

IDS = [c.id for c in all_checks()]


@pytest.mark.parametrize("release,spec,inside", [
    ("6.12.117+deb13-amd64", "6.12", True), ("6.13.0", "6.12", False), ("6.12", ">=6.7", True),
    ("6.18.1", ">=6.7, <6.19", True), ("6.19.0-rc1", ">=6.7, <6.19", False), ("6.6.9", ">=6.7", False),
    ("7.0.0-tsm-emulated", ">6.19", True), ("6.12.5", "==6.12", True), ("6.12.5", "!=6.12", False),
    ("unknown", ">=6.7", False),
])
def test_kernel_ranges(release: str, spec: str, inside: bool) -> None:
    assert in_range(release, spec) is inside


def write(tmp_path: Path, body: str) -> str:
    p = tmp_path / "b.yaml"
    p.write_text("schema: tsm-baseline/1\nknown_failures:\n" + body)
    return str(p)


def test_an_entry_applies_only_where_every_condition_holds(tmp_path: Path) -> None:
    b = load_baselines([write(tmp_path, "  - check: inblob.*\n    reason: r\n    link: l\n    kernels: '<6.13'\n"
                                        "    providers: [sev_guest]\n    targets: [live]\n"
                                        "    params: {vmpck_id: 1}\n")], IDS)
    ctx = Context("6.12.1", "sev_guest", "live", {"vmpck_id": "1"})
    e = b.match("inblob.oversize.efbig", ctx)
    assert e is not None and e.where.endswith("b.yaml:3") and e.reason == "r"
    for other in (Context("6.13.0", "sev_guest", "live", {"vmpck_id": "1"}),
                  Context("6.12.1", "tdx_guest", "live", {"vmpck_id": "1"}),
                  Context("6.12.1", "sev_guest", "emulated", {"vmpck_id": "1"}),
                  Context("6.12.1", "sev_guest", "live", {"vmpck_id": "0"})):
        assert b.match("inblob.oversize.efbig", other) is None
    assert b.match("privlevel.range.max_enforced", ctx) is None


def test_the_shipped_baseline_names_the_size_then_fill_race() -> None:
    b = load_baselines([DEFAULT], IDS)
    ctx = Context("6.12.118+deb12-amd64", "tsm_test", "live")
    assert b.match("provider.read.size_then_fill_integrity", ctx) is not None
    assert b.files and b.files[0][0].endswith("known-kernel-bugs.yaml") and len(b.files[0][1]) == 64
    assert load_baselines(["none"]).entries == ()


@pytest.mark.parametrize("body,where,words", [
    ("  - check: inblob.oversize.efbig\n    reason: r\n", "b.yaml:3", "missing required key 'link'"),
    ("  - check: inblob.oversize.efbig\n    reason: r\n    link: l\n    kernel: '6.12'\n", "b.yaml:6",
     "unknown key 'kernel'"),
    ("  - check: inblob.oversize.efbig\n    reason: r\n    link: l\n    kernels: 'recent'\n", "b.yaml:6",
     "does not match"),
    ("  - check: inblob.nope\n    reason: r\n    link: l\n", "b.yaml:3", "matches no check"),
    ("  - check: inblob.oversize.efbig\n    reason: r\n    link: l\n    targets: [vm]\n", "b.yaml:6", "'vm'"),
])
def test_mistakes_are_one_line_at_their_key(tmp_path: Path, body: str, where: str, words: str) -> None:
    with pytest.raises(ProfileError) as e:
        load_baselines([write(tmp_path, body)], IDS)
    text = str(e.value)
    assert "\n" not in text and where in text and words in text, text


def test_wrong_schema_missing_file_and_unknown_name(tmp_path: Path) -> None:
    p = tmp_path / "b.yaml"
    p.write_text("schema: tsm-profile/1\nknown_failures: []\n")
    with pytest.raises(ProfileError, match="unsupported schema"):
        load_baselines([str(p)])
    with pytest.raises(ProfileError, match="cannot read baseline"):
        load_baselines([str(tmp_path / "absent.yaml")])
    with pytest.raises(ProfileError, match="no baseline named 'nosuch'.*known-kernel-bugs"):
        load_baselines(["nosuch"])
    p.write_text("")
    with pytest.raises(ProfileError, match="empty baseline"):
        load_baselines([str(p)])


def test_a_hostile_baseline_is_bounded(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    p.write_text("schema: tsm-baseline/1\nknown_failures:\n" + "  - {check: a.b, reason: r, link: l}\n" * 20000)
    with pytest.raises(ProfileError) as e:
        load_baselines([str(p)])
    assert "\n" not in str(e.value)
