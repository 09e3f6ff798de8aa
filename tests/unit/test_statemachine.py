"""model.state_machine.sequential: passes on the faithful emulator for every provider, fails under
the behavioural quirks listed in CATCHES (with a replayable, minimised sequence), and is
reproducible from its logged seed."""

from __future__ import annotations

import pytest

from tsm_conformance.checks import statemachine as SM
from tsm_conformance.checks.base import all_checks
from tsm_conformance.checks.runner import Session
from tsm_conformance.emulator.providers import CONFIGS
from tsm_conformance.emulator.quirks import QUIRKS
from tsm_conformance.outcome import Outcome
from tsm_conformance.profile.load import load_profile
from tsm_conformance.seq import parse_tsmseq, format_tsmseq, replay
from tsm_conformance.target.emulated import EmulatedTree

CHECK = next(c for c in all_checks() if c.id == "model.state_machine.sequential")
SEED = 20261126

# quirk -> provider: behavioural faults one thread can see through the tree (the oracle's model
# predicts them); races, provider lifecycle, report formats and the wrap guard are other checks'.
CATCHES = {
    "stale-outblob": "tsm_test", "no-cache": "tsm_test", "inblob-truncate": "sev_guest",
    "efbig-close-no-commit": "tsm_test", "zero-write-accepted": "tdx_guest", "inblob-commit-on-write": "tsm_test",
    "inblob-last-write-wins": "tsm_test", "pwrite-ignores-offset": "tsm_test", "privlevel-no-generation": "tsm_test",
    "privlevel-reject-bumps": "tsm_test", "privlevel-max-unchecked": "sev_guest", "kstrtouint-lenient": "tsm_test",
    "privlevel-decimal-only": "arm_cca_guest", "nonce-ignored": "sev_guest", "read-before-inblob-enodata": "tsm_test",
    "read-bumps-generation": "tsm_test", "generation-starts-at-1": "tdx_guest", "shared-generation": "tsm_test",
    "mkdir-duplicate-ok": "tsm_test", "rmdir-name-leak": "tsm_test", "rmdir-keeps-state": "tsm_test",
    "rmdir-silent-fail": "tsm_test", "rdwr-allowed": "tsm_test", "wo-readable": "tsm_test", "bin-seekable": "tsm_test",
    "shared-inblob": "sev_guest", "rmdir-read-eio": "tsm_test", "short-inblob-accepted": "sev_guest",
    "no-snapshot": "tsm_test", "vmpl-ignored": "tsm_test",
}


def run(spec: str, config: str) -> object:
    (r,) = Session(EmulatedTree(spec), load_profile(config)).run([CHECK])
    return r


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SM, "SEED", SEED)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_faithful_emulator_passes(config: str, seeded: None) -> None:
    r = run(config, config)
    assert r.outcome == Outcome.PASS, r.failure and r.failure.observed
    assert r.seconds < 5  # about 0.6 s on an idle machine; the suite budget is ~2 s per provider


@pytest.mark.parametrize("quirk", sorted(CATCHES))
def test_quirk_caught(quirk: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run is a random sample of sequences: caught by at least one of three fixed seeds."""
    monkeypatch.setattr(SM, "SHRINK", False)
    assert CATCHES[quirk] in QUIRKS[quirk].applies_to
    outcomes = []
    for s in (SEED, SEED + 1, SEED + 2):
        monkeypatch.setattr(SM, "SEED", s)
        r = run(f"{CATCHES[quirk]}+{quirk}", CATCHES[quirk])
        outcomes.append(r.outcome)
        if r.outcome == Outcome.FAIL:
            return
    pytest.fail(f"{quirk}: {outcomes}")


def test_failure_is_minimised_replayable_and_seeded(seeded: None) -> None:
    r1 = run("tsm_test+privlevel-reject-bumps", "tsm_test")
    assert r1.outcome == Outcome.FAIL
    f = r1.failure
    assert f"hypothesis seed {SEED}" in f.observed and any(f"seed {SEED}" in line for line in f.ops)
    assert len(f.sequence.steps) < 20, f.ops  # shrunk
    seq = parse_tsmseq(format_tsmseq(f.sequence))
    assert replay(EmulatedTree("tsm_test+privlevel-reject-bumps"), seq, "rp-") == []
    assert replay(EmulatedTree("tsm_test"), seq, "rp-") != []
    r2 = run("tsm_test+privlevel-reject-bumps", "tsm_test")  # the same seed finds the same example
    assert r2.failure.ops == f.ops
