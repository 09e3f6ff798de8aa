"""The wheel ships both import roots, the schemas, the run ini, the profiles and baselines (found by name)
and the report's templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contents(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    (whl,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for want in ("tsm_conformance/profile/profile.schema.json", "tsm_conformance/data/pytest-run.ini",
                 "tsm_conformance/_profiles/core.yaml", "tsm_conformance/_profiles/sev_guest.yaml",
                 "tsm_fuzz/__init__.py", "tsm_conformance/plugin.py",
                 "tsm_conformance/profile/baseline.schema.json", "tsm_conformance/_baselines/known-kernel-bugs.yaml",
                 "tsm_conformance/results/templates/report.html.j2", "tsm_conformance/results/templates/report.css"):
        assert want in names, want
    assert not any(n.startswith(("tests/", "conformance/", "fuzz/")) for n in names)
    ep = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(whl).read(ep).decode()
    assert "tsm-conformance = tsm_conformance.cli:main" in text and "[pytest11]" in text
