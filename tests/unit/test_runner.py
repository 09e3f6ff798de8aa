"""The check runner: cleanup on failure and interrupt, probe errors, LiveTree safety."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tsm_conformance.checks.base import REGISTRY, Check, all_checks, probe
from tsm_conformance.checks.runner import Session
from tsm_conformance.outcome import Outcome, TsmError
from tsm_conformance.profile.load import load_profile
from tsm_conformance.target.emulated import EmulatedTree
from tsm_conformance.target.live import LiveTree


def test_failing_run_leaves_no_items() -> None:
    t = EmulatedTree("sev_guest+stale-outblob")
    res = Session(t, load_profile("sev_guest")).run()
    assert any(r.outcome == Outcome.FAIL for r in res)
    assert t.listdir("") == []


def test_interrupt_inside_a_check_removes_its_items() -> None:
    all_checks()
    t = EmulatedTree("tsm_test")

    def interrupted(ctx) -> None:  # noqa: ANN001
        with ctx.item(), ctx.item():
            raise KeyboardInterrupt

    s = Session(t, load_profile("tsm_test"))
    with pytest.raises(KeyboardInterrupt):
        s.execute(Check("x.y.z", "rule", "abi", interrupted))
    assert t.listdir("") == []


def test_probe_without_provider() -> None:
    t = EmulatedTree("tsm_test")
    t.kernel.unregister()
    with pytest.raises(TsmError, match="no report provider is registered.*--emulate"):
        probe(t, "p-")


def test_probe_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(TsmError, match="reading provider failed with ENOENT"):
        probe(LiveTree(str(tmp_path)), "p-")
    assert os.listdir(tmp_path) == []


def test_live_tree_stays_inside_its_root(tmp_path: Path) -> None:
    t = LiveTree(str(tmp_path))
    with pytest.raises(ValueError):
        t.mkdir("../escape")
    with pytest.raises(ValueError):
        t.rmdir("")
    with pytest.raises(FileNotFoundError):
        t.open("nofile", os.O_WRONLY | os.O_CREAT)  # O_CREAT is stripped: nothing is created
    assert os.listdir(tmp_path) == []


def test_catalogue_ids_are_dotted_and_rules_are_sentences() -> None:
    for c in all_checks():
        parts = c.id.split(".")
        assert len(parts) == 3 and all(p.replace("_", "").isalnum() and p.islower() for p in parts), c.id
        assert c.rule and c.abi and "#" not in c.id
    assert len(REGISTRY) >= 40


def test_checks_share_one_report_and_the_reproducer_makes_it_again() -> None:
    """format.* checks that only inspect a report's bytes share one (a budget counts it once); a
    failure in a sharing check still carries the operations that made it, so replay reproduces."""
    from tsm_conformance.seq import replay
    by_id = {c.id: c for c in all_checks()}
    spec = "sev_guest+report-signature-corrupt"
    t = EmulatedTree(spec)
    s = Session(t, load_profile("sev_guest"))
    assert s.execute(by_id["format.outblob.parses"]).outcome == Outcome.PASS
    used = s.reports_used
    assert used == 2  # outblob and auxblob of the one shared report
    r = s.execute(by_id["format.signature.verifies"])
    assert r.outcome == Outcome.FAIL and s.reports_used == used
    assert r.failure is not None
    assert any("shared: made once per run by format.outblob.parses" in line for line in r.failure.ops)
    # its log has the privlevel write a correct client makes (fd0), the nonce (fd1), the outblob read (fd2)
    assert any(line.startswith("write(fd0, b'0\\n')") for line in r.failure.ops), r.failure.ops
    assert any(line.startswith("read(fd2") for line in r.failure.ops)
    assert replay(EmulatedTree(spec), r.failure.sequence, "tsmrp-1-") == []  # type: ignore[arg-type]
    assert replay(EmulatedTree("sev_guest"), r.failure.sequence, "tsmrp-1-") != []  # type: ignore[arg-type]
    assert s.execute(by_id["format.auxblob.parses"]).outcome == Outcome.PASS and s.reports_used == used
    assert t.listdir("") == []


def test_a_hang_in_the_cleanup_after_a_hang_reports_both_first_one_first() -> None:
    """The check's own wait hangs first; then its item's rmdir hangs behind a worker blocked in the
    provider: the failure names the first hang and says the cleanup's came after it."""
    import threading
    import time

    from tsm_conformance.checks.base import read_unrecorded
    all_checks()
    t = EmulatedTree("sev_guest+report-hangs")

    def waits(ctx) -> None:  # noqa: ANN001
        with ctx.item() as r:
            ctx.write(f"{r}/inblob", ctx.nonce(64))
            threading.Thread(target=read_unrecorded, args=(ctx.tree.t, f"{r}/outblob"), daemon=True).start()
            time.sleep(30)  # the first hang: not a tree operation

    s = Session(t, load_profile("sev_guest"), op_timeout=1.0)
    r = s.execute(Check("x.hang.twice", "rule", "abi", waits))
    assert r.outcome == Outcome.TIMEOUT and r.failure is not None
    assert r.failure.observed.startswith("hung: waits() at ") and "test_runner.py" in r.failure.observed
    assert r.failure.observed.endswith("; then rmdir(r0) hung in the cleanup"), r.failure.observed
    ops = r.failure.ops
    first = next(i for i, line in enumerate(ops) if "-> hung: no result after" in line)
    assert ops[first + 1].startswith("rmdir(r0) -> hung in the cleanup")


