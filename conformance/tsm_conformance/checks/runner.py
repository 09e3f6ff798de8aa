"""Run checks without pytest: the engine under the plugin, the quirk-matrix tests and benchmarks."""

from __future__ import annotations

import errno
import itertools
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass

from .. import errnos
from ..names import RUN, with_pid
from ..outcome import FACES, NotApplicable, NotRun, Outcome, TsmError, TsmFailure, Unsupported
from ..profile.model import ExpectedFailure, Profile
from ..target.base import Tree
from ..verify.base import TrustAnchors, anchors_from_pem
from .base import (Check, Ctx, Facts, Recorder, SharedReport, all_checks, is_report_open, not_applicable_reason, probe,
                   report_opens)
from .deadline import WATCHDOG, OperationHung

#: Default per-operation deadline (seconds).  A TDX quote may legitimately take up to the guest
#: driver's 30 s GetQuote timeout while holding the global lock, and another operation may wait
#: that long for the lock before its own quote: 90 s is past both.  `run --op-timeout` changes it.
DEFAULT_OP_TIMEOUT = 90.0
BUDGET_FLOOR = 1.0  # seconds an operation always gets, even with the time budget used up


@dataclass
class Budget:
    """Caps for a run on real hardware (each report generation costs ms to s): report generations
    (counted as read opens of a report blob, an upper bound) and wall seconds.  Checks that would
    start past a cap are skipped as not-run; a running check is bounded by the op deadline."""

    reports: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``reports=N,time=S`` (either part, each once; N ≥ 1; S > 0 and finite, in seconds or with
        an s/m/h suffix).  ValueError with one line otherwise."""
        b, seen = cls(), set()
        usage = f"--budget {text}: expected reports=N and/or time=SECONDS (e.g. reports=200,time=10m)"
        for part in filter(None, (x.strip() for x in text.split(","))):
            k, sep, v = part.partition("=")
            if not sep or k not in ("reports", "time"):
                raise ValueError(usage)
            if k in seen:
                raise ValueError(f"--budget {text}: {k} given twice")
            seen.add(k)
            try:
                if k == "reports":
                    b.reports = int(v)
                else:
                    mult = {"s": 1, "m": 60, "h": 3600}.get(v[-1:], 0)
                    b.seconds = float(v[:-1] if mult else v) * (mult or 1)
            except ValueError:
                raise ValueError(usage) from None
            if b.reports is not None and b.reports < 1:
                raise ValueError(f"--budget {text}: reports must be at least 1 (the budget is "
                                 "checked before each check starts, so with 0 none could)")
            if b.seconds is not None and not (0 < b.seconds < float("inf")):
                raise ValueError(f"--budget {text}: time must be a positive, finite number of seconds")
        if not seen:
            raise ValueError(usage)
        return b


def _tree_anchors(tree: Tree) -> TrustAnchors:
    pems = tree.trust_anchor_pems()
    return anchors_from_pem(pems) if pems else TrustAnchors()


@dataclass
class Result:
    check: Check
    outcome: Outcome
    failure: TsmFailure | None = None
    reason: str = ""
    seconds: float = 0.0


class Session:
    """One run of the catalogue against one tree and one profile."""

    def __init__(self, tree: Tree, profile: Profile, facts: Facts | None = None, prefix: str | None = None,
                 anchors: TrustAnchors | None = None, op_timeout: float | None = DEFAULT_OP_TIMEOUT,
                 budget: Budget | None = None, stop_on_hang: bool = True) -> None:
        self.tree = tree
        # the user's anchors, else the target's own (an emulated tree knows its emulator's roots)
        self.anchors = anchors if anchors else _tree_anchors(tree)
        self.profile = profile
        self.prefix = prefix or with_pid(RUN)
        self.counter = itertools.count()
        self.facts = facts or probe(tree, self.prefix)
        self.visible = profile.visible_attributes(self.facts.groups_present(profile))
        self.recorder = Recorder(tree, {})
        self.op_timeout, self.budget, self.stop_on_hang = op_timeout, budget or Budget(), stop_on_hang
        self.reports_used = 0
        self.shared: dict[str, SharedReport] = {}  # reports checks share (Ctx.shared_report)
        self.started: float | None = None
        self._budget_cut = False  # the running check's deadline is the rest of the time budget
        self._hang_at: int | None = None  # see _op_text
        self.wedged = ""  # why later checks do not run: an operation hung and the tree may be stuck

    def not_run_reason(self, c: Check) -> str | None:
        """Why ``c`` must not start: an earlier hang, or an exhausted budget."""
        if self.wedged:
            return f"not-run: {self.wedged}"
        b = self.budget
        if b.seconds is not None and self.started is not None and time.monotonic() - self.started >= b.seconds:
            return f"not-run: time budget of {b.seconds:g} s used up"
        if b.reports is not None:
            if self.reports_used >= b.reports:
                return f"not-run: report budget used up ({self.reports_used} of {b.reports} report reads)"
            if c.area == "concurrency":  # worker threads read reports unrecorded, without bound
                return "not-run: concurrency checks make uncounted reports; excluded under a report budget"
        return None

    def _deadline(self) -> float | None:
        """This check's per-operation deadline: --op-timeout, or what is left of a time budget when
        that is shorter (at least BUDGET_FLOOR, so the check's cleanup can still run): a hang
        cannot carry the run past its budget; the check then fails as hung, like a kselftest
        TIMEOUT."""
        d, b = self.op_timeout, self.budget.seconds
        self._budget_cut = False
        if b is None or self.started is None:
            return d
        left = max(BUDGET_FLOOR, b - (time.monotonic() - self.started))
        if d is None or left < d:
            self._budget_cut = True
            return left
        return d

    def _op_text(self, op: str, args: list) -> str:
        """A recorded operation in flight, for a hang, in the failure text's vocabulary (seq.py): paths
        as r0..., fds by their names there and the file they opened (``read(fd1 = r0/outblob, 65536)``)."""
        rec = self.recorder
        if self._hang_at is None:  # the log's length when the first hung call was seen
            self._hang_at = len(rec.log)
        return rec.pending(op, args)

    def _report_gate(self, ctx: Ctx, args: tuple) -> None:
        """--budget reports=N is a cap, not a threshold: the open that would make report N+1 stops
        the check (skipped, "budget used up during the check"), so a run never asks for more."""
        cap = self.budget.reports
        if cap is None or not is_report_open(args):
            return
        if self.reports_used + report_opens(ctx.tree.log) - ctx.copied_opens >= cap:
            raise NotRun(f"not-run: report budget used up during this check ({cap} of {cap} report reads)")

    def _count_reports(self, ctx: Ctx) -> None:
        self.reports_used += report_opens(ctx.tree.log) - ctx.copied_opens

    def _hung(self, c: Check, ctx: Ctx, h: OperationHung, t0: float) -> Result:
        first = WATCHDOG.hung
        then = None
        if first is not None and first is not h and first.op != h.op:  # h hung in the cleanup after it
            h, then = first, h
        when = "returned only after" if h.completed else "no result after"
        lines = [f"{h.op} -> hung: {when} {h.seconds:.1f} s (deadline {h.deadline:.3g} s)"]
        if then is not None:
            lines.append(f"{then.op} -> hung in the cleanup: no result after {then.seconds:.1f} s")
        if self.stop_on_hang:
            self.wedged = f"{h.op} hung in {c.id}; later checks could block on the same lock"
        at = self._hang_at if self._hang_at is not None else len(ctx.tree.log)
        at = min(at, len(ctx.tree.log))
        log = list(ctx.tree.log)
        log[at:at] = [("#", (f"hung: {x.op}",), None) for x in (h, then) if x is not None]
        ops = ctx.tree.render()
        ops[at:at] = lines
        if self._budget_cut:
            self.wedged = f"time budget of {self.budget.seconds:g} s used up ({h.op} still running in {c.id})"
        header = {"check": c.id, "rule": c.rule, "expected": f"{h.op} returns within {h.deadline:.3g} s",
                  "observed": f"hung: {when} {h.seconds:.1f} s", "target": self.facts.target,
                  "kernel": self.facts.kernel_release}
        source = "--op-timeout" if not self._budget_cut else "what was left of --budget time"
        observed = f"hung: {h.op}: {when} {h.seconds:.1f} s"
        if then is not None:
            observed += f"; then {then.op} hung in the cleanup"
        f = TsmFailure(c.id, c.rule, f"{h.op} returns within {h.deadline:.3g} s ({source})", observed,
                       "run --budget time" if self._budget_cut else "run --op-timeout", ops,
                       self.facts.target, self.facts.kernel_release,
                       sequence=ctx.tree.sequence(header, log))
        return Result(c, Outcome.TIMEOUT, f, seconds=time.perf_counter() - t0)

    def expected_failure(self, c: Check) -> ExpectedFailure | None:
        return next((x for x in self.profile.expected_failures if x.check == c.id), None)

    def applicable(self, c: Check) -> str | None:
        return not_applicable_reason(c, self.profile, self.facts, self.visible)

    def execute(self, c: Check) -> Result:
        """Run one check: outcome pass / fail / timeout / skip-* / not-run / error (xfail mapping is
        the caller's)."""
        reason = self.applicable(c)
        if reason:
            return Result(c, Outcome.SKIP_NA, reason=reason)
        if self.started is None:
            self.started = time.monotonic()
        reason = self.not_run_reason(c)
        if reason:
            return Result(c, Outcome.NOT_RUN, reason=reason)
        ctx = Ctx(c, self.recorder, self.profile, self.facts, self.prefix, self.counter,
                  self.tree.control, self.anchors, self.shared)
        if self.budget.reports is not None:
            self.recorder.before_open = lambda args: self._report_gate(ctx, args)
        t0 = time.perf_counter()
        self._hang_at = None
        try:
            with WATCHDOG.guard(self._deadline(), self._op_text):
                try:
                    r = self._call(c, ctx, t0)
                finally:  # also after a hang: a hung mkdir may have made its item
                    ctx.cleanup()
                    self._count_reports(ctx)
        except OperationHung as h:  # raised during the cleanup itself
            return self._hung(c, ctx, h, t0)
        late = WATCHDOG.take()  # a call that returned only past its deadline (uninterruptible wait)
        if late is not None and r.outcome is not Outcome.TIMEOUT:
            return self._hung(c, ctx, late, t0)
        if FACES[r.outcome].fails_run:
            gone = self._tree_gone()
            if gone:  # not a verdict on the ABI: the tree itself went away (a FUSE daemon died, rmmod)
                self.wedged = gone
                return Result(c, Outcome.ERROR, reason=gone, seconds=r.seconds)
        return r

    def _tree_gone(self) -> str:
        """Why the report group can no longer be used (checked after a failure only), or ""."""
        try:
            with WATCHDOG.guard(self.op_timeout):  # a stuck daemon must not hang this check either
                self.tree.stat("")
        except OperationHung:
            WATCHDOG.take()
            return ""
        except OSError as e:
            if e.errno in (errno.ENOTCONN, errno.ENOENT, errno.ENODEV, errno.ESTALE, errno.EIO):
                return (f"the tree went away ({errnos.name(e.errno)} on the report group itself); "
                        "later checks cannot run")
        return ""

    def _call(self, c: Check, ctx: Ctx, t0: float) -> Result:
        try:
            c.func(ctx)
        except OperationHung as h:
            return self._hung(c, ctx, h, t0)
        except TsmFailure as f:
            f.target, f.kernel = self.facts.target, self.facts.kernel_release
            return Result(c, Outcome.TIMEOUT if f.timed_out else Outcome.FAIL, f, seconds=time.perf_counter() - t0)
        except NotApplicable as e:
            return Result(c, Outcome.SKIP_NA, reason=str(e))
        except NotRun as e:
            return Result(c, Outcome.NOT_RUN, reason=str(e))
        except Unsupported as e:
            return Result(c, Outcome.SKIP_UNSUPPORTED, reason=str(e))
        except OSError as e:  # an operation the check relied on failed: the tree broke the ABI
            broke = TsmFailure(c.id, c.rule, "every setup operation succeeds",
                               f"{e.__class__.__name__}: {e}", f"{self.profile.path}", ctx.tree.render(),
                               self.facts.target, self.facts.kernel_release)
            return Result(c, Outcome.FAIL, broke, seconds=time.perf_counter() - t0)
        except (TsmError, Exception) as e:  # noqa: BLE001  harness or target broke
            return Result(c, Outcome.ERROR, reason="".join(traceback.format_exception_only(e)).strip() +
                          "\n" + "\n".join(ctx.tree.render()), seconds=time.perf_counter() - t0)
        return Result(c, Outcome.PASS, seconds=time.perf_counter() - t0)

    def run(self, checks: Iterable[Check] | None = None) -> list[Result]:
        out = []
        for c in checks if checks is not None else all_checks():
            r = self.execute(c)
            xf = self.expected_failure(c)
            if xf and r.outcome.expected_to_fail() is not r.outcome:
                r.outcome = r.outcome.expected_to_fail()
                r.reason = (f"{xf.tracking} {xf.reason}" if r.outcome is Outcome.XFAIL
                            else f"expected to fail ({xf.tracking}) but passed")
            out.append(r)
        return out
