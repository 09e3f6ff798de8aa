"""--any-filesystem: another implementation of the ABI on a filesystem the suite does not recognise.

The FUSE tests mount tests/foreign_fuse.py (the emulator's operations under the fsname
``acme-attest``, subtype ``acme``: fstype ``fuse.acme``, not our ``fuse.tsm``), skipped with the
reason where FUSE cannot mount.  The others use a plain directory: an ordinary filesystem that
implements nothing, which the opt-in must handle without leaving anything behind."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tsm_conformance.report_text import rerun_options
from tsm_conformance.target import live
from tsm_conformance.target.fuse_limits import FUSE_LIMITS, OTHER_FS_LIMITS
from tsm_conformance.target.live import LiveTree, mount_fstype, report_group_problem

from .test_cli import REPO, cli, one_line_error
from .test_fuse import needs_fuse, start_daemon, unmount


@contextmanager
def foreign(spec: str, mnt: Path) -> Iterator[Path]:
    """tests/foreign_fuse.py serving ``spec`` at ``mnt`` until its "mounted" line; yields the report
    group.  Stopped (and, if that failed, lazily unmounted) afterwards."""
    p, line = start_daemon([str(REPO / "tests" / "foreign_fuse.py"), spec, str(mnt)])
    try:
        if not line or line[0].strip() != "mounted":
            p.kill()
            raise AssertionError(f"no 'mounted' line: {line} {p.communicate(timeout=10)[1]}")
        assert mount_fstype(str(mnt)) == "fuse.acme"
        yield mnt / "tsm" / "report"
    finally:
        unmount(p, mnt)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


@needs_fuse
def test_foreign_fuse_mount_needs_the_opt_in_and_then_passes(tmp_path: Path) -> None:
    mnt, junit = tmp_path / "mnt", tmp_path / "out.xml"
    mnt.mkdir()
    with foreign("tsm_test", mnt) as report:
        for cmd in ("run", "detect", "clean"):  # refused, naming the filesystem and the option
            line = one_line_error(cli(cmd, "--root", str(report), cwd=tmp_path))
            assert "is on fuse.acme, not configfs" in line and "add --any-filesystem" in line, line
        assert os.listdir(report) == []  # not even the probe item was made
        described = f"fuse {report} (fuse.acme, --any-filesystem)"

        p = cli("detect", "--root", str(report), "--any-filesystem", cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.startswith("profile tsm_test ") and f"target           {described}\n" in p.stdout

        p = cli("run", "--root", str(report), "--any-filesystem", "--profile", "tsm_test", "--junit", str(junit),
                cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
        for why in FUSE_LIMITS.values():  # a FUSE mount: what FUSE cannot show is skip-unsupported
            assert f"unsupported on a fuse target: {why}" in p.stdout
        assert os.listdir(report) == []
        props = {e.get("name"): e.get("value") for e in ET.parse(junit).getroot().iter("property")}
        assert (props["tsm.target_kind"], props["tsm.target"]) == ("fuse", described)
        cases = list(ET.parse(junit).getroot().iter("testcase"))
        assert len(cases) >= 40 and not [c for c in cases if c.find("failure") is not None]

        # clean: only our names, only dead owners; someone else's items stay
        dead, alive = f"tsmct-{_dead_pid()}-0", f"tsmct-{os.getpid()}-0"
        for n in (dead, alive, "vendor-0", "tsmct-x"):
            os.mkdir(report / n)
        p = cli("clean", "--root", str(report), "--any-filesystem")
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"removed {dead}" in p.stdout and f"kept {alive}: process {os.getpid()}" in p.stdout
        assert sorted(os.listdir(report)) == sorted([alive, "vendor-0", "tsmct-x"])

        # still only a report group itself: not the mount's top, not its tsm directory, not an item
        for path in (mnt, mnt / "tsm", report / "vendor-0"):
            for cmd in ("run", "clean"):
                line = one_line_error(cli(cmd, "--root", str(path), "--any-filesystem", cwd=tmp_path))
                assert "expected .../tsm/report" in line, line
        for n in (alive, "vendor-0", "tsmct-x"):
            os.rmdir(report / n)


@needs_fuse
def test_a_failure_on_a_foreign_mount_reproduces_with_the_option(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with foreign("tsm_test+inblob-truncate", mnt) as report:
        p = cli("run", "--root", str(report), "--any-filesystem", "--profile", "tsm_test", "--",
                "--tsm-check", "inblob.oversize.efbig", cwd=tmp_path)
        assert p.returncode == 1, p.stdout + p.stderr
        assert f"  target   : fuse {report} (fuse.acme, --any-filesystem)\n" in p.stdout
        (line,) = [ln for ln in p.stdout.splitlines() if ln.startswith("Reproduce with: ")]
        assert line.endswith(f" --root {report} --any-filesystem"), line
        argv = shlex.split(line.split(": ", 1)[1])
        assert argv[:2] == ["tsm-conformance", "replay"]
        p = cli(*argv[1:], cwd=tmp_path)  # the line as printed, run as it stands
        assert p.returncode == 0 and "0 differ" in p.stdout and "reproduced" in p.stdout, p.stdout + p.stderr
        assert "add --any-filesystem" in one_line_error(cli(*argv[1:-1], cwd=tmp_path))  # without it
        assert os.listdir(report) == []


@needs_fuse
def test_fuzz_and_the_plugin_take_the_opt_in(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "conformance"), str(REPO / "fuzz"), env.get("PYTHONPATH", "")])
    with foreign("tsm_test", mnt) as report:
        fuzz = ("fuzz", "privlevel", "--root", str(report), "--runs", "40", "--no-instrument", "--jobs", "1",
                "--artifacts", str(tmp_path / "fa"))
        line = one_line_error(cli(*fuzz, cwd=tmp_path))
        assert line.startswith("tsm-conformance fuzz: ") and "add --any-filesystem" in line, line
        p = cli(*fuzz, "--any-filesystem", cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"on root {report} --any-filesystem" in p.stdout and "1 passed" in p.stdout
        assert os.listdir(report) == []

        def plugin(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "pytest", "-p", "tsm_conformance.plugin", "-p",
                                   "no:cacheprovider", "--tsm-exclusive", "--tsm-root", str(report), "--tsm-check",
                                   "lifecycle.*", *extra], capture_output=True, text=True, env=env, cwd=tmp_path,
                                  timeout=120)
        p = plugin()
        assert p.returncode == pytest.ExitCode.USAGE_ERROR and "add --tsm-any-filesystem" in p.stderr, p.stderr
        p = plugin("--tsm-any-filesystem")
        assert p.returncode == 0 and " passed" in p.stdout, p.stdout + p.stderr
        assert f"tsm: fuse {report} (fuse.acme, --any-filesystem)" in p.stdout
        assert os.listdir(report) == []


def test_another_filesystem_is_foreign_and_an_empty_group_leaves_nothing(tmp_path: Path) -> None:
    report = tmp_path / "x" / "tsm" / "report"
    report.mkdir(parents=True)
    fstype = mount_fstype(str(report)) or "?"
    if fstype in live.REPORT_GROUP_FSTYPES or live.is_fuse(fstype) or fstype in live.NEVER_REPORT_GROUP:
        pytest.skip(f"the temporary directory is on {fstype}, which is not an unrecognised filesystem")
    line = one_line_error(cli("run", "--root", str(report)))
    assert f"is on {fstype}, not configfs" in line and "add --any-filesystem" in line
    t = LiveTree(str(report), any_filesystem=True)
    assert (t.kind, t.limits) == ("foreign", OTHER_FS_LIMITS) and set(OTHER_FS_LIMITS) == set(FUSE_LIMITS)
    assert t.describe() == f"foreign {report} ({fstype}, --any-filesystem)"
    assert LiveTree(str(report)).kind == "live"  # without the opt-in nothing changes for direct users
    # a plain directory implements nothing: the probe says so in one line and its item is gone again
    for cmd in ("run", "detect"):
        line = one_line_error(cli(cmd, "--root", str(report), "--any-filesystem", cwd=tmp_path))
        assert "provider" in line, line
        assert os.listdir(report) == []
    # clean: ours by name, but not report items (no inblob/outblob/...): kept
    os.mkdir(report / "tsmct-999999-0")
    p = cli("clean", "--root", str(report), "--any-filesystem")
    assert p.returncode == 0 and "kept tsmct-999999-0: not a report item" in p.stdout, p.stdout + p.stderr
    os.rmdir(report / "tsmct-999999-0")
    # the path rules hold with the opt-in: .../tsm/report, and not inside another group's item
    inner = report / "r0" / "tsm" / "report"
    inner.mkdir(parents=True)
    for root, says in ((tmp_path, "expected .../tsm/report"), (report.parent, "expected .../tsm/report"),
                       (inner, f"inside the report group {report}")):
        for cmd in ("run", "detect", "clean"):
            assert says in one_line_error(cli(cmd, "--root", str(root), "--any-filesystem")), (cmd, root)
    # the run's own files never go into a (possible) report group: a directory made there is an item
    for opt in ("--junit", "--ktap"):
        line = one_line_error(cli("run", "--emulate", "tsm_test", opt, str(report / "sub" / "out.xml")))
        assert f"is in a report group ({report})" in line, line
    assert "--any-filesystem is for a --root tree" in one_line_error(
        cli("run", "--emulate", "tsm_test", "--any-filesystem"))
    assert "--any-filesystem goes with --root" in one_line_error(cli("fuzz", "inblob", "--any-filesystem"))


def test_pseudo_filesystems_stay_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "tsm" / "report"
    report.mkdir(parents=True)
    for fstype in ("proc", "sysfs", "cgroup2", "tracefs", "debugfs", "bpf"):
        monkeypatch.setattr(live, "mount_fstype", lambda _p, f=fstype: f)
        why = report_group_problem(str(report), any_filesystem=True)
        assert why and f"is on {fstype}, not a configfs-tsm report group" in why
    monkeypatch.setattr(live, "mount_fstype", lambda _p: None)  # cannot tell: could be anything
    assert "cannot tell its filesystem" in (report_group_problem(str(report), any_filesystem=True) or "")
    for fstype in ("configfs", "fuse.tsm"):  # ours: no opt-in needed, and none shown in a rerun
        monkeypatch.setattr(live, "mount_fstype", lambda _p, f=fstype: f)
        assert report_group_problem(str(report)) is None
        assert LiveTree(str(report), any_filesystem=True).foreign_fstype is None


def test_rerun_options_follow_the_target_description() -> None:
    assert rerun_options("emulated sev_guest@7.0+inblob-truncate") == "--emulate sev_guest@7.0+inblob-truncate"
    assert rerun_options("live /sys/kernel/config/tsm/report") == "--root /sys/kernel/config/tsm/report"
    assert rerun_options("fuse /m/tsm/report") == "--root /m/tsm/report"  # an emulate mount
    assert rerun_options("fuse /a b/tsm/report (fuse.acme, --any-filesystem)") == \
        "--root '/a b/tsm/report' --any-filesystem"
    assert rerun_options("foreign /x/tsm/report (9p, --any-filesystem)") == "--root /x/tsm/report --any-filesystem"