@pytest.mark.parametrize("cap", [1, 2, 3, 5])
def test_report_budget_is_a_cap(cap: int) -> None:
    """--budget reports=N: never more than N report reads, even when one check makes several (the
    open past the cap stops that check as not-run)."""
    from tsm_conformance.checks.runner import Budget
    s = Session(EmulatedTree("sev_guest"), load_profile("sev_guest"), budget=Budget(reports=cap), prefix="tsmbn-")
    res = s.run([c for c in all_checks() if not c.id.startswith("model.")])
    assert s.reports_used == cap
    assert all(r.outcome != Outcome.FAIL for r in res)
    assert any("report budget used up" in r.reason for r in res)


def test_a_tree_that_goes_away_is_an_error_then_not_run() -> None:
    """A FUSE daemon that died (ENOTCONN on the report group itself) is not a conformance verdict:
    the failing check becomes an error and the rest are not-run."""
    import errno as _errno
    all_checks()
    t = EmulatedTree("tsm_test")
    gone = {"now": False}
    stat = t.stat

    def stat_or_gone(path: str):  # noqa: ANN202
        if gone["now"]:
            raise OSError(_errno.ENOTCONN, "Transport endpoint is not connected")
        return stat(path)
    t.stat = stat_or_gone  # type: ignore[method-assign]

    def dies(ctx) -> None:  # noqa: ANN001
        gone["now"] = True
        ctx.fail("x", "y", "z")

    s = Session(t, load_profile("tsm_test"))
    r = s.execute(Check("x.tree.gone", "rule", "abi", dies))
    assert r.outcome == Outcome.ERROR and "went away (ENOTCONN" in r.reason
    r2 = s.execute(Check("x.tree.after", "rule", "abi", lambda ctx: None))
    assert r2.outcome == Outcome.NOT_RUN and r2.reason.startswith("not-run: the tree went away")


def test_completion_gives_every_planned_check_one_verdict() -> None:
    """plugin.Completion after an interrupt: a check that never started gets a skipped setup, one
    whose setup was reported but not its verdict gets a skipped call, and every one a teardown (so
    --junitxml writes it, and KTAP sees a verdict instead of 'no result')."""
    from types import SimpleNamespace

    from tsm_conformance.plugin import Completion
    seen: list[tuple[str, str, str]] = []
    hook = SimpleNamespace(pytest_runtest_logstart=lambda **kw: None, pytest_runtest_logfinish=lambda **kw: None,
                           pytest_runtest_logreport=lambda report: seen.append(
                               (report.nodeid, report.when, report.outcome)))
    items = [SimpleNamespace(nodeid=f"t::{n}", location=("p", 0, n), path="p") for n in ("done", "cut", "never")]
    config = SimpleNamespace(option=SimpleNamespace(collectonly=False), hook=hook, getoption=lambda *a: 0)
    session = SimpleNamespace(items=items, config=config, exitstatus=2, shouldfail=False, shouldstop=False)
    c = Completion()
    c.interrupted = True
    c.phases = {"t::done": {"setup": "passed", "call": "passed", "teardown": "passed"}, "t::cut": {"setup": "passed"}}
    c.began = {"t::done", "t::cut"}
    c.pytest_sessionfinish(session)  # type: ignore[arg-type]
    assert seen == [("t::cut", "call", "skipped"), ("t::cut", "teardown", "passed"),
                    ("t::never", "setup", "skipped"), ("t::never", "teardown", "passed")]
