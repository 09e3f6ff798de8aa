"""Operation sequences: text round trip, execution, and the kernel-vs-emulator comparison."""

from __future__ import annotations

import gc
import os
import threading

import pytest

from tsm_conformance.seq import Op, Pool, Step, execute, execute_threads, parse_op, replay, show
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


def _failing(spec: str, check_id: str):  # noqa: ANN202
    """Run one check on an emulated tree; its failure (it must fail there)."""
    from tsm_conformance.checks.base import REGISTRY, all_checks
    from tsm_conformance.checks.runner import Session
    from tsm_conformance.profile.load import load_profile
    all_checks()
    (r,) = Session(EmulatedTree(spec), load_profile(spec.split("+")[0].split("@")[0])).run([REGISTRY[check_id]])
    assert r.failure is not None and r.failure.sequence is not None, (spec, check_id, r.outcome, r.reason)
    return r.failure


# Report-content failures: each generation's bytes differ (signatures, counters), so a replay
# compares report reads by their projection and reproduces on the quirky tree only.
@pytest.mark.parametrize(("spec", "check_id"), [
    ("sev_guest+stale-outblob", "cache.outblob.regenerated_after_inblob"),
    ("sev_guest+stale-outblob", "cache.outblob.regenerated_after_option"),
    ("sev_guest+no-cache", "cache.outblob.stable_without_writes"),
    ("sev_guest+no-cache", "outblob.partial_reads.consistent"),
    ("sev_guest+nonce-ignored", "outblob.nonce.bound"),
    ("sev_guest+nonce-ignored", "format.outblob.nonce_bound"),
    ("sev_guest+vmpl-ignored", "privlevel.report.echoed"),
    ("sev_guest+report-signature-corrupt", "format.signature.verifies"),
    ("tdx_guest+no-cache", "cache.outblob.stable_without_writes"),
    ("tdx_guest+nonce-ignored", "format.outblob.nonce_bound"),
    ("tsm_test+stale-outblob", "cache.outblob.regenerated_after_inblob"),
    ("tsm_test+nonce-ignored", "outblob.nonce.bound"),
])
def test_report_content_failure_replays_as_itself(spec: str, check_id: str) -> None:
    from tsm_conformance.seq import format_tsmseq, parse_tsmseq
    seq = parse_tsmseq(format_tsmseq(_failing(spec, check_id).sequence))
    assert seq.header["report"] and seq.report() is not None
    assert any(s.expected and s.expected.startswith("report ") for s in seq.steps)
    assert replay(EmulatedTree(seq.header["emulate"]), seq, "q-") == []  # the failure, again
    faithful = spec.split("+")[0]
    assert replay(EmulatedTree(faithful), seq, "f-"), f"{check_id} does not reproduce on a faithful {faithful}"


def test_report_reads_are_projected_as_the_failure_says() -> None:
    """What the projection says for the three faults: a stale cache serves the old report's bytes
    (and its nonce), no cache makes a second read differ, an ignored nonce leaves the field zero."""
    stale = _failing("sev_guest+stale-outblob", "cache.outblob.regenerated_after_inblob").sequence
    reads = [s.expected for s in stale.steps if s.expected and s.expected.startswith("report ")]
    assert len(reads) == 2 and reads[1].endswith("same bytes as fd2")
    assert reads[0].split(", ")[1] == reads[1].split(", ")[1]  # the same nonce field: the old one
    fresh = _failing("sev_guest+no-cache", "cache.outblob.stable_without_writes").sequence
    assert [s.expected for s in fresh.steps if s.expected and s.expected.startswith("report ")][1].endswith(
        "differs from fd2")
    ignored = _failing("sev_guest+nonce-ignored", "outblob.nonce.bound")
    zero = f"nonce <64 sha1:{__import__('hashlib').sha1(bytes(64)).hexdigest()[:8]}>"
    assert any(zero in line for line in ignored.ops), ignored.ops


def test_failure_text_and_tsmseq_are_the_same_steps() -> None:
    """One rendering: the failure text's operation lines are the .tsmseq's steps, fds numbered the
    same way (failed opens counted, as replay numbers them)."""
    from tsm_conformance.seq import render_step
    f = _failing("sev_guest+wo-readable", "access.rdwr.eacces")
    ops = [line for line in f.ops if not line.startswith("#")]
    assert ops == [render_step(s) for s in f.sequence.steps]
    assert "open(r0/inblob, O_RDWR) -> fd2" in ops and "close(fd2) -> 0" in ops  # after two failed opens
    assert replay(EmulatedTree("sev_guest+wo-readable"), f.sequence, "w-") == []
    f = _failing("sev_guest+no-cache", "cache.outblob.stable_without_writes")
    assert [line for line in f.ops if not line.startswith("#")] == [render_step(s) for s in f.sequence.steps]


