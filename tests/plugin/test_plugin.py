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


def test_every_run_option_has_a_pytest_twin() -> None:
    """`run` hands its run to the plugin as --tsm-* options (cli.RUN_TWINS), each with an ini key;
    the few without a twin say why in cli.py."""
    import argparse

    from tsm_conformance import cli, plugin
    run = cli._run_parser(argparse.ArgumentParser().add_subparsers())
    dests = {a.dest for a in run._actions if a.dest != "help"}  # argparse lists them nowhere public
    not_twins = {"junit", "ktap", "format", "quiet", "absent_exit"}  # --junitxml, --tsm-ktap, --tsm-progress, none
    assert dests - not_twins == set(cli.RUN_TWINS), dests ^ (set(cli.RUN_TWINS) | not_twins)
    assert set(cli.RUN_TWINS.values()) <= {o.flag for o in plugin.OPTIONS}
    args = cli.parser().parse_args(["run", "--root", "/r", "--any-filesystem", "--profile", "p", "--module", "m.ko",
                                    "--trust-anchor", "a", "--trust-anchor", "b", "--seq-dir", "d", "--op-timeout",
                                    "2", "--on-hang", "continue", "--budget", "reports=3"])
    argv = cli._pytest_args(args, ["--tsm-check", "x"])
    pairs = {(a, b) for a, b in zip(argv, argv[1:])}
    assert {("--tsm-root", "/r"), ("--tsm-profile", "p"), ("--tsm-module", "m.ko"), ("--tsm-trust-anchor", "a"),
            ("--tsm-trust-anchor", "b"), ("--tsm-seq-dir", "d"), ("--tsm-op-timeout", "2.0"),
            ("--tsm-on-hang", "continue"), ("--tsm-budget", "reports=3"), ("--tsm-check", "x")} <= pairs
    assert "--tsm-any-filesystem" in argv and "True" not in argv and argv[-2:] == ["--tsm-check", "x"]


@pytest.mark.parametrize("how", ["option", "ini"])
def test_budget_and_on_hang_as_run_has_them(pytester: pytest.Pytester, how: str) -> None:
    """pytest --tsm-emulate sev_guest --tsm-budget reports=3 is `run --emulate sev_guest --budget
    reports=3`: the checks past the cap are skipped as not-run (in KTAP too); the ini keys the same."""
    ktap = pytester.path / "k.ktap"
    if how == "ini":
        pytester.makeini("[pytest]\ntsm_emulate = sev_guest\ntsm_budget = reports=3\ntsm_on_hang = continue\n"
                         f"tsm_ktap = {ktap}\n")
        args: tuple[str, ...] = ()
    else:
        args = ("--tsm-emulate", "sev_guest", "--tsm-budget", "reports=3", "--tsm-on-hang", "continue",
                "--tsm-ktap", str(ktap))
    res = pytester.runpytest(*P, *args, "--tsm-exclusive", "-rs")
    assert res.ret == pytest.ExitCode.OK
    res.stdout.fnmatch_lines(["*not-run: report budget used up*"])
    assert "# SKIP not-run: report budget used up" in ktap.read_text()


def test_set_up_errors_name_the_pytest_options(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest(*P, "--tsm-emulate", "sev_guest", "--tsm-budget", "lots", "--tsm-exclusive")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["ERROR: --tsm-budget lots: expected reports=N*"])
    res = pytester.runpytest(*P, "--tsm-emulate", "sev_guest", "--tsm-op-timeout", "0", "--tsm-exclusive")
    res.stderr.fnmatch_lines(["ERROR: --tsm-op-timeout must be a positive, finite number of seconds"])
