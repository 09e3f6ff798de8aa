"""The sequences fuzz target without atheris: plain random bytes on the faithful emulator find
nothing; under quirks it raises a Finding whose Sequence ``replay`` reproduces; the size-then-fill
race is counted as a known kernel bug, and a finding only where the fix is modelled."""

from __future__ import annotations

import os
import random

import pytest

from tsm_conformance.emulator import parse_spec
from tsm_conformance.seq import format_tsmseq, parse_tsmseq, replay
from tsm_conformance.target.emulated import EmulatedTree
from tsm_fuzz.api import Finding, TargetContext
from tsm_fuzz.targets import fuzz_sequences as F


def target(spec: str):  # noqa: ANN201
    return F.make(TargetContext(emulate=spec, prefix=f"tsmfzt-{os.getpid()}-"))


def inputs(n: int, seed: int = 0, one_thread: bool = False) -> list[bytes]:
    """Random inputs; ``one_thread``: the first byte asks for one thread (decode: head % 4 + 1)."""
    rnd = random.Random(seed)
    out = [bytearray(rnd.randrange(256) for _ in range(rnd.randrange(1, 48))) for _ in range(n)]
    for b in out:
        if one_thread:
            b[0] &= ~3
    return [bytes(b) for b in out]


def first_finding(spec: str, n: int = 400, one_thread: bool = False) -> Finding:
    one = target(spec)
    for data in inputs(n, seed=3, one_thread=one_thread):
        try:
            one(data)
        except Finding as f:
            return f
    pytest.fail(f"{spec}: no finding in {n} inputs")


# Writer (thread 1): 6 x churn (outblob_size 1000/21000 and an inblob commit, 6 times each);
# reader (thread 2): 6 x 4 generation-bracketed outblob reads.  Hand-decoded: see decode().
RACE = bytes([1] + [32, 0, 5] * 6 + [21, 0, 3] * 6)


@pytest.mark.parametrize("spec", ["sev_guest", "tsm_test"])
def test_faithful_emulator_gives_no_finding(spec: str) -> None:
    one = target(spec)
    for data in inputs(300):
        one(data)


# Deterministic faults are searched with one-thread inputs, whose findings replay exactly; a race's
# finding replays its evidence step (mkdir results) within the file's attempts.  (A racy finding
# whose evidence is report bytes rarely recurs byte for byte: the report counter moves.)
@pytest.mark.parametrize("spec,rule", [("sev_guest+shared-inblob", None), ("sev_guest+rmdir-read-eio", None),
                                       ("tsm_test+privlevel-reject-bumps", None), ("sev_guest+mkdir-race",
                                                                                    "mkdir.one_winner")])
def test_quirk_found_and_replay_reproduces(spec: str, rule: str | None) -> None:
    f = first_finding(spec, one_thread=rule is None)
    assert f.sequence is not None and (rule is None or f.rule == rule), f.rule
    seq = parse_tsmseq(format_tsmseq(f.sequence))  # through the file format, as the CLI would
    assert seq.header["emulate"] == spec
    base = spec.split("+")[0]
    assert replay(EmulatedTree(spec), seq, "rp-") == [], format_tsmseq(f.sequence)
    if rule is None:  # a one-thread finding is deterministic: on the faithful tree it never recurs
        assert replay(EmulatedTree(base), seq, "rp-") != []
    # A race's recorded results can also be those of a legal interleaving on the faithful tree
    # (e.g. mkdir, rmdir, mkdir: two successes), so "differs there" cannot be asserted for it;
    # test_faithful_emulator_gives_no_finding covers the faithful side.


def test_unlocked_generation_found() -> None:
    one = target("tsm_test+unlocked-generation")
    for _ in range(120):  # about 1 in 5 attempts shows the race; it returns at the first
        try:
            one(RACE)
        except Finding as f:
            assert f.rule.startswith(("report.binding", "generation.count", "model.")), f.rule
            return
    pytest.fail("unlocked-generation: no finding")


def test_size_then_fill_is_a_known_bug_not_a_finding() -> None:
    F.KNOWN.clear()
    one = target("tsm_test")
    for _ in range(30):
        one(RACE)  # no Finding: the race is the known kernel bug
    assert F.KNOWN["size-then-fill race"] > 0
    F.KNOWN.clear()
    fixed = target("tsm_test:size_fill_fix=1")
    for _ in range(30):
        fixed(RACE)  # with the fix modelled nothing is even counted
    assert F.KNOWN["size-then-fill race"] == 0


def test_the_last_input_replays_as_a_sequence_for_a_kernel_finding() -> None:
    """A kernel report found in the log after an input is carried by that input's Sequence
    (tsm_fuzz.api.sequence_hook finds last_sequence): one thread, with its results as expectations;
    a threaded one, replayed as threads, without them."""
    from tsm_fuzz.api import sequence_hook
    one = target("tsm_test:privlevel_floor=0")
    hook = sequence_hook(one)
    assert hook is not None and hook() is None  # nothing run yet
    one(bytes([0, 8, 0, 2, 28, 0, 1]))  # one thread: churn, then an outblob read
    seq = hook()
    assert seq.steps and all(s.expected is not None and s.thread is None for s in seq.steps)
    text = format_tsmseq(seq)
    assert "# check: fuzz.sequences" in text and parse_tsmseq(text).steps == seq.steps
    assert replay(EmulatedTree(parse_spec("tsm_test:privlevel_floor=0")), seq, "tsmrp-t-") == []
    race = os.path.join(os.path.dirname(__file__), "..", "corpora", "sequences", "race-commits-vs-reads")
    with open(race, "rb") as f:
        one(f.read())
    seq = hook()
    assert seq.header.get("schedule") == "threads" and all(s.expected is None for s in seq.steps)
