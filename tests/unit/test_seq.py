"""Operation sequences: text round trip, execution, and the kernel-vs-emulator comparison."""

from __future__ import annotations

import pytest

from tsm_conformance.seq import Op, execute, parse_op, replay
from tsm_conformance.seqgen import generate
from tsm_conformance.target.emulated import EmulatedTree
from tsm_conformance.vm import differential as D


@pytest.mark.parametrize("seed", range(40))
def test_generated_sequences_round_trip(seed: int) -> None:
    ops = generate(seed)
    assert ops and ops[0].name == "mkdir"
    assert [parse_op(str(o)) for o in ops] == ops


def test_parse_forms() -> None:
    assert parse_op("write(fd0, b'a,b\\'c')") == Op("write", ("fd0", b"a,b'c"))
    assert parse_op("open(r0/inblob, O_WRONLY|O_APPEND) -> fd0") == Op("open", ("r0/inblob", "O_WRONLY|O_APPEND"))
    assert parse_op("pread(fd1, 16, 0)  # EINVAL") == Op("pread", ("fd1", 16, 0))
    with pytest.raises(ValueError):
        parse_op("unlink(r0)")


def test_execute_is_deterministic_and_cleans_up() -> None:
    ops = generate(3)
    t1, t2 = EmulatedTree("tsm_test"), EmulatedTree("tsm_test")
    assert execute(t1, ops, "s-", ["r0"]) == execute(t2, ops, "s-", ["r0"])
    assert t1.listdir("") == []


def test_results_normalised() -> None:
    ops = [parse_op(x) for x in ("mkdir(r0)", "open(r0/inblob, O_WRONLY)", "write(fd0, b'x')", "close(fd0)",
                                 "open(r0/outblob, O_RDONLY)", "read(fd0, 10)", "read(fd1, 4)", "close(fd1)",
                                 "listdir(.)", "open(r9/inblob, O_WRONLY)", "write(fd2, b'y')")]
    res = execute(EmulatedTree("tsm_test"), ops, "n-", ["r0"])
    assert res == ["0 gen=0", "fd0", "1 gen=0", "0 gen=1", "fd1", "EBADF", "b'TSMT'", "0 gen=1", "[r0]", "ENOENT",
                   "EBADF gen=1"]


def _emulated_kernel(seqs: list[dict], spec_suffix: str = "") -> list[dict]:
    out = []
    for s in seqs:
        spec = "tsm_test:" + ",".join(s["params"].split()) + spec_suffix
        out.append({"id": s["id"], "results": execute(EmulatedTree(spec), [parse_op(x) for x in s["ops"]],
                                                      f"tsmdf-{s['id']}-", s["track"])})
    return out


def test_differential_agrees_with_itself_and_catches_a_quirk() -> None:
    seqs = D.make_sequences(30, seed=100)
    divs, errors = D.compare(seqs, _emulated_kernel(seqs, "@6.12"), "6.12")
    assert divs == [] and errors == []
    divs, _ = D.compare(seqs, _emulated_kernel(seqs, "@6.12+kstrtouint-lenient"), "6.12")
    assert divs and "!!" in divs[0].render()
    divs, _ = D.compare(seqs, _emulated_kernel(seqs, "@6.12"), "6.7")  # the era matters
    assert divs


def test_era_of_release() -> None:
    assert D.era_of("6.12.117+deb12-amd64") == "6.12" and D.era_of("7.3.4+deb13-amd64") == "7.3"


def test_tsmseq_round_trip_and_errors() -> None:
    from tsm_conformance.seq import Sequence, Step, format_tsmseq, parse_tsmseq
    seq = Sequence([Step(parse_op("mkdir(r0)"), "0"), Step(parse_op("write(fd0, b'#x')"), "EBADF", "T1"),
                    Step(parse_op("close(fd0)"))], {"emulate": "tsm_test@6.12", "track": "r0"})
    text = format_tsmseq(seq)
    assert text.startswith("# tsmseq 1\n# emulate: tsm_test@6.12\n") and "T1: write(fd0, b'#x')  # EBADF" in text
    back = parse_tsmseq(text)
    assert back.steps == seq.steps and back.header == seq.header and back.track() == ["r0"]
    with pytest.raises(ValueError, match="line 1"):
        parse_tsmseq("mkdir(r0)\n")
    with pytest.raises(ValueError, match="line 3"):
        parse_tsmseq("# tsmseq 1\nmkdir(r0)\nunlink(r0)\n")


def test_failure_sequence_reproduces_on_its_tree_only() -> None:
    from tsm_conformance.checks.base import REGISTRY, all_checks
    from tsm_conformance.checks.runner import Session
    from tsm_conformance.profile.load import load_profile
    from tsm_conformance.seq import format_tsmseq, parse_tsmseq, replay
    all_checks()
    (r,) = Session(EmulatedTree("tdx_guest+efbig-close-no-commit"), load_profile("tdx_guest")).run(
        [REGISTRY["inblob.oversize.close_commits_empty"]])
    seq = parse_tsmseq(format_tsmseq(r.failure.sequence))
    assert seq.header["check"] == "inblob.oversize.close_commits_empty"
    assert seq.header["emulate"] == "tdx_guest@7.0+efbig-close-no-commit"
    assert replay(EmulatedTree(seq.header["emulate"]), seq, "a-") == []  # reproduces the observation
    assert replay(EmulatedTree("tdx_guest"), seq, "b-")  # a faithful tree behaves differently


def test_divergence_file_replays_to_the_divergence() -> None:
    from tsm_conformance.seq import parse_tsmseq
    seqs = D.make_sequences(30, seed=100)
    kernel = _emulated_kernel(seqs, "@6.12+kstrtouint-lenient")  # stands in for a deviating kernel
    divs, _ = D.compare(seqs, kernel, "6.12")
    seq = parse_tsmseq(D.divergence_file(divs[0], "6.12", "test"))
    diffs = replay(EmulatedTree(seq.header["emulate"]), seq, "dv-")
    assert diffs and diffs[0][0] == divs[0].index
