"""The command line as a user meets it: exit codes, one-line errors, JUnit, quirks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tsm_conformance.emulator.quirks import QUIRKS

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "conformance"), str(REPO / "fuzz"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "tsm_conformance.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


def test_emulated_run_writes_junit(tmp_path: Path) -> None:
    out = tmp_path / "out.xml"
    p = cli("run", "--emulate", "sev_guest", "--junit", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    cases = list(ET.parse(out).getroot().iter("testcase"))
    assert len(cases) >= 40
    assert not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]


@pytest.mark.parametrize("quirk", sorted(QUIRKS))
def test_each_quirk_exits_1_and_names_the_check(quirk: str, tmp_path: Path) -> None:
    from tests.unit.test_quirk_matrix import CATCHES, quirk_spec
    # a provider without module control where possible: its run skips the slow lifecycle checks
    config = next((c for c in QUIRKS[quirk].applies_to if c != "tsm_test"), "tsm_test")
    # --profile: a leak of the SVSM attributes would otherwise select the sev_guest-svsm profile
    area = CATCHES[quirk].split(".")[0] + ".*"  # the catching check's area keeps each run short
    hang = ["--op-timeout", "0.5", "--on-hang", "continue"] if quirk == "report-hangs" else []
    p = cli("run", "--emulate", quirk_spec(config, quirk), "--profile", config, *hang, "--", "--tsm-check", area,
            cwd=tmp_path)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr
    assert f"{CATCHES[quirk]}: " in p.stdout


def test_svsm_attribute_leak_caught_without_naming_a_profile(tmp_path: Path) -> None:
    # the leak makes a VMPL-0 guest look like an SVSM guest; the floor of 0 gives it away
    p = cli("run", "--emulate", "sev_guest+service-attrs-leak", cwd=tmp_path)
    assert p.returncode == 1 and "discovery.privlevel_floor.matches_profile: " in p.stdout


def test_missing_default_root_suggests_emulate(tmp_path: Path) -> None:
    if os.path.exists("/sys/kernel/config/tsm/report"):
        pytest.skip("this machine has a live configfs-tsm tree")
    assert "--emulate" in one_line_error(cli("run", cwd=tmp_path))


def test_missing_given_root(tmp_path: Path) -> None:
    assert "does not exist" in one_line_error(cli("run", "--root", str(tmp_path / "nope")))


def test_root_without_the_abi_is_refused_before_any_write(tmp_path: Path) -> None:
    """A directory that is not a configfs (or emulator) report group: one line, and nothing was
    made there, not even the probe item (it used to mkdir one first)."""
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:  # a probe item lives for milliseconds: look often
        while not stop.is_set():
            seen.extend(os.listdir(tmp_path))
            time.sleep(0.0005)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        for cmd in ("run", "detect"):
            line = one_line_error(cli(cmd, "--root", str(tmp_path)))
            assert "not configfs" in line and "nothing is made or removed there" in line, line
    finally:
        stop.set()
        t.join()
    assert seen == [] and os.listdir(tmp_path) == []


def test_bad_specs_are_usage_errors() -> None:
    assert "did you mean 'sev_guest'" in one_line_error(cli("run", "--emulate", "sev_gust"))
    assert "does not apply to tdx_guest" in one_line_error(cli("run", "--emulate", "tdx_guest+vmpl-ignored"))
    assert "unknown quirk" in one_line_error(cli("run", "--emulate", "sev_guest+nope"))


def test_malformed_profile_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("schema: tsm-profile/1\nname: broken\nextends: sev_guest\nprivlevel:\n  flor: 1\n")
    line = one_line_error(cli("run", "--emulate", "sev_guest", "--profile", str(bad)))
    assert "broken.yaml:5:" in line and "did you mean 'floor'" in line
    line = one_line_error(cli("profiles", "validate", str(bad)))
    assert "broken.yaml:5:" in line


def test_unknown_profile_name() -> None:
    assert "sev_guest" in one_line_error(cli("run", "--emulate", "sev_guest", "--profile", "sev_gest"))


def test_nothing_applicable_exits_4(tmp_path: Path) -> None:
    p = cli("run", "--emulate", "sev_guest", "--", "--tsm-check", "service.*", cwd=tmp_path)
    assert p.returncode == 4, p.stdout + p.stderr


def test_quirks_listing() -> None:
    p = cli("quirks")
    rows = [line.split("\t") for line in p.stdout.splitlines()]
    assert p.returncode == 0 and len(rows) == len(QUIRKS) >= 12
    assert all(len(r) == 3 and r[2] for r in rows)


def test_profiles_list_show_validate() -> None:
    p = cli("profiles", "list")
    names = {line.split()[0] for line in p.stdout.splitlines()}
    assert {"core", "tsm_test", "sev_guest", "sev_guest-svsm", "tdx_guest", "arm_cca_guest"} <= names
    p = cli("profiles", "show", "sev_guest-svsm")
    assert p.returncode == 0 and "provider: sev_guest" in p.stdout
    p = cli("profiles", "validate", str(REPO / "profiles"))
    assert p.returncode == 0 and p.stdout.count("ok ") == 6


def test_profiles_validate_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    """Nothing validated is not a pass: one line naming the directory, exit 2 (also beside a good file)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a profile\n")
    line = one_line_error(cli("profiles", "validate", str(empty)))
    assert line == f"tsm-conformance: {empty}: no profiles to validate (no *.yaml or *.yml file in this directory)"
    p = cli("profiles", "validate", str(empty), str(REPO / "profiles" / "core.yaml"))
    assert p.returncode == 2 and p.stdout.startswith("ok ") and p.stderr.count("\n") == 1, (p.stdout, p.stderr)


