"""Our kselftest wrapper through a kernel tree's own kselftest runner (kselftest/kernel-runner.sh),
on the host against the emulator (TSM_EMULATE), and vm/kselftest.py's verdict on what it leaves:
the checks `vm --kselftest` makes on the guest's results (docs/kernelci.md).  Needs a kernel source
tree: TSM_KERNEL_TREE, else one `vm --kernel-source-deb` unpacked into the cache (the VM tier,
which CI runs before the tests, leaves Debian's 6.12 source there); skipped without one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tsm_conformance.vm.kselftest import GUEST_SCRIPT, TEST_NAME, verdict

pytestmark = pytest.mark.slow  # starts the runner and the suite (tests/conftest.py: the tiers)

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path("tools/testing/selftests/kselftest/runner.sh")


def kernel_tree() -> Path:
    given = os.environ.get("TSM_KERNEL_TREE")
    if given:
        trees = [Path(given)]
    else:  # vm/source.py unpack_source_deb: CACHE/src/<deb>/linux-source-X.Y
        cache = Path(os.environ.get("TSM_CONFORMANCE_CACHE") or "/var/cache/tsm-conformance")
        trees = sorted(cache.glob("src/linux-source-*/linux-source-*"))
    tree = next((t for t in trees if (t / RUNNER).is_file()), None)
    if tree is None:
        pytest.skip(f"no kernel source tree with {RUNNER} (set TSM_KERNEL_TREE, or run the VM tier first)")
    return tree


def run_through_runner(tree: Path, results: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    """What the guest does (vm/runner.py): OUTDIR results/kselftest, output in results/kselftest.log."""
    venv = REPO / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    environ = dict(os.environ, PYTHONPATH=str(REPO / "conformance"), TSM_CONFORMANCE=f"{python} -m tsm_conformance.cli")
    environ.pop("TSM_ROOT", None)
    results.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["sh", str(GUEST_SCRIPT), str(tree), str(results / "kselftest"), *options],
                       capture_output=True, text=True, env={**environ, **env}, timeout=300)
    (results / "kselftest.log").write_text(p.stdout + p.stderr)
    return p


@pytest.fixture(scope="module")
def passing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    tree = kernel_tree()
    results = tmp_path_factory.mktemp("kselftest") / "results"
    return tree, results, run_through_runner(tree, results, TSM_EMULATE="tsm_test")


def broken(results: Path, tmp_path: Path, edit) -> Path:  # noqa: ANN001 (a str -> str function)
    """A copy of the results with the runner's KTAP edited."""
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    ktap = copy / "kselftest" / "ktap.txt"
    ktap.write_text(edit(ktap.read_text()))
    return copy


def test_runner_runs_our_collection_and_the_trees_parser_agrees(passing) -> None:  # noqa: ANN001
    tree, results, p = passing
    assert p.returncode == 0, p.stdout + p.stderr
    ktap = (results / "kselftest" / "ktap.txt").read_text()
    assert p.stdout == ktap  # stdout is the runner's KTAP, and ktap.txt keeps it
    lines = ktap.splitlines()
    assert f"ok 1 {TEST_NAME}" in lines and "# timeout set to 300" in lines  # our settings applied
    assert any(ln.startswith("#   ok 1 access.") for ln in lines)  # our KTAP, nested with "# "
    staged = results / "kselftest"
    assert (staged / "kselftest-list.txt").read_text() == "tsm_conformance:tsm_conformance.sh\n"
    assert {"tsm_conformance.sh", "settings", "config"} <= {f.name for f in (staged / "tsm_conformance").iterdir()}
    problems, log = verdict(results, tree)
    assert problems == [], log
    assert f"[PASSED] {TEST_NAME}" in log  # the tree's parser read the runner's document
    assert "[PASSED] access.rdwr.eacces" in log  # and ours inside it


def test_broken_ktap_is_a_problem(passing, tmp_path: Path) -> None:  # noqa: ANN001
    tree, results, _ = passing
    # a check's line lost from the nested KTAP: the tree's parser counts a missing subtest
    lost = broken(results, tmp_path / "lost", lambda t: "".join(
        ln for ln in t.splitlines(keepends=True) if "access.rdwr.eacces" not in ln))
    problems, _ = verdict(lost, tree)
    assert any("errors in tsm_conformance's KTAP" in p for p in problems), problems
    # the runner's result line gone (a killed runner): our own check says so
    cut = broken(results, tmp_path / "cut", lambda t: t.replace(f"ok 1 {TEST_NAME}\n", ""))
    problems, _ = verdict(cut, tree)
    assert any(p.startswith("no result line for tsm_conformance") for p in problems), problems
    # not ok from the runner
    failed = broken(results, tmp_path / "failed",
                    lambda t: t.replace(f"ok 1 {TEST_NAME}", f"not ok 1 {TEST_NAME} # exit=1"))
    problems, _ = verdict(failed, tree)
    assert problems == ["tsm_conformance failed (exit=1)"], problems  # the tree's parser agrees: FAILURE
    # nothing at all
    empty = broken(results, tmp_path / "empty", lambda t: "")
    (empty / "kselftest.log").write_text("")
    assert verdict(empty, tree)[0] == ["no KTAP from the kselftest runner"]


def test_without_the_trees_parser_only_our_check(passing, tmp_path: Path) -> None:  # noqa: ANN001
    tree, results, _ = passing
    bare = tmp_path / "bare"
    (bare / "tools" / "testing").mkdir(parents=True)
    (bare / "tools" / "testing" / "selftests").symlink_to(tree / "tools" / "testing" / "selftests")
    problems, log = verdict(results, bare)
    assert problems == [] and "has no tools/testing/kunit/kunit_parser.py" in log, log


def test_a_skip_in_the_runner_is_a_problem(tmp_path: Path) -> None:
    """No provider registered: the wrapper skips (exit 4), the runner says ok # SKIP, and the runner
    script exits 0 as kselftest counts it; in a VM booted to test the ABI that is a problem."""
    tree = kernel_tree()
    p = run_through_runner(tree, tmp_path, TSM_EMULATE="tsm_test:registered=0")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"ok 1 {TEST_NAME} # SKIP" in p.stdout.splitlines(), p.stdout
    problems, _ = verdict(tmp_path, tree)
    assert len(problems) == 1 and problems[0].startswith("tsm_conformance skipped: "), problems


def test_the_runners_timeout_stops_the_run_cleanly(tmp_path: Path) -> None:
    """run_kselftest.sh -o 3: the runner's timeout signals the wrapper, which passes it on, so the run
    unwinds (its last words follow the KTAP) and the runner reports a TIMEOUT."""
    tree = kernel_tree()
    p = run_through_runner(tree, tmp_path, "-o", "3", TSM_EMULATE="sev_guest+report-hangs")
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"not ok 1 {TEST_NAME} # TIMEOUT 3 seconds" in p.stdout.splitlines(), p.stdout
    assert "# # tsm-conformance: interrupted; 0 report items left" in p.stdout, p.stdout
    problems, _ = verdict(tmp_path, tree)
    assert problems == ["tsm_conformance failed (TIMEOUT 3 seconds)"], problems


def test_a_tree_without_a_runner_is_refused(tmp_path: Path) -> None:
    p = subprocess.run(["sh", str(GUEST_SCRIPT), str(tmp_path), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "has no kselftest runner" in p.stderr, p.stderr
