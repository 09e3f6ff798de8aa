"""Results handed over and compared, as a vendor and a CI maintainer meet them (docs/results.md):
bundles from an emulated, a FUSE and a pytest-only run verify, and any edit makes them fail;
`report` over a clean and two quirk bundles; `compare` names the new failures; a baseline turns the
quirk run green with its failures reported as known; stale entries; one-line refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .test_cli import REPO, cli, one_line_error
from .test_fuse import emulate, needs_fuse

pytestmark = pytest.mark.slow

QUIRK_A, QUIRK_B = "sev_guest+inblob-truncate", "sev_guest+privlevel-max-unchecked"


def bundle(tmp_path: Path, name: str, *args: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path / name
    p = cli("run", *args, "--bundle", str(out), "-q", cwd=tmp_path)
    return out, p


def failing(b: Path) -> list[str]:
    res = json.loads((b / "results.json").read_text())
    return sorted(c["id"] for c in res["checks"] if c["outcome"] in ("fail", "timeout", "error"))


def test_an_emulated_bundle_verifies_and_any_edit_fails_it(tmp_path: Path) -> None:
    b, p = bundle(tmp_path, "clean", "--emulate", QUIRK_A)
    assert p.returncode == 1, p.stderr
    names = sorted(str(f.relative_to(b)) for f in b.rglob("*") if f.is_file())
    for want in ("MANIFEST.sha256", "environment.json", "junit.xml", "profile.yaml", "results.json",
                 "results.ktap", "summary.txt"):
        assert want in names
    assert any(n.startswith("evidence/inblob.oversize.efbig") for n in names)
    assert any(n.startswith("sequences/") and n.endswith(".tsmseq") for n in names)
    v = cli("bundle", "verify", str(b))
    assert v.returncode == 0, v.stdout + v.stderr
    env = json.loads((b / "environment.json").read_text())
    assert env["target"]["kind"] == "emulated" and env["profile"]["name"] == "sev_guest"
    assert env["run"]["exit_status"] == 1 and env["tool"]["version"]
    res = json.loads((b / "results.json").read_text())
    assert res["verdict"] == "fail" and res["exit_status"] == 1
    assert "inblob.oversize.efbig" in (b / "summary.txt").read_text()
    for rel in names:  # every file, edited by one byte, is caught
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(b, copy)
        with open(copy / rel, "ab") as f:
            f.write(b" ")
        v = cli("bundle", "verify", str(copy))
        assert v.returncode == 1, rel
        assert rel in v.stdout
    shutil.rmtree(copy)
    shutil.copytree(b, copy)
    (copy / "extra.txt").write_text("x")
    assert cli("bundle", "verify", str(copy)).returncode == 1
    (copy / "extra.txt").unlink()
    (copy / "summary.txt").unlink()
    assert cli("bundle", "verify", str(copy)).returncode == 1


def test_a_resealed_edit_is_caught_by_the_parts_disagreeing(tmp_path: Path) -> None:
    """Someone who turns a failure into a pass in results.json and writes a new manifest: the
    JUnit, the KTAP totals and the verdict no longer agree with it."""
    from tsm_conformance.results.bundle import seal
    b, _ = bundle(tmp_path, "q", "--emulate", QUIRK_A)
    res = json.loads((b / "results.json").read_text())
    for c in res["checks"]:
        if c["outcome"] == "fail":
            c["outcome"] = "pass"
            res["totals"]["fail"] -= 1
            res["totals"]["pass"] += 1
    res["verdict"], res["exit_status"] = "pass", 0
    (b / "results.json").write_text(json.dumps(res))
    seal(str(b))
    v = cli("bundle", "verify", str(b))
    assert v.returncode == 1
    assert "junit.xml: inblob.oversize.efbig is failed" in v.stdout and "results.ktap: Totals" in v.stdout


def test_report_over_three_bundles_shows_both_failures_in_the_matrix(tmp_path: Path) -> None:
    runs = [bundle(tmp_path, n, "--emulate", s)[0] for n, s in
            (("clean", "sev_guest"), ("truncate", QUIRK_A), ("privlevel", QUIRK_B))]
    html = tmp_path / "report.html"
    p = cli("report", *map(str, runs), "-o", str(html))
    assert p.returncode == 0, p.stderr
    text = html.read_text()

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.changed: list[str] = []
            self.refs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if "changed" in (a.get("class") or "").split():
                self.changed.append(a.get("title") or "")
            if tag in ("script", "link", "img") and (a.get("src") or a.get("href")):
                self.refs.append(str(a.get("src") or a.get("href")))
    parser = Cells()
    parser.feed(text)
    assert not parser.refs  # self-contained
    for run in runs[1:]:
        for check_id in failing(run):
            assert check_id in text
            evidence = (run / "evidence" / f"{check_id}.txt").read_text().splitlines()
            assert any(line.strip() and line.strip()[:60] in text for line in evidence[1:4]), check_id
    assert len(parser.changed) >= len(failing(runs[1])) + len(failing(runs[2]))


def test_compare_names_new_failures_and_a_baseline_makes_them_known(tmp_path: Path) -> None:
    clean, _ = bundle(tmp_path, "clean", "--emulate", "sev_guest")
    quirk, p = bundle(tmp_path, "quirk", "--emulate", QUIRK_A)
    assert p.returncode == 1
    new = failing(quirk)
    c = cli("compare", str(clean), str(quirk))
    assert c.returncode == 1, c.stdout + c.stderr
    head = c.stdout.split("NEW FAILURES", 1)[1]
    assert all(check_id in head for check_id in new)
    assert cli("compare", str(quirk), str(clean)).returncode == 0
    base = tmp_path / "ours.yaml"
    base.write_text("schema: tsm-baseline/1\nknown_failures:\n" + "".join(
        f"  - check: {cid}\n    reason: truncation bug in our test kernel\n    link: https://example.org/bug/1\n"
        f"    providers: [sev_guest]\n" for cid in new))
    known, p = bundle(tmp_path, "known", "--emulate", QUIRK_A, "--baseline", str(base))
    assert p.returncode == 0, p.stdout + p.stderr
    assert cli("bundle", "verify", str(known)).returncode == 0
    res = {c["id"]: c for c in json.loads((known / "results.json").read_text())["checks"]}
    for cid in new:
        where = f"{base.name}:{3 + 4 * new.index(cid)}"  # the entry's line
        assert res[cid]["outcome"] == "known" and res[cid]["known"]["where"].endswith(where)
        assert (known / res[cid]["evidence"]).read_text().startswith(cid)  # the failure is kept as evidence
    ktap = (known / "results.ktap").read_text()
    assert all(f"{cid} # SKIP known: truncation bug in our test kernel [" in ktap for cid in new)
    skipped = {tc.get("name"): tc.find("skipped") for tc in ET.parse(known / "junit.xml").getroot().iter("testcase")}
    assert all(skipped[cid] is not None and skipped[cid].get("message", "").startswith("known:") for cid in new)
    assert cli("compare", str(clean), str(known)).returncode == 0


def test_a_stale_entry_warns_and_fails_with_strict_baseline(tmp_path: Path) -> None:
    args = ["run", "--emulate", "tsm_test:size_fill_fix=1", "-q", "--", "--tsm-check", "provider.read.*"]
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 0 and "baselines/known-kernel-bugs.yaml" in p.stdout and "is stale" in p.stdout
    p = cli(*args[:4], "--strict-baseline", *args[4:], cwd=tmp_path)
    assert p.returncode == 1 and "stale baseline entry" in p.stdout
    p = cli("run", "--emulate", "tsm_test", "-q", "--", "--tsm-check", "provider.read.*", cwd=tmp_path)
    assert p.returncode == 0 and "1 skipped" in p.stdout  # the race: known on the faithful emulator
    p = cli("run", "--emulate", "tsm_test", "-q", "--baseline", "none", "--", "--tsm-check", "provider.read.*",
            cwd=tmp_path)
    assert p.returncode == 1  # without the baseline the kernel bug is a failure


def test_bad_baselines_and_bundle_dirs_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "b.yaml"
    bad.write_text("schema: tsm-baseline/1\nknown_failures:\n  - check: inblob.oversize.efbig\n    reason: x\n"
                   "    link: y\n    kernel: '>=6.7'\n")
    p = cli("run", "--emulate", "sev_guest", "--baseline", str(bad), cwd=tmp_path)
    assert p.returncode == 2 and "b.yaml:6" in one_line_error(p) and "kernel" in p.stderr
    bad.write_text("schema: tsm-baseline/1\nknown_failures:\n  - check: inblob.nope\n    reason: x\n    link: y\n")
    p = cli("run", "--emulate", "sev_guest", "--baseline", str(bad), cwd=tmp_path)
    assert p.returncode == 2 and "matches no check" in one_line_error(p)
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    p = cli("run", "--emulate", "sev_guest", "--bundle", str(full), cwd=tmp_path)
    assert p.returncode == 2 and "not empty" in one_line_error(p)
    assert cli("bundle", "verify", str(tmp_path)).returncode == 2
    assert cli("report", str(tmp_path / "nothing"), "-o", str(tmp_path / "r.html")).returncode == 2


def test_a_pytest_run_of_the_plugin_writes_a_bundle_too(tmp_path: Path) -> None:
    out = tmp_path / "b"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tsm-emulate", "sev_guest",
                        "--tsm-exclusive", "--tsm-bundle", str(out)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(REPO / "conformance")})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    v = cli("bundle", "verify", str(out))
    assert v.returncode == 0, v.stdout
    assert json.loads((out / "results.json").read_text())["exit_status"] == 0


@needs_fuse
def test_a_fuse_bundle_verifies(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with emulate(QUIRK_A, mnt):
        b, p = bundle(tmp_path, "fuse", "--root", str(mnt / "tsm" / "report"))
    assert p.returncode == 1, p.stdout + p.stderr
    v = cli("bundle", "verify", str(b))
    assert v.returncode == 0, v.stdout
    env = json.loads((b / "environment.json").read_text())
    assert env["target"]["kind"] == "fuse" and "inblob.oversize.efbig" in failing(b)
