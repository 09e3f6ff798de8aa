"""The profile and tsmseq fuzz targets' oracle can fail: a refusal in more than one line, or any
other exception, is a finding; a one-line refusal and a good input are not."""

from __future__ import annotations

import pytest

from tsm_conformance import seq
from tsm_conformance.profile import load
from tsm_fuzz.api import Finding, TargetContext
from tsm_fuzz.targets import fuzz_profile, fuzz_tsmseq

GOOD_SEQ = b"# tsmseq 1\nmkdir(r0)  # 0\nrmdir(r0)  # 0\n"


def test_tsmseq_target_passes_good_and_one_line_refusals() -> None:
    one = fuzz_tsmseq.make(TargetContext(emulate="tsm_test"))
    one(GOOD_SEQ)
    one(b"not a tsmseq\n")  # refused in one line: fine


@pytest.mark.parametrize("raised", [ValueError("line one\nline two"), ValueError(""), KeyError("boom")])
def test_tsmseq_target_finds_a_bad_refusal(monkeypatch: pytest.MonkeyPatch, raised: Exception) -> None:
    def parse(text: str) -> seq.Sequence:
        raise raised
    monkeypatch.setattr(seq, "parse_tsmseq", parse)
    one = fuzz_tsmseq.make(TargetContext(emulate="tsm_test"))
    with pytest.raises(Finding, match="not one line|KeyError"):
        one(GOOD_SEQ)


def test_profile_target_passes_and_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    one = fuzz_profile.make(TargetContext())
    one(b"name: x\n")  # a one-line ProfileError
    one(b"\xff\xfe")
    # ProfileError folds its message into one line itself; an empty one is what can still go wrong
    monkeypatch.setattr(load, "load_profile", lambda path: (_ for _ in ()).throw(load.ProfileError("")))
    with pytest.raises(Finding, match="ProfileError that is not one line"):
        fuzz_profile.make(TargetContext())(b"name: x\n")
    monkeypatch.setattr(load, "load_profile", lambda path: (_ for _ in ()).throw(RecursionError("deep")))
    with pytest.raises(Finding, match="RecursionError: deep"):
        fuzz_profile.make(TargetContext())(b"name: x\n")
