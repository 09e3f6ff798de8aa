"""`compare` on two real runs (docs/results.md): the installed command's JUnit of a faithful emulated
sev_guest and of one with a quirk that fails checks; compare finds those checks new, then fixed."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tsm_conformance.results.compare import main
from tsm_conformance.results.model import load_run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
QUIRK = "inblob-truncate"  # oversize inblob truncated instead of EFBIG: fails inblob.oversize.*


def command() -> list[str]:
    """The installed ``tsm-conformance`` beside this interpreter (the .venv), else on PATH, else the
    module from this checkout (plain pytest, not installed)."""
    beside = Path(sys.executable).with_name("tsm-conformance")
    found = str(beside) if beside.exists() else shutil.which("tsm-conformance")
    return [found] if found else [sys.executable, "-m", "tsm_conformance.cli"]


def run_junit(emulate: str, junit: Path) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "conformance"), str(REPO / "fuzz"), env.get("PYTHONPATH", "")])
    p = subprocess.run([*command(), "run", "--emulate", emulate, "--junit", str(junit), "-q"], capture_output=True,
                       text=True, env=env, cwd=junit.parent, timeout=300)
    assert junit.exists(), p.stdout + p.stderr
    return p.returncode


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, list[str]]:
    """(faithful JUnit, quirky JUnit, the ids that fail in the quirky one)."""
    d = tmp_path_factory.mktemp("compare")
    a, b = d / "A.xml", d / "B.xml"
    assert run_junit("sev_guest", a) == 0
    assert run_junit(f"sev_guest+{QUIRK}", b) == 1  # the quirk does fail the run
    failing = [c.id for c in load_run(str(b)).checks if c.failed]
    assert "inblob.oversize.efbig" in failing
    return str(a), str(b), failing


def section(text: str, title: str) -> list[str]:
    """The check ids listed under ``title`` in the text report."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{title} ("))
    out = []
    for ln in lines[start + 1:]:
        if not ln.startswith("  "):
            break
        if not ln.startswith("      "):  # an entry, not its reason line
            out.append(ln.split()[1] if ln.startswith("  !! ") else ln.split()[0])
    return out


def test_a_quirk_is_a_new_failure(runs: tuple[str, str, list[str]]) -> None:
    a, b, failing = runs
    out = io.StringIO()
    assert main(a, b, out=out) == 1
    text = out.getvalue()
    assert section(text, "NEW FAILURES") == failing
    assert text.splitlines()[-1].startswith(f"compare: {len(failing)} new failure(s), 0 fixed")
    assert f"target.describe: emulated sev_guest@7.0 -> emulated sev_guest@7.0+{QUIRK}" in text


def test_reversed_it_is_fixed(runs: tuple[str, str, list[str]]) -> None:
    a, b, failing = runs
    out = io.StringIO()
    assert main(b, a, out=out) == 0
    text = out.getvalue()
    assert section(text, "FIXED") == failing
    assert "NEW FAILURES" not in text
    assert text.splitlines()[-1].startswith(f"compare: 0 new failure(s), {len(failing)} fixed")


def test_a_run_against_itself_has_nothing_new(runs: tuple[str, str, list[str]]) -> None:
    a, _, _ = runs
    out = io.StringIO()
    assert main(a, a, out=out) == 0
    assert out.getvalue().splitlines()[-1] == "compare: 0 new failure(s), 0 fixed"


def test_json_names_the_new_failures(runs: tuple[str, str, list[str]]) -> None:
    a, b, failing = runs
    out = io.StringIO()
    assert main(a, b, as_json=True, out=out) == 1
    d = json.loads(out.getvalue())
    assert [e["id"] for e in d["new_failures"]] == failing and d["exit_status"] == 1
    assert all(e["old"] == "pass" and e["new"] == "fail" for e in d["new_failures"])
