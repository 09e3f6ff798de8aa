"""The CLI's last line after an interrupted run: what is left, confirmed by listing the tree."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from tsm_conformance.cli import _say_leftovers


class Tree:
    def __init__(self, names: list[str] | None) -> None:
        self.names = names

    def describe(self) -> str:
        return "fake tree"

    def listdir(self, path: str) -> list[str]:
        if self.names is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return self.names


def state(names: list[str] | None) -> SimpleNamespace:
    return SimpleNamespace(tree=Tree(names), swept=["tsmct-1-4"], session=SimpleNamespace(prefix="tsmct-1-"))


def test_interrupted_and_empty(capsys: pytest.CaptureFixture[str]) -> None:
    _say_leftovers(state(["other"]), [], True)
    assert capsys.readouterr().err == ("tsm-conformance: interrupted; 0 report items left in fake tree "
                                       "(the end-of-run sweep removed 1)\n")


def test_interrupted_and_the_listing_disagrees(capsys: pytest.CaptureFixture[str]) -> None:
    _say_leftovers(state(["tsmct-1-9"]), [], True)
    assert "1 report item(s) could not be removed from fake tree: tsmct-1-9;" in capsys.readouterr().err


def test_interrupted_and_unlistable(capsys: pytest.CaptureFixture[str]) -> None:
    _say_leftovers(state(None), [], True)
    err = capsys.readouterr().err
    assert "cannot list fake tree (ENOTCONN) to confirm" in err and err.count("\n") == 1


def test_a_clean_finished_run_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    _say_leftovers(state(None), [], False)
    assert capsys.readouterr().err == ""
