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


# Report headers as the kernel prints them (written here from the formats the kernel documents:
# Documentation/dev-tools/kasan.rst, kcsan.rst, ubsan.rst, kernel/locking/lockdep.c's headers,
# kernel/hung_task.c, kernel/sched/core.c's __might_sleep, kernel/panic.c's WARN); a dmesg
# timestamp in front of some, as `dmesg` shows them.
REPORTS = {
    "BUG: KASAN: slab-out-of-bounds in tsm_report_read+0x5c/0x1b0": "kernel.kasan",
    "[  812.004211] BUG: KASAN: use-after-free in configfs_release_bin_file+0x2e/0x140": "kernel.kasan",
    "BUG: KASAN: double-free in tsm_report_item_release+0x18/0x30": "kernel.kasan",
    "BUG: KCSAN: data-race in tsm_report_privlevel_store / tsm_report_read": "kernel.kcsan",
    "BUG: KFENCE: out-of-bounds read in tsm_report_read+0x40/0x1b0": "kernel.kfence",
    "UBSAN: array-index-out-of-bounds in drivers/virt/coco/guest/report.c:210:17": "kernel.ubsan",
    "[   3.1] UBSAN: shift-out-of-bounds in drivers/virt/coco/guest/report.c:97:24": "kernel.ubsan",
    "WARNING: possible circular locking dependency detected": "kernel.lockdep",
    "WARNING: possible recursive locking detected": "kernel.lockdep",
    "WARNING: inconsistent lock state": "kernel.lockdep",
    "WARNING: suspicious RCU usage": "kernel.lockdep",
    "WARNING: bad unlock balance detected!": "kernel.lockdep",
    "WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected": "kernel.lockdep",
    "INFO: trying to register non-static key.": "kernel.lockdep",
    "BUG: sleeping function called from invalid context at kernel/locking/rwsem.c:1525": "kernel.atomic_sleep",
    "BUG: scheduling while atomic: python3/4242/0x00000002": "kernel.atomic_sleep",
    "INFO: task python3:4242 blocked for more than 122 seconds.": "kernel.hung_task",
    "INFO: task kworker/u4:2:97 blocked for more than 245 seconds.": "kernel.hung_task",
    "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [python3:4242]": "kernel.lockup",
    "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:": "kernel.lockup",
    "BUG: kernel NULL pointer dereference, address: 0000000000000010": "kernel.oops",
    "Oops: general protection fault, probably for non-canonical address 0xdffffc0000000002: 0000 [#1] SMP KASAN":
        "kernel.oops",
    "Oops: 0002 [#1] PREEMPT SMP NOPTI": "kernel.oops",
    "BUG: unable to handle page fault for address: ffffc90000a3f000": "kernel.oops",
    "Kernel panic - not syncing: Fatal exception": "kernel.panic",
    "kernel BUG at fs/configfs/dir.c:1416!": "kernel.bug",
    "BUG: Bad page state in process python3  pfn:10a2b": "kernel.bug",
    "WARNING: CPU: 1 PID: 4242 at drivers/virt/coco/guest/report.c:300 tsm_report_read+0x1f0/0x230": "kernel.warn",
    "Call Trace:": "kernel.report",
}
NOT_REPORTS = ["tsm_test: loading out-of-tree module taints kernel.",
               "kasan: KernelAddressSanitizer initialized (generic)",
               "kcsan: enabled early", "Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar",
               "rcu: Hierarchical RCU implementation.", "sev-guest sev-guest: Initialized SEV guest driver",
               "systemd[1]: Started Journal Service.", "tsm_test: outblob_size set to 21000"]


def test_each_report_header_has_its_rule() -> None:
    from tsm_conformance.kernlog import classify
    for line, rule in REPORTS.items():
        assert classify(line) == rule, line
        assert bad_dmesg(line) == [line], line  # the run's policy fails on it too (one set)
    for line in NOT_REPORTS:
        assert classify(line) is None and bad_dmesg(line) == [], line


def test_taint_text_names_the_bits() -> None:
    from tsm_conformance.kernlog import TAINT_MODULE_LOAD, taint_text
    assert taint_text(0) == "0"
    assert taint_text(512) == "512 (W: a warning (WARN))"
    assert taint_text(4096 | 128).startswith("4224 (D: the kernel died")
    assert TAINT_MODULE_LOAD & 4096 and TAINT_MODULE_LOAD & 8192 and not TAINT_MODULE_LOAD & (512 | 128 | 32)


def _reads(items: list[object]):  # noqa: ANN202 - a fake os.read over records, errors and EAGAIN
    it = iter(items)

    def read(fd: int, n: int) -> bytes:
        x = next(it, BlockingIOError())
        if isinstance(x, BaseException):
            raise x
        assert isinstance(x, bytes) and len(x) <= n
        return x
    return read


def test_kmsg_records_dictionary_and_overrun(tmp_path: Path) -> None:
    """/dev/kmsg (Documentation/ABI/testing/dev-kmsg): one record per read, ' KEY=value' dictionary
    lines dropped, EAGAIN at the end, EPIPE when records were overwritten: the next read goes on with
    the oldest one left, and the gap in the sequence numbers says how many were lost."""
    from tsm_conformance.kernlog import LogTail
    f = tmp_path / "log"
    f.write_text("old line\n")
    tail = LogTail(str(f), _read=_reads([
        b"6,100,5000,-;tsm_test: ready\n SUBSYSTEM=virtual\n DEVICE=+tsm:report\n",
        BrokenPipeError(),
        b"4,105,6000,-;BUG: KASAN: use-after-free in tsm_report_read+0x10/0x80\n",
        b"4,106,6001,c;Read of size 8 at addr ffff888012345678 by task python3/4242\n",
    ]))
    assert tail.open()
    assert tail.read_new() == ["tsm_test: ready", "BUG: KASAN: use-after-free in tsm_report_read+0x10/0x80",
                               "Read of size 8 at addr ffff888012345678 by task python3/4242"]
    assert tail.lost == 4  # records 101..104
    assert tail.read_new() == []  # EAGAIN: nothing new, one read
    tail.close()


def test_a_file_standing_in_is_read_from_its_end_whole_lines_only(tmp_path: Path) -> None:
    from tsm_conformance.kernlog import LogTail
    f = tmp_path / "log"
    f.write_text("before the run: BUG: KASAN: not ours\n")
    tail = LogTail(str(f))
    assert tail.open() and tail.read_new() == []
    with f.open("a") as w:
        w.write("[ 1.0] first\n[ 1.1] half a li")
    assert tail.read_new() == ["[ 1.0] first"]
    with f.open("a") as w:
        w.write("ne\n")
    assert tail.read_new() == ["[ 1.1] half a line"]
    tail.close()
    absent = LogTail(str(tmp_path / "absent"))
    assert not absent.open() and "No such file" in absent.error and absent.read_new() == []
