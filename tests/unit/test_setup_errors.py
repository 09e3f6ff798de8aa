"""One-line set-up errors that this (root, configfs-less) machine cannot produce for real:
configfs mounted but the tsm core not loaded, no report group, configfs not mounted, not root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tsm_conformance.runstate import SetupError, make_tree, missing_tree


def test_tsm_core_not_loaded(tmp_path: Path) -> None:
    msg = missing_tree(str(tmp_path / "tsm" / "report"), True, fstype=lambda p: "configfs")
    assert "configfs-tsm core is not loaded" in msg and "modprobe tsm_report" in msg


def test_no_report_group(tmp_path: Path) -> None:
    (tmp_path / "tsm").mkdir()
    msg = missing_tree(str(tmp_path / "tsm" / "report"), True, fstype=lambda p: "configfs")
    assert "has no report group" in msg


def test_configfs_not_mounted(tmp_path: Path) -> None:
    msg = missing_tree(str(tmp_path / "tsm" / "report"), False, fstype=lambda p: "ext4")
    assert "configfs is not mounted" in msg and "--emulate" in msg and "\n" not in msg


def test_not_root_and_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(SetupError, match="not writable for uid 1000.*run as root"):
        make_tree(str(tmp_path), None)


def test_permission_denied_on_the_way_is_not_a_missing_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_stat = os.stat

    def stat(path, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if str(path).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *a, **kw)
    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(SetupError, match="permission denied on the way there.*run as root"):
        make_tree(str(tmp_path / "tsm" / "report"), None)


def test_only_well_formed_names_are_ours() -> None:
    from tsm_conformance.names import ours
    assert ours("tsmct-123-4") and ours("tsmct-123-probe") and ours("tsmfz-9-0")
    assert not ours("tsmct-x") and not ours("tsmct-") and not ours("keepme") and not ours("xtsmct-1-2")
