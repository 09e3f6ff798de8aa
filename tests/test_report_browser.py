"""The HTML report (results/html.py, docs/results.md) in a real browser: a three-run report (a clean
run, one quirk failing inblob.oversize.efbig, another failing privlevel.range.max_enforced) loads
from a file with nothing else, its DOM has both failures as changed matrix cells and their evidence,
and it paints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tsm_conformance.results import html
from tsm_conformance.results.model import load_run

pytestmark = pytest.mark.slow

BROWSERS = ("chromium-headless-shell", "chromium", "google-chrome")
TIMEOUT = 60  # seconds per browser run; a first start on a loaded CI machine takes a few
OVERSIZE = "inblob.oversize.efbig"
PRIV_MAX = "privlevel.range.max_enforced"
CHECKS = [OVERSIZE, "inblob.pwrite.zero_fills_gap", PRIV_MAX, "privlevel.range.floor_enforced",
          "lifecycle.mkdir.creates_item"]


def browser() -> str:
    found = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if found is None:
        pytest.skip("no headless browser: apt-get install chromium-headless-shell")
    return found


def evidence(check_id: str, observed: str) -> str:
    return (f"{check_id}: the rule\n  expected : EINVAL\n  observed : {observed}\n"
            f"  profile  : profiles/sev_guest.yaml:57\nOperation sequence that reproduces it:\n    mkdir r0\n")


def bundle(where: Path, failing: str = "", observed: str = "") -> str:
    """A bundle (docs/results.md) of CHECKS, all passing but ``failing``, whose evidence says ``observed``."""
    (where / "evidence").mkdir(parents=True)
    checks: list[dict[str, Any]] = []
    for check_id in CHECKS:
        entry: dict[str, Any] = {"id": check_id, "area": check_id.split(".")[0], "outcome": "pass", "duration": 0.01}
        if check_id == failing:
            entry.update(outcome="fail", reason=f"{check_id}: observed {observed}",
                         evidence=f"evidence/{check_id}.txt")
            (where / entry["evidence"]).write_text(evidence(check_id, observed))
        checks.append(entry)
    (where / "results.json").write_text(json.dumps({
        "format": "tsm-conformance-results/1", "command": "run", "verdict": "fail" if failing else "pass",
        "exit_status": 1 if failing else 0, "checks": checks}))
    (where / "environment.json").write_text(json.dumps({"target": {
        "kind": "emulated", "describe": f"emulated sev_guest{'+quirk' if failing else ''}",
        "kernel_release": "6.13.0", "provider": "sev_guest"}}))
    return str(where)


def run_browser(tmp_path: Path, *args: str) -> str:
    """The browser's stdout; its whole process group is killed if it outlives TIMEOUT."""
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{cmd[0]} did not finish within {TIMEOUT} s")
    assert proc.returncode == 0, err[-2000:]
    return out


class Cells(HTMLParser):
    """The dumped DOM's matrix cells marked changed (by their row's check id), and all its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.in_matrix = False
        self.row_id = ""
        self.in_row_head = False
        self.changed: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "table":
            self.in_matrix = "matrix" in classes
        elif self.in_matrix and tag == "tr":
            self.row_id = ""
        elif self.in_matrix and tag == "th" and dict(attrs).get("scope") == "row":
            self.in_row_head = True
        elif self.in_matrix and tag == "td" and "changed" in classes and self.row_id:
            self.changed.add(self.row_id)

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self.in_row_head = False
        elif tag == "table":
            self.in_matrix = False

    def handle_data(self, data: str) -> None:
        if self.in_row_head:
            self.row_id += data
        self.text.append(data)


def test_three_run_report_in_a_headless_browser(tmp_path: Path) -> None:
    browser()
    runs = [load_run(bundle(tmp_path / "clean")),
            load_run(bundle(tmp_path / "quirk-inblob-truncate", OVERSIZE, "write returned 4097 (no EFBIG)")),
            load_run(bundle(tmp_path / "quirk-privlevel-max-unchecked", PRIV_MAX, "write '4' returned 2"))]
    page = tmp_path / "report.html"
    page.write_text(html.render(runs), encoding="utf-8")

    dom = run_browser(tmp_path, "--dump-dom", page.as_uri())
    parsed = Cells()
    parsed.feed(dom)
    assert parsed.changed == {OVERSIZE, PRIV_MAX}
    text = "".join(parsed.text)
    assert evidence(OVERSIZE, "write returned 4097 (no EFBIG)") in text
    assert evidence(PRIV_MAX, "write '4' returned 2") in text

    shot = tmp_path / "report.png"
    run_browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert shot.stat().st_size > 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
