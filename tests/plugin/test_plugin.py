"""The pytest plugin, driven through pytester: activation, collection, outcomes, JUnit."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

P = ("-p", "tsm_conformance.plugin", "-p", "no:cacheprovider")


def test_inactive_without_tsm_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    res = pytester.runpytest(*P)
    res.assert_outcomes(passed=1)
    assert "tsm:" not in res.stdout.str()


def test_emulated_sev_guest_all_pass(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest(*P, "--tsm-emulate", "sev_guest", "--tsm-exclusive")
    outcomes = res.parseoutcomes()
    assert outcomes["passed"] >= 40 and "failed" not in outcomes
    res.stdout.fnmatch_lines(["tsm: emulated sev_guest@7.0, provider sev_guest, profile sev_guest*"])


def test_ini_key_activates(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntsm_emulate = tdx_guest\n")
    res = pytester.runpytest(*P, "--tsm-exclusive")
    assert res.parseoutcomes()["passed"] >= 30


def test_quirk_fails_with_evidence(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest(*P, "--tsm-emulate", "sev_guest+inblob-truncate", "--tsm-exclusive")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines([
        "inblob.oversize.efbig: an inblob write() that ends past the 64-byte limit fails with EFBIG",
        "  expected : write(r0/inblob, 65 bytes) -> EFBIG",
        "  observed : write(r0/inblob, 65 bytes) -> 64",
        "  profile  : *core.yaml:* errors.inblob_oversize",
        "  target   : emulated sev_guest@7.0+inblob-truncate",
        "Operation sequence that reproduces it*",
        "    mkdir(r0) -> 0",
        "    open(r0/inblob, O_WRONLY) -> fd0",
        "    write(fd0, <65 bytes *>) -> 64",
    ])


def test_check_filter_and_junit(pytester: pytest.Pytester) -> None:
    out = pytester.path / "out.xml"
    res = pytester.runpytest(*P, "--tsm-emulate", "tsm_test", "--tsm-exclusive", "--tsm-check", "lifecycle.*",
                             f"--junitxml={out}", "-o", "junit_family=xunit2")
    res.assert_outcomes(passed=9)
    root = ET.parse(out).getroot()
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["tsm.provider"] == "tsm_test" and props["tsm.target_kind"] == "emulated"
    assert props["tsm.kernel_release"] == "7.0.0-tsm-emulated" and props["tsm.profile"] == "tsm_test"
    cases = list(root.iter("testcase"))
    assert {c.get("classname") for c in cases} == {"tsm.tsm_test.lifecycle"}
    assert "lifecycle.mkdir.duplicate_eexist" in {c.get("name") for c in cases}


def test_check_filter_matching_nothing_is_usage_error(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest(*P, "--tsm-emulate", "tsm_test", "--tsm-exclusive", "--tsm-check", "nope.*")
    assert res.ret == pytest.ExitCode.USAGE_ERROR


def test_expected_failure_is_strict_xfail(pytester: pytest.Pytester) -> None:
    prof = pytester.path / "mine.yaml"
    prof.write_text(
        "schema: tsm-profile/1\nname: mine\nextends: tsm_test\nexpected_failures:\n"
        "  - check: inblob.oversize.efbig\n    reason: known truncation bug\n    tracking: linux-git:deadbeef\n")
    res = pytester.runpytest(*P, "--tsm-emulate", "tsm_test+inblob-truncate", "--tsm-profile", str(prof),
                             "--tsm-exclusive", "--tsm-check", "inblob.oversize.efbig")
    res.assert_outcomes(xfailed=1)
    res = pytester.runpytest(*P, "--tsm-emulate", "tsm_test", "--tsm-profile", str(prof),
                             "--tsm-exclusive", "--tsm-check", "inblob.oversize.efbig")
    res.assert_outcomes(failed=1)  # XPASS(strict): the fix landed, the entry must go


def test_malformed_profile_is_one_line_usage_error(pytester: pytest.Pytester) -> None:
    prof = pytester.path / "bad.yaml"
    prof.write_text("schema: tsm-profile/1\nname: bad\nextends: tsm_test\nattributes:\n  inblob: {mode: '0800'}\n")
    res = pytester.runpytest(*P, "--tsm-emulate", "tsm_test", "--tsm-profile", str(prof), "--tsm-exclusive")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = [line for line in res.stderr.lines if "bad.yaml" in line]
    assert len(err) == 1 and "bad.yaml:5:" in err[0] and "Traceback" not in res.stderr.str()


def test_harness_error_is_error_not_failure(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from tsm_conformance.checks import base
    base.all_checks()

    def boom(ctx: object) -> None:
        raise RuntimeError("harness bug")

    chk = base.REGISTRY["gen.fresh.initial"]
    monkeypatch.setitem(base.REGISTRY, chk.id, base.Check(chk.id, chk.rule, chk.abi, boom))
    res = pytester.runpytest(*P, "--tsm-emulate", "tsm_test", "--tsm-exclusive", "--tsm-check", "gen.fresh.*")
    res.assert_outcomes(errors=1)
