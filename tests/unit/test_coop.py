"""Cooperative schedules (tsm_conformance/coop.py): one seed, one interleaving; a taken lock is
waited for by running its holder; a deadlock or a sleep past the deadline ends the schedule with
the rest hung, at once; the hooks do nothing on other threads."""

from __future__ import annotations

import threading
import time

import pytest

from tsm_conformance import coop
from tsm_conformance.emulator.locks import RWLock, locked
from tsm_conformance.seq import HUNG, execute_threads, parse_tsmseq
from tsm_conformance.target.emulated import EmulatedTree

# a writer committing nonces while a reader reads outblob whole, bracketed by generation
A, B = "a" * 64, "b" * 64
RACE = f"""\
mkdir(r0)
T1: open(r0/inblob, O_WRONLY)  # fd0
T2: open(r0/generation, O_RDONLY)  # fd1
T1: write(fd0, b'{A}')
T2: read(fd1, 64)
T1: close(fd0)
T2: open(r0/outblob, O_RDONLY)  # fd2
T1: open(r0/inblob, O_WRONLY)  # fd3
T2: read(fd2, 65536)
T1: write(fd3, b'{B}')
T2: open(r0/generation, O_RDONLY)  # fd4
T1: close(fd3)
T2: read(fd4, 64)
"""


def results(spec: str, text: str, seed: int, deadline: float = 30.0) -> list[object]:
    steps = parse_tsmseq("# tsmseq 1\n" + text).steps
    return [d.result for d in execute_threads(EmulatedTree(spec), steps, "tsmcoop-", deadline, coop=seed)]


def test_a_seed_is_one_interleaving_and_seeds_differ() -> None:
    first = {seed: results("tsm_test", RACE, seed) for seed in range(40)}
    assert all(results("tsm_test", RACE, seed) == first[seed] for seed in range(0, 40, 7))
    assert len({repr(r) for r in first.values()}) > 1  # different seeds, different interleavings


def test_a_taken_lock_is_waited_for_by_running_its_holder() -> None:
    lock, order = RWLock(), []

    def writer() -> None:
        with lock.write():
            order.append("w+")
            coop.point()
            coop.point()
            order.append("w-")

    def reader() -> None:
        with lock.read():
            order.append("r")
    for seed in range(30):
        order.clear()
        assert coop.Scheduler(seed).run([writer, reader], 5.0)
        assert order in (["w+", "w-", "r"], ["r", "w+", "w-"]), order


def test_a_deadlock_ends_the_schedule_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coop, "SWITCH", 1.0)  # switch at every point: each takes its first lock
    a, b = threading.Lock(), threading.Lock()

    def one(first: threading.Lock, second: threading.Lock) -> None:
        with locked(first):
            coop.point()
            with locked(second):
                pass
    t0 = time.monotonic()
    assert not coop.Scheduler(1).run([lambda: one(a, b), lambda: one(b, a)], 30.0)
    assert time.monotonic() - t0 < 5
    assert coop.ACTIVE is None


def test_a_report_that_never_comes_is_hung_without_waiting_for_the_deadline() -> None:
    text = f"mkdir(r0)\nmkdir(r1)\nT1: open(r0/inblob, O_WRONLY)  # fd0\nT1: write(fd0, b'{A}')\nT1: close(fd0)\n" \
           "T1: open(r0/outblob, O_RDONLY)  # fd1\nT1: read(fd1, 65536)\nT2: listdir(.)\n"
    t0 = time.monotonic()
    got = results("tsm_test+report-hangs", text, 3, deadline=20.0)
    assert time.monotonic() - t0 < 5
    assert got[6] == HUNG and got[7] != HUNG, got  # the other program finished


def test_an_exception_in_a_program_leaves_its_steps_unfinished_and_the_others_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    ran = []

    def bad() -> None:
        raise RuntimeError("boom")
    assert coop.Scheduler(0).run([bad, lambda: ran.append(1)], 5.0)
    assert ran == [1] and "RuntimeError: boom" in capsys.readouterr().err


def test_the_hooks_do_nothing_on_other_threads() -> None:
    seen = []

    def elsewhere() -> None:
        seen.append(coop.current())
        with RWLock().write():  # a plain lock on this thread
            coop.point()
        seen.append("done")

    def program() -> None:
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join()
    assert coop.Scheduler(0).run([program, lambda: None], 5.0)
    assert seen == [None, "done"]
