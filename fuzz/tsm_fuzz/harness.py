"""What the tree targets share: probing the tree for its profile, a byte reader that never runs
dry, and recording a finding as a replayable ``.tsmseq`` on a fresh item.

No atheris here: targets are plain ``bytes -> None`` functions, so the tests and the benchmarks call
them directly and the worker hands them to atheris.
"""

from __future__ import annotations

import functools
import itertools
import traceback
from typing import Any

from tsm_conformance.names import FUZZ, with_pid

from .api import Finding, TargetContext


def where(e: BaseException) -> str:
    """``file.py:LINE in function`` where an exception was raised: a finding's evidence."""
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}"


def refused_in_one_line(rule: str, e: BaseException) -> None:
    """Hostile input may be refused, but in one non-empty line (docs/fuzzing.md, the parser
    targets): anything else breaks ``rule``."""
    if "\n" in str(e) or not str(e):
        raise Finding(rule, f"a {type(e).__name__} that is not one line: {str(e)[:200]!r}") from e


def prepare(ctx: TargetContext) -> None:
    """Fill ``ctx.profile`` and ``ctx.facts`` by probing the tree once (the suite's own probe and
    profile selection).  ``runstate.SetupError`` (one line) for a bad spec or root."""
    if ctx.profile is not None and ctx.facts is not None:
        return
    from tsm_conformance.runstate import build_state
    st = build_state(ctx.root, ctx.emulate, ctx.options.get("profile"), any_filesystem=ctx.any_filesystem)
    if ctx.profile is None:
        ctx.profile = st.profile
    ctx.facts = st.facts


def target_spec(ctx: TargetContext) -> str:
    """How the header of a .tsmseq names the tree (``emulate:`` is what replay picks up)."""
    return ctx.emulate or ctx.root or "live"


class Bytes:
    """Consumes fuzz input front to back; past the end every read gives zeros / empty bytes, so
    any input decodes to some program."""

    __slots__ = ("data", "i")

    def __init__(self, data: bytes) -> None:
        self.data, self.i = data, 0

    def left(self) -> int:
        return len(self.data) - self.i

    def u8(self) -> int:
        if self.i >= len(self.data):
            return 0
        self.i += 1
        return self.data[self.i - 1]

    def take(self, n: int) -> bytes:
        out = self.data[self.i:self.i + n]
        self.i += len(out)
        return out


_names = itertools.count()


def fresh_prefix(ctx: TargetContext) -> str:
    """Item names no earlier input used (``r0`` -> ``<prefix><n>-0``), so state never carries over."""
    return f"{ctx.prefix}{next(_names)}-"


def record(ctx: TargetContext, ops: list[Any], header: dict[str, str]) -> tuple[Any, list[str]]:
    """Run ``ops`` on a fresh tree and item with the generation of r0 tracked after every write and
    close; the Sequence carries the results observed (replaying it on the same tree reproduces
    them; on a fixed tree, replay prints what changed)."""
    from tsm_conformance.seq import Sequence, Step, execute
    got = execute(ctx.tree(), ops, fresh_prefix(ctx), track=["r0"])
    seq = Sequence([Step(op, res) for op, res in zip(ops, got)], {**header, "track": "r0"})
    if ctx.emulate:
        seq.header.setdefault("emulate", ctx.emulate)
    return seq, got


def header(target: str, rule: str, observed: str, ctx: TargetContext) -> dict[str, str]:
    h = {"check": f"fuzz.{target}", "rule": rule, "observed": observed, "target": target_spec(ctx)}
    return h


def pid_prefix(ctx: TargetContext) -> str:
    """The worker gives each process ``tsmfz-<pid>-``; direct callers get one here."""
    return ctx.prefix if ctx.prefix != FUZZ else with_pid(FUZZ)


# ----------------------------------------------------------------------------- schedules
Raw = tuple  # (thread label or None, op name, args): an fd argument is an "@..." placeholder


def interleave(progs: dict[int, list[tuple[str, tuple]]]) -> list[Raw]:
    """The threads' programs in file order: one program unlabelled; several round-robin (the k-th
    op of every thread, then the (k+1)-th), labelled T1, T2 ..."""
    threads = sorted(progs)
    if len(threads) == 1:
        return [(None, name, args) for name, args in progs[threads[0]]]
    labels = [f"T{t + 1}" for t in threads]
    return [(th, op[0], op[1]) for row in itertools.zip_longest(*(progs[t] for t in threads))
            for th, op in zip(labels, row) if op is not None]


def to_steps(raw: list[Raw], first_fd: int = 0) -> list[Any]:
    """seq Steps of a raw schedule: opens carry their fd placeholder as a third argument; fds are
    named ``fdN`` by the file order of the opens that made them (from ``fd<first_fd>``: the part
    of a schedule after that many opens)."""
    names: dict[str, str] = {}
    steps: list[Any] = []
    add, known = steps.append, _STEPS.get  # (the per-op cost of a schedule is most of a short input's)
    for th, name, args in raw:
        if name == "open":
            names[args[2]] = f"fd{first_fd + len(names)}"
            args = args[:2]
        elif args and args[0].__class__ is str and args[0][:1] == "@":  # only an fd is a placeholder
            args = (names[args[0]],) + args[1:]
        key = (th, name, args)
        add(known(key) or _step(key))
    return steps


# One Step per distinct (thread, operation): most recur from input to input, and looking one up
# costs less than making it.  The Steps are shared, so nothing may change one (a Sequence made from
# a schedule makes Steps of its own).
_STEPS: dict[tuple[str | None, str, tuple], Any] = {}


def _step(key: tuple[str | None, str, tuple]) -> Any:
    if len(_STEPS) >= 1 << 14:
        _STEPS.clear()
    seq = _seq()
    th, name, args = key
    st = _STEPS[key] = seq.Step(seq.Op(name, args), None, th)
    return st


@functools.cache
def _seq() -> Any:
    """tsm_conformance.seq, imported at the first schedule (not with this module: a worker imports
    its target before it instruments the modules it fuzzes), then without an import per call."""
    import tsm_conformance.seq
    return tsm_conformance.seq