def test_failure_writes_a_tsmseq_that_replay_reproduces(tmp_path: Path) -> None:
    p = cli("run", "--emulate", "sev_guest+zero-write-accepted", "--", "--tsm-check", "inblob.zero_write.*",
            cwd=tmp_path)
    assert p.returncode == 1
    (seqfile,) = (tmp_path / "tsm-failures").glob("inblob.zero_write.efault_commits_empty-*.tsmseq")
    assert f"Reproduce with: tsm-conformance replay tsm-failures/{seqfile.name} --emulate " in p.stdout
    p = cli("replay", str(seqfile))
    assert p.returncode == 0 and "0 differ" in p.stdout and "reproduced" in p.stdout
    p = cli("replay", str(seqfile), "--emulate", "sev_guest")
    assert p.returncode == 1 and "expected: 0" in p.stdout and "got:      EFAULT" in p.stdout
    assert "expected '# tsmseq 1'" in one_line_error(cli("replay", str(REPO / "README.md")))



def test_a_failure_prints_once_on_ci_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest puts a failure's whole text in the short summary when CI or BUILD_NUMBER is set: run's
    report must read the same on a CI runner (where it printed twice) as on a desk."""
    monkeypatch.setenv("CI", "true")
    p = cli("run", "--emulate", "tsm_test+inblob-truncate", "--", "--tsm-check", "inblob.oversize.efbig",
            cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stdout.count("Reproduce with: ") == 1 and p.stdout.count("  expected : ") == 1, p.stdout

def test_argument_errors_and_unwritable_outputs_are_one_line(tmp_path: Path) -> None:
    line = one_line_error(cli("run", "--root", str(tmp_path), "--emulate", "sev_guest"))
    assert "not allowed with argument --root" in line and "--help" in line
    assert "invalid choice: 'maybe'" in one_line_error(cli("run", "--on-hang", "maybe"))
    assert "unrecognized arguments: --bogus" in one_line_error(cli("detect", "--bogus"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    for opt in ("--ktap", "--junit"):
        assert one_line_error(cli("run", "--emulate", "sev_guest", opt, str(blocker / "out"))).startswith(
            f"tsm-conformance: {opt} {blocker / 'out'}: ")
    p = cli("run", "--emulate", "tdx_guest", "--ktap", str(tmp_path / "new" / "k.ktap"), "--", "--tsm-check",
            "inblob.*", cwd=tmp_path)
    assert p.returncode == 0 and (tmp_path / "new" / "k.ktap").read_text().startswith("KTAP version 1\n")