def test_log_vocabulary_for_pending_ops_and_unknown_fds() -> None:
    import errno
    import os

    from tsm_conformance.seq import from_log, render_log, render_pending
    names = {"x-1": "r0"}
    log = [("mkdir", ("x-1",), None), ("open", ("x-1/auxblob", os.O_RDWR), OSError(errno.EACCES, "")),
           ("open", ("x-1/outblob", os.O_RDONLY), 7), ("#", ("host: busy=1",), None),
           ("lseek", (7, 0, os.SEEK_END), 1184), ("write", (9, b"y" * 30), OSError(errno.EBADF, "")),
           ("listdir", ("",), ["x-1", "someone-else"])]
    assert render_log(log, names) == [
        "mkdir(r0) -> 0", "open(r0/auxblob, O_RDWR) -> EACCES", "open(r0/outblob, O_RDONLY) -> fd1",
        "# host: busy=1", "lseek(fd1, 0, SEEK_END) -> 1184",
        f"write(fd?, <30 bytes sha1:{__import__('hashlib').sha1(b'y' * 30).hexdigest()[:8]}>) -> EBADF",
        "listdir(.) -> [r0]"]
    assert render_pending(log, names, "read", [7, 65536]) == "read(fd1 = r0/outblob, 65536)"
    assert render_pending(log, names, "rmdir", ["x-1"]) == "rmdir(r0)"
    seq = from_log(log, names, {"check": "x"})
    assert seq.header["provider-control"] == "host: busy=1" and "report" not in seq.header
    assert str(seq.steps[4].op) == f"write(fd?, {b'y' * 30!r})"  # the note is a header, not a step


def test_report_shape_header() -> None:
    from tsm_conformance.profile.load import load_profile
    from tsm_conformance.seq import ReportShape, parse_tsmseq
    for name in ("sev_guest", "tdx_guest", "arm_cca_guest", "tsm_test"):
        shape = ReportShape.of(load_profile(name))
        assert ReportShape.parse(shape.text()) == shape
    assert ReportShape.of(load_profile("tsm_test")).text() == "nonce=0x40+64 privlevel=0x10+4"
    assert ReportShape.parse("bytes") == ReportShape()
    for bad in ("nonce=0x40", "colour=red", "format=", "privlevel=x+4"):
        with pytest.raises(ValueError):
            ReportShape.parse(bad)
    with pytest.raises(ValueError, match="header report"):
        parse_tsmseq("# tsmseq 1\n# report: nonce=1\nmkdir(r0)  # 0\n")


# ---------------------------------------------------------------------------- the worker pool
def test_pool_reuses_its_workers_and_releases_them_together() -> None:
    pool = Pool()
    seen: list[set[int]] = []
    for _ in range(3):
        gate = threading.Barrier(3, timeout=5)  # passes only if all three programs run at once
        ids: set[int] = set()

        def prog(gate: threading.Barrier = gate, ids: set[int] = ids) -> None:
            gate.wait()
            ids.add(threading.get_ident())
        pool.run([prog, prog, prog], deadline=10)
        assert len(ids) == 3 and threading.get_ident() not in ids
        seen.append(ids)
    assert seen[0] == seen[1] == seen[2]  # the same threads every time
    workers = [t for t in threading.enumerate() if t.ident in seen[0]]
    del pool  # parked workers end with their pool: none outlives it (cleanup.wait_for_workers)
    gc.collect()
    for t in workers:
        t.join(5)
    assert len(workers) == 3 and not any(t.is_alive() for t in workers)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to spread over")
def test_pool_puts_a_schedules_programs_on_distinct_cpus_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept threads woken together drift onto one CPU and run one after the other (races recur
    less): a schedule's k-th program is bound to the k-th allowed CPU; TSM_NO_AFFINITY=1 leaves
    placement to the scheduler."""
    allowed = sorted(os.sched_getaffinity(0))

    def placements(pool: Pool) -> list[set[int]]:
        got: list[set[int]] = [set(), set()]
        progs = [lambda k=k: got[k].update(os.sched_getaffinity(0)) for k in range(2)]
        pool.run(progs, deadline=10)
        return got
    assert placements(Pool()) == [{allowed[0]}, {allowed[1]}]
    monkeypatch.setenv("TSM_NO_AFFINITY", "1")
    assert placements(Pool()) == [set(allowed), set(allowed)]
    assert os.sched_getaffinity(0) == set(allowed)  # the caller's thread is never bound


def test_pool_never_reuses_a_hung_worker_and_survives_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = Pool()
    hooked: list[type] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: hooked.append(a.exc_type))
    release, ids = threading.Event(), []

    def stuck() -> None:
        ids.append(threading.get_ident())
        release.wait(10)

    def boom() -> None:
        raise RuntimeError("x")
    pool.run([stuck, boom], deadline=0.2)  # returns at the deadline
    assert hooked == [RuntimeError]
    after: list[int] = []
    pool.run([lambda: after.append(threading.get_ident())] * 2, deadline=5)
    assert len(after) == 2 and ids[0] not in after  # the hung one sits out
    release.set()
    pool.close()


def test_execute_threads_same_results_with_a_pool() -> None:
    text = ["mkdir(r0)", "mkdir(r1)", "T1: open(r0/inblob, O_WRONLY)", "T2: open(r1/inblob, O_WRONLY)",
            "T1: write(fd0, b'abc')", "T2: write(fd1, b'defg')", "T1: close(fd0)", "T2: close(fd1)",
            "T1: open(r0/generation, O_RDONLY)", "T2: open(r1/generation, O_RDONLY)", "T1: read(fd2, 64)",
            "T2: read(fd3, 64)", "listdir(.)"]
    steps = [Step(parse_op(t.partition(": ")[2] if t.startswith("T") else t), None,
                  t[:2] if t.startswith("T") else None) for t in text]
    pool = Pool()
    want = [show(d.result) for d in execute_threads(EmulatedTree("tsm_test"), steps, "p-")]
    assert want[-1] == "[r0, r1]" and want[-3:-1] == ["b'1\\n'"] * 2
    for _ in range(3):
        tree = EmulatedTree("tsm_test")
        assert [show(d.result) for d in execute_threads(tree, steps, "p-", pool=pool)] == want
        assert tree.listdir("") == []
    pool.close()
