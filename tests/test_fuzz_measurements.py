"""The measurements fuzz target without atheris: plain random bytes on the faithful emulator find
nothing; under each measurement-register quirk it raises a Finding with the rule the quirk breaks,
and a one-thread finding's Sequence replays as itself on the quirk tree and differs on the faithful
one; the target is unavailable (one line) where there are no registers, and never writes a live
machine's registers unless its profile says a test may.  The slow test runs the real command."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tsm_conformance.runstate import build_state
from tsm_conformance.seq import Sequence, confine, fd_names, format_tsmseq, parse_tsmseq, replay, threaded
from tsm_conformance.target.emulated import EmulatedTree
from tsm_fuzz import targets
from tsm_fuzz.api import Finding, TargetContext
import tsm_fuzz.targets.fuzz_measurements as F

REPO = Path(__file__).resolve().parents[1]
REFRESH = "mr.refresh.only_after_write"


def target(spec: str):  # noqa: ANN201
    return F.make(TargetContext(emulate=spec, prefix=f"tsmfzm-{os.getpid()}-"))


def inputs(n: int, seed: int = 0, one_thread: bool = False) -> list[bytes]:
    """Random inputs; ``one_thread``: the first byte asks for one thread (decode: (1, 1, 2, 3)[head & 3])."""
    rnd = random.Random(seed)
    out = [bytearray(rnd.randrange(256) for _ in range(rnd.randrange(1, 48))) for _ in range(n)]
    if one_thread:
        for b in out:
            b[0] &= ~2
    return [bytes(b) for b in out]


def first_finding(spec: str, n: int, one_thread: bool = False, seed: int = 3) -> tuple[Finding, int]:
    one = target(spec)
    for k, data in enumerate(inputs(n, seed=seed, one_thread=one_thread)):
        try:
            one(data)
        except Finding as f:
            return f, k + 1
    pytest.fail(f"{spec}: no finding in {n} inputs")


@pytest.mark.parametrize(("spec", "n"), [("tsm_test", 1500), ("tdx_guest", 1000)])
def test_faithful_emulator_gives_no_finding(spec: str, n: int) -> None:
    one = target(spec)
    for data in inputs(n, seed=11):
        one(data)


def test_seeds_decode_and_pass_on_the_faithful_emulator() -> None:
    seeds = sorted((REPO / "corpora" / "measurements").iterdir())
    assert seeds
    for spec in ("tsm_test", "tdx_guest"):
        one = target(spec)
        for p in seeds:
            one(p.read_bytes())


# Each quirk within a few dozen one-thread inputs (most are found by the first few: the median
# time to find each is in docs/fuzzing.md); the rules are those the target's docstring names.
QUIRKS = [
    ("tsm_test+mr-overwrite", ("mr.extend.replayed", "mr.report.coherent")),
    ("tsm_test+mr-size-unchecked", ("mr.write.short_einval", "mr.write.offsets", "mr.write.long_clamped")),
    ("tsm_test+mr-readonly-writable", ("mr.readonly.refused",)),
    ("tsm_test+mr-refresh-always", (REFRESH,)),
    ("tsm_test+mr-stale-report", ("mr.report.coherent",)),
    ("tsm_test+mr-no-suffix", ("mr.files.match_profile",)),
    ("tdx_guest+mr-overwrite", ("mr.extend.replayed", "mr.report.coherent")),
    ("tdx_guest+mr-size-unchecked", ("mr.write.short_einval", "mr.write.offsets", "mr.write.long_clamped")),
    ("tdx_guest+mr-readonly-writable", ("mr.readonly.refused",)),
    ("tdx_guest+mr-stale-report", ("mr.report.coherent",)),
    ("tdx_guest+mr-no-suffix", ("mr.files.match_profile",)),
]


@pytest.mark.parametrize(("spec", "rules"), QUIRKS, ids=[q[0] for q in QUIRKS])
def test_quirk_found_and_replay_reproduces(spec: str, rules: tuple[str, ...]) -> None:
    f, n = first_finding(spec, 60, one_thread=True)
    assert f.rule in rules, f"{spec}: {f.rule}: {f.observed}"
    seq = parse_tsmseq(format_tsmseq(f.sequence))  # through the file format, as the CLI would
    assert not threaded(seq)
    h = seq.header
    assert h["emulate"] == spec and h["rule"] == f.rule and h["check"] == "fuzz.measurements"
    assert h["mr-group"].endswith("/measurements") and seq.mr()[0] == h["mr-group"]
    assert (h.get("mr-extend") == "yes") == spec.startswith("tsm_test")  # only a test provider's: profile
    assert replay(EmulatedTree(spec), seq, "rp-") == [], format_tsmseq(f.sequence)
    fixed = replay(EmulatedTree(spec.split("+")[0]), seq, "rp-")
    if f.rule == REFRESH:  # the refresh count is not among a sequence's results: the header says so
        assert fixed == [] and "refresh count" in h["note"]
    else:
        assert fixed != [], format_tsmseq(f.sequence)


def test_quirk_found_by_threaded_inputs() -> None:
    """Threaded schedules find the quirks too; a finding is shrunk to one thread when it still
    breaks the same rule there (a deterministic reproduction)."""
    rnd = random.Random(5)
    for spec in ("tsm_test+mr-overwrite", "tsm_test+mr-readonly-writable", "tdx_guest+mr-stale-report"):
        one = target(spec)
        for _ in range(200):
            data = bytearray(rnd.randrange(256) for _ in range(rnd.randrange(8, 48)))
            data[0] |= 2  # two or three threads
            try:
                one(bytes(data))
            except Finding as f:
                assert replay(EmulatedTree(spec), f.sequence, "rp-") == []
                break
        else:
            pytest.fail(f"{spec}: no finding in 200 threaded inputs")


def _runner(spec: str) -> Any:
    return F.Runner(TargetContext(emulate=spec, prefix=f"tsmfzm-{os.getpid()}-"))


def _reg_of(steps: list, st: Any) -> str:
    """The register file the fd of ``st`` was opened on ("" for an item's)."""
    names = fd_names(steps)
    opened = {names[i]: str(s.op.args[0]).partition("/")[2] for i, s in enumerate(steps) if s.op.name == "open"}
    return opened.get(str(st.op.args[0]), "")


# Two threads (head 0x02): T1 extends rtmr0 twice (macro 0x00 0x00), T2 reads rtmr0 whole twice
# (macro 0x19: read, register 2 of tsm_test's, variant 1: read(size + 1)).  Hand-decoded: see decode().
WRITER_READER = bytes([0x02, 0x00, 0x00, 0x19, 0x02, 0x01, 0x00, 0x00, 0x19, 0x02, 0x01])


def test_threaded_oracle_holds_reads_to_the_chain() -> None:
    """A value no serialization gives is a finding; so is one older than the thread saw before."""
    r = _runner("tsm_test")
    premade, macros = F.decode(WRITER_READER, r.shape)
    steps = F.schedule(premade, macros, r.shape)
    done, v = r.run(r.fresh(), steps)
    assert v is None, v
    reads = [i for i, s in enumerate(steps) if s.thread == "T2" and s.op.name == "read"]
    assert len(reads) == 2 and all(_reg_of(steps, steps[i]) == "rtmr0:sha384" for i in reads)
    chain = F._Walk(r.judge, steps, done, None).run(list(range(len(steps)))).chains["rtmr0"]
    assert len(chain) == 3  # the set-up's value and two extends
    forged = list(done)
    forged[reads[0]] = replace(done[reads[0]], result=b"\xff" * 48)  # on no chain
    v = r.judge(steps, forged, None, None)
    assert v is not None and v.rule == "mr.extend.replayed" and v.step == reads[0], v
    forged = list(done)
    forged[reads[0]] = replace(done[reads[0]], result=chain[2])  # the newest, then the oldest
    forged[reads[1]] = replace(done[reads[1]], result=chain[0])
    v = r.judge(steps, forged, None, None)
    assert v is not None and v.rule == "mr.extend.replayed" and v.step == reads[1], v
    forged[reads[1]] = replace(done[reads[1]], result=chain[2])  # the newest twice: a legal interleaving
    assert r.judge(steps, forged, None, None) is None


def test_unavailable_where_there_are_no_registers() -> None:
    mod = targets.load("measurements")
    assert targets.unavailable(mod) is None  # the module itself loads anywhere
    for spec, why in (("sev_guest", "sev_guest has no measurement registers"),
                      ("tsm_test@6.12", "measurement registers need Linux 6.16+ (kernel 6.12.0-tsm-emulated)"),
                      ("tsm_test:measurements=0", "no measurement group at /sys/devices/virtual/misc/tsm_test/")):
        got = targets.unavailable(mod, TargetContext(emulate=spec))
        assert got is not None and got.startswith(why) and "\n" not in got, got
        one = mod.make(TargetContext(emulate=spec))  # the runner asks without a tree: make() does nothing
        assert one.unavailable == got and one(b"\x00\x00\x00") is None
    assert targets.unavailable(mod, TargetContext(emulate="tdx_guest")) is None


class _LiveCtx(TargetContext):
    """A context whose tree says it is a live machine (the emulator's group behind it)."""

    def tree(self) -> Any:
        t = EmulatedTree(self.emulate or "")
        t.kind = "live"
        return t


def test_never_extends_a_live_machines_registers() -> None:
    """tdx_guest's registers measure the TD: on a live machine the target refuses to run; tsm_test's
    (``extendable_by_tests``) may be extended anywhere."""
    for spec, refused in (("tdx_guest", True), ("tsm_test", False)):
        st = build_state(None, spec, None)
        ctx = _LiveCtx(emulate=spec, profile=st.profile, facts=st.facts)
        why = F.unavailable(ctx)
        if refused:
            assert why is not None and why.startswith("extending tdx_guest's registers on a live machine"), why
            assert getattr(F.make(ctx), "unavailable", None) == why
        else:
            assert why is None


def test_last_sequence_carries_the_group() -> None:
    one = target("tsm_test")
    one(bytes([0, 0, 0, 0x28, 0, 0]))
    seq = one.__self__.last_sequence()
    assert seq.header["mr-group"] == "/sys/devices/virtual/misc/tsm_test/measurements"
    assert seq.header["mr-extend"] == "yes" and seq.header["emulate"] == "tsm_test"
    assert replay(EmulatedTree("tsm_test"), parse_tsmseq(format_tsmseq(seq)), "rp-") == []


def test_every_input_decodes_to_a_sequence_replay_accepts() -> None:
    r = _runner("tdx_guest")
    for data in [b"", b"\x03"] + inputs(200, seed=9):
        premade, macros = F.decode(data, r.shape)
        writers: dict[int, int] = {}
        for m in macros:
            if F.mutating(m):
                assert writers.setdefault(m[2], m[1]) == m[1]  # one writer thread per register
        steps = F.schedule(premade, macros, r.shape)
        seq = parse_tsmseq(format_tsmseq(Sequence(steps, r.header("", "", threaded(Sequence(steps, {}))))))
        confine(seq, "p-")  # what replay holds every sequence to
        assert [s.op for s in seq.steps] == [s.op for s in steps]


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "tsm-conformance"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tsm_conformance.cli"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_cli(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_command_finds_overwrite_and_passes_faithful(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    res = _run("fuzz", "measurements", "--emulate", "tsm_test+mr-overwrite", "--max-time", "30",
               "--minimize-time", "5", cwd=tmp_path)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    assert "measurements: FAILURE: mr." in res.stdout and "1 found" in res.stdout, res.stdout[-3000:]
    seqs = sorted((tmp_path / "fuzz-artifacts").glob("measurements-*.tsmseq"))
    assert seqs, res.stdout
    rep = _run("replay", str(seqs[-1]), "--emulate", "tsm_test+mr-overwrite", cwd=tmp_path)
    assert rep.returncode == 0 and "0 differ" in rep.stdout, rep.stdout + rep.stderr
    (tmp_path / "faithful").mkdir()
    ok = _run("fuzz", "measurements", "--emulate", "tsm_test", "--max-time", "5", cwd=tmp_path / "faithful")
    assert ok.returncode == 0 and "measurements     PASS" in ok.stdout, ok.stdout[-3000:] + ok.stderr[-2000:]


# A tree without registers under `fuzz all` (the target skipped with its reason, the run passing):
# tests/test_fuzz.py::test_fuzz_all_passes_on_faithful_emulator, which runs that very command.
