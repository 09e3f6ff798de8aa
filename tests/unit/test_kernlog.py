"""environment.kernel_log can fail: new taint or an oops/WARNING line makes `problem()` non-empty."""

from __future__ import annotations

from pathlib import Path

from tsm_conformance.kernlog import KernelEvidence, bad_dmesg


def test_clean_run_has_no_problem(tmp_path: Path) -> None:
    taint = tmp_path / "tainted"
    taint.write_text("0\n")
    ev = KernelEvidence(taint_path=str(taint), kmsg_path=str(tmp_path / "absent"))
    ev.start()
    ev.finish()
    assert ev.problem() == "" and "unavailable" in ev.properties()["tsm.dmesg_new_lines"]


def test_new_taint_and_oops_are_problems(tmp_path: Path) -> None:
    taint = tmp_path / "tainted"
    taint.write_text("0\n")
    ev = KernelEvidence(taint_path=str(taint), kmsg_path=str(tmp_path / "absent"))
    ev.start()
    taint.write_text("512\n")  # TAINT_WARN, as a WARN_ON during the run sets it
    ev.finish()
    ev.lines += ["tsm_report: ok", "WARNING: CPU: 0 PID: 1 at drivers/virt/coco/guest/report.c:42"]
    assert ev.problem() == "taint 0 -> 512; 1 oops/BUG/WARNING lines in dmesg"
    assert ev.properties()["tsm.dmesg_bad_lines"] == "1"


def test_policy_lines() -> None:
    assert bad_dmesg("BUG: kernel NULL pointer dereference\nnormal line\nOops: 0002 [#1]") == [
        "BUG: kernel NULL pointer dereference", "Oops: 0002 [#1]"]
