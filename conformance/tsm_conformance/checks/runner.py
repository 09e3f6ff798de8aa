"""Run checks without pytest: the engine under the plugin, the quirk-matrix tests and benchmarks."""

from __future__ import annotations

import itertools
import os
import time
import traceback
from dataclasses import dataclass
from typing import Iterable

from ..outcome import NotApplicable, Outcome, TsmError, TsmFailure, Unsupported
from ..profile.model import ExpectedFailure, Profile
from ..target.base import Tree
from ..verify.base import TrustAnchors, anchors_from_pem
from .base import Check, Ctx, Facts, Recorder, all_checks, not_applicable_reason, probe


def _tree_anchors(tree: Tree) -> TrustAnchors:
    pems = getattr(tree, "trust_anchor_pems", None)
    return anchors_from_pem(pems()) if pems else TrustAnchors()


@dataclass
class Result:
    check: Check
    outcome: str
    failure: TsmFailure | None = None
    reason: str = ""
    seconds: float = 0.0


class Session:
    """One run of the catalogue against one tree and one profile."""

    def __init__(self, tree: Tree, profile: Profile, facts: Facts | None = None, prefix: str | None = None,
                 anchors: TrustAnchors | None = None) -> None:
        self.tree = tree
        # the user's anchors, else the target's own (an emulated tree knows its emulator's roots)
        self.anchors = anchors if anchors else _tree_anchors(tree)
        self.profile = profile
        self.prefix = prefix or f"tsmct-{os.getpid()}-"
        self.counter = itertools.count()
        self.facts = facts or probe(tree, self.prefix)
        self.visible = profile.visible_attributes(self.facts.groups_present(profile))
        self.recorder = Recorder(tree, {})

    def expected_failure(self, c: Check) -> ExpectedFailure | None:
        return next((x for x in self.profile.expected_failures if x.check == c.id), None)

    def applicable(self, c: Check) -> str | None:
        return not_applicable_reason(c, self.profile, self.facts, self.visible)

    def execute(self, c: Check) -> Result:
        """Run one check: outcome pass / fail / skip-* / error (xfail mapping is the caller's)."""
        reason = self.applicable(c)
        if reason:
            return Result(c, Outcome.SKIP_NA, reason=reason)
        ctx = Ctx(c, self.recorder, self.profile, self.facts, self.prefix, self.counter,
                  getattr(self.tree, "control", None), self.anchors)
        t0 = time.perf_counter()
        try:
            try:
                c.func(ctx)
            finally:
                ctx.cleanup()
        except TsmFailure as f:
            f.target, f.kernel = self.facts.target, self.facts.kernel_release
            return Result(c, Outcome.FAIL, f, seconds=time.perf_counter() - t0)
        except NotApplicable as e:
            return Result(c, Outcome.SKIP_NA, reason=str(e))
        except Unsupported as e:
            return Result(c, Outcome.SKIP_UNSUPPORTED, reason=str(e))
        except OSError as e:  # an operation the check relied on failed: the tree broke the ABI
            f = TsmFailure(c.id, c.rule, "every setup operation succeeds",
                           f"{e.__class__.__name__}: {e}", f"{self.profile.path}", ctx.tree.render(),
                           self.facts.target, self.facts.kernel_release)
            return Result(c, Outcome.FAIL, f, seconds=time.perf_counter() - t0)
        except (TsmError, Exception) as e:  # noqa: BLE001  harness or target broke
            return Result(c, Outcome.ERROR, reason="".join(traceback.format_exception_only(e)).strip() +
                          "\n" + "\n".join(ctx.tree.render()), seconds=time.perf_counter() - t0)
        return Result(c, Outcome.PASS, seconds=time.perf_counter() - t0)

    def run(self, checks: Iterable[Check] | None = None) -> list[Result]:
        out = []
        for c in checks if checks is not None else all_checks():
            r = self.execute(c)
            xf = self.expected_failure(c)
            if xf and r.outcome == Outcome.FAIL:
                r.outcome, r.reason = Outcome.XFAIL, f"{xf.tracking} {xf.reason}"
            elif xf and r.outcome == Outcome.PASS:
                r.outcome, r.reason = Outcome.XPASS, f"expected to fail ({xf.tracking}) but passed"
            out.append(r)
        return out
