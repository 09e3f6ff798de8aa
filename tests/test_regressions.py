"""corpora/regressions/*.tsmseq: sequences whose expected results came from real kernels (the VM
differential); each must replay on its `# emulate:` spec with no step differing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsm_conformance.seq import parse_tsmseq, replay
from tsm_conformance.target.emulated import EmulatedTree

FILES = sorted((Path(__file__).resolve().parents[1] / "corpora" / "regressions").glob("*.tsmseq"))


def test_corpus_is_not_empty() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_regression_replays_clean(path: Path) -> None:
    seq = parse_tsmseq(path.read_text())
    assert seq.header.get("emulate") and seq.steps and all(s.expected is not None for s in seq.steps)
    diffs = replay(EmulatedTree(seq.header["emulate"]), seq, "reg-")
    assert not diffs, "\n".join(f"step {i + 1} {s.op}: expected {s.expected}, got {g}" for i, s, g in diffs)
