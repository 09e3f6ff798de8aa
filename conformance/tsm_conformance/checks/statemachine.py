"""model.*: Hypothesis stateful testing of the tree against the oracle's sequential spec model.

A ``RuleBasedStateMachine`` draws single-threaded operations across three items - mkdir, rmdir,
inblob writes (chunked, pwrite offsets, oversize, empty), text attribute writes (privlevel,
service_*), whole and partial reads, closes in any order, misuse (O_RDWR, lseek) - and every
result must be what ``oracle.SpecModel`` predicts from docs/abi.md and the profile.

Runs are explicit about randomness (Hypothesis's `ci` settings profile derandomizes when it detects
CI): ``derandomize=False``, no example database, and a seed that is logged in the operation log
and in the failure; ``--tsm-hypothesis-seed N`` (ini ``tsm_hypothesis_seed``, or the environment
variable ``TSM_HYPOTHESIS_SEED``) replays a run.  The emulator gets many examples; a live or FUSE
tree few, since every read there costs a real report.  A failure is the minimised example's
operations, as the usual TsmFailure with a replayable .tsmseq.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable
from typing import Any

from ..oracle import SpecModel, expected_attributes
from ..outcome import TsmFailure
from ..seq import Executor, Op, show
from .base import Ctx, check

SEED: int | None = None  # set by the plugin from --tsm-hypothesis-seed / tsm_hypothesis_seed
SHRINK = True  # minimise a failing example (tests that only ask "caught?" turn it off for speed)
SHRINK_SECONDS = {"emulated": 1.5, "fuse": 5.0, "live": 20.0}
ITEMS = 3
#: (max_examples, stateful_step_count) per target kind
BUDGET = {"emulated": (60, 30), "fuse": (6, 15), "live": (4, 12)}
TEXTS = {
    "privlevel": (b"0", b"1", b"2", b"3", b"4", b"0x3", b"03", b"+2", b"3\n", b" 1", b"08", b"-1", b"4294967296", b""),
    "service_provider": (b"svsm", b"svsm\n", b"\n", b"ab\0cd", b"other", b""),
    "service_guid": (b"c476f1eb-0123-45a5-9641-b4e7dde5bfe3", b"00000000-0000-0000-0000-000000", b"xyz", b""),
    "service_manifest_version": (b"0", b"0x10", b"010", b"4294967295", b"4294967296", b"-1", b""),
}


def seed_in_use() -> int:
    if SEED is not None:
        return SEED
    env = os.environ.get("TSM_HYPOTHESIS_SEED")
    return int(env) if env else random.SystemRandom().randrange(1 << 32)


@check("model.state_machine.sequential",
       "random single-threaded sequences of mkdir, rmdir, inblob and text attribute writes, reads and closes "
       "over several items return exactly what the ABI model predicts",
       "docs/abi.md §1-§4 and §7, as encoded by oracle.SpecModel (independent of the emulator)")
def state_machine(ctx: Ctx) -> None:
    from hypothesis import HealthCheck, Phase, seed, settings
    # semi-private (Hypothesis split it out for HypoFuzz): used here only
    from hypothesis.stateful import get_state_machine_test

    kind = ctx.tree.t.kind
    examples, steps = BUDGET.get(kind, BUDGET["live"])
    s = seed_in_use()
    machine, failed = build_machine(ctx, s)
    # Hypothesis' own shrinker replays thousands of examples (seconds per failure here, far more on
    # a live tree where reads make reports): shrink_program below does it within a time budget.
    opts = settings(max_examples=examples, stateful_step_count=steps, derandomize=False, database=None,
                    deadline=None, print_blob=False,
                    phases=[p for p in Phase if p not in (Phase.shrink, Phase.explain)],
                    suppress_health_check=list(HealthCheck))
    # run_state_machine_as_test takes no seed; the machine's inner @given test takes @seed
    test = get_state_machine_test(machine, settings=opts)
    try:
        seed(s)(test)()
    except Exception:  # noqa: BLE001  a TsmFailure, or Hypothesis' Flaky* when the tree is not repeatable
        if not failed:
            raise
        program, first = failed[0]
        small = shrink_program(machine, program, SHRINK_SECONDS.get(kind, 10.0) if SHRINK else 0.0)
        if small is None:  # the same rule calls passed when run again
            first.observed += " (did not recur when the same operations ran again on fresh items)"
        raise small or first from None
    ctx.note(f"hypothesis seed {s}: {examples} examples of up to {steps} steps passed "
             f"(--tsm-hypothesis-seed {s} reruns them)")


def shrink_program(machine: type, program: list[tuple[str, dict[str, Any]]], budget: float) -> TsmFailure | None:
    """Drop rule calls one at a time (last first) while the program still fails, for at most
    ``budget`` seconds; the failure of the smallest program (its log is the reproducer), or None
    if the program does not fail when run again."""
    def run(prog: list[tuple[str, dict[str, Any]]]) -> TsmFailure | None:
        m = machine()
        try:
            for name, kw in prog:
                getattr(m, name)(**kw)
        except TsmFailure as f:
            return f
        except Exception:  # noqa: BLE001  e.g. a write on an fd whose open was dropped
            return None
        finally:
            try:
                m.teardown()
            except OSError:
                pass
        return None
    best = run(program)
    if best is None:
        return None
    end = time.monotonic() + budget
    i = len(program) - 1
    while i >= 0 and time.monotonic() < end:
        got = run(program[:i] + program[i + 1:])
        if got is not None:
            program, best = program[:i] + program[i + 1:], got
        i -= 1
    return run(program) or best  # run last, so the log is the smallest program's


def recorded(fn: Callable) -> Callable:
    """Keep each rule call (name, arguments) in the machine's program, for shrink_program."""
    @functools.wraps(fn)
    def call(self: Any, **kw: Any) -> Any:
        self.program.append((fn.__name__, kw))
        return fn(self, **kw)
    return call


def build_machine(ctx: Ctx, s: int) -> tuple[type, list]:
    """The machine class over this check's tree and profile (Hypothesis builds instances itself,
    so the context goes in through the closure; fixtures cannot be injected into rules), and a
    list that receives the first failing example: (its rule calls, its TsmFailure)."""
    # One long function on purpose: the rules are methods of a class that closes over this check's
    # context (Hypothesis makes the instances), so they cannot move out of it.
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

    profile, facts = ctx.profile, ctx.facts
    attrs = expected_attributes(profile, facts)
    texts = sorted(a for a in TEXTS if a in attrs)
    readable = sorted(a for a in attrs if a in profile.attributes and profile.attributes[a].readable)
    r = profile.inblob_report_lengths
    nonce_len = r.max if r else profile.limits_inblob_max
    base = ctx.new_name()
    ctx.names.pop(base, None)
    counter = iter(range(1 << 30))
    failed: list[tuple[list[tuple[str, dict[str, Any]]], TsmFailure]] = []
    limits = ctx.tree.t.limits  # what a FUSE mount cannot show (fuse_limits.py)

    def unobservable(op: Op) -> bool:
        if op.name in ("write", "pwrite") and not op.args[1] and "zero-length-write" in limits:
            return True
        return op.name == "lseek" and "binary-lseek" in limits  # the machine seeks only binary fds
    item = st.integers(0, 7)  # mostly an existing item (see pick), now and then any name
    limit = profile.limits_inblob_max
    # report-sized nonces mostly; any size; past the limit (EFBIG, an empty commit); empty (EFAULT)
    blob = st.one_of(st.binary(min_size=nonce_len, max_size=nonce_len), st.binary(max_size=limit + 6),
                     st.binary(min_size=limit + 1, max_size=limit + 6), st.just(b""))

    class TreeMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            prefix = f"{base}-{next(counter)}-"
            ctx.tree.reset(ctx.names)  # the log of the example that fails is the reproducer
            ctx.names.clear()
            ctx.names.update({f"{prefix}{i}": f"r{i}" for i in range(ITEMS)})
            ctx.note(f"hypothesis seed {s} (--tsm-hypothesis-seed {s} reruns this run)")
            if limits:
                ctx.note("left out on this target: " + ", ".join(sorted(limits)))
            # The Executor calls only the Tree's operations, which a Recorder has, but seq.py types
            # its tree as a whole Tree (capabilities too); a narrower parameter there ends this.
            self.ex = Executor(ctx.tree, prefix)  # type: ignore[arg-type]
            self.model = SpecModel(profile, attrs, facts.privlevel_floor, facts.provider)
            # fd names stay listed even when their open failed: which rules apply must depend on
            # the rules drawn, not on the tree's answers, or Hypothesis cannot replay an example
            self.writers: list[str] = []  # inblob fds
            self.readers: list[str] = []  # read fds
            self.program: list[tuple[str, dict[str, Any]]] = []

        def do(self, op: Op) -> object:
            if unobservable(op):
                return None
            obs = self.ex.call(op)
            want, why = self.model.step(op, obs)
            if why:
                try:
                    ctx.fail(f"{op} -> {want.text}", f"{op} -> {show(obs)} ({why}; hypothesis seed {s})",
                             want.keypath or "errors")
                except TsmFailure as f:
                    if not failed:
                        failed.append((list(self.program), f))
                    raise
            return obs

        def pick(self, i: int) -> str:
            live = sorted(self.model.items)
            return live[i % len(live)] if live and i < 6 else f"r{i % ITEMS}"

        def opened(self, path: str, flags: str) -> tuple[str, bool]:
            name = f"fd{self.ex.nfd}"  # the executor's name for this open, failed or not
            res = self.do(Op("open", (path, flags)))
            return name, isinstance(res, str) and res.startswith("fd")

        @initialize()
        @recorded
        def first_item(self) -> None:
            self.do(Op("mkdir", ("r0",)))

        @rule(i=st.integers(0, ITEMS - 1))
        @recorded
        def mkdir(self, i: int) -> None:
            self.do(Op("mkdir", (f"r{i}",)))

        @rule(i=item, again=st.sampled_from((True, True, True, False)))
        @recorded
        def rmdir(self, i: int, again: bool) -> None:
            name = self.pick(i)
            self.do(Op("rmdir", (name,)))
            if again:  # mostly made again at once: a fresh item under an old name
                self.do(Op("mkdir", (name,)))

        @rule(i=item, data=blob, look=st.booleans())
        @recorded
        def commit(self, i: int, data: bytes, look: bool) -> None:
            name = self.pick(i)
            fd, ok = self.opened(f"{name}/inblob", "O_WRONLY")
            if ok:
                self.do(Op("write", (fd, data)))
                self.do(Op("close", (fd,)))
                if look:
                    self.read_generation(name)

        @rule(i=item)
        @recorded
        def generation(self, i: int) -> None:
            self.read_generation(self.pick(i))

        def read_generation(self, name: str) -> None:
            fd, ok = self.opened(f"{name}/generation", "O_RDONLY")
            if ok:
                self.do(Op("read", (fd, 64)))
                self.do(Op("close", (fd,)))

        @rule(i=item)
        @recorded
        def open_inblob(self, i: int) -> None:
            self.writers.append(self.opened(f"{self.pick(i)}/inblob", "O_WRONLY")[0])

        @precondition(lambda self: self.writers)
        @rule(k=st.integers(0, 7), data=blob, chunks=st.integers(1, 3))
        @recorded
        def write_inblob(self, k: int, data: bytes, chunks: int) -> None:
            fd = self.writers[k % len(self.writers)]
            step = max(1, -(-len(data) // chunks))
            for j in range(0, max(len(data), 1), step):
                self.do(Op("write", (fd, data[j:j + step])))

        @precondition(lambda self: self.writers)
        @rule(k=st.integers(0, 7), data=st.binary(max_size=20), offset=st.integers(0, 70))
        @recorded
        def pwrite_inblob(self, k: int, data: bytes, offset: int) -> None:
            self.do(Op("pwrite", (self.writers[k % len(self.writers)], data, offset)))

        @precondition(lambda self: self.writers or self.readers)
        @rule(k=st.integers(0, 7))
        @recorded
        def close(self, k: int) -> None:
            fds = self.writers + self.readers
            fd = fds[k % len(fds)]
            (self.writers if fd in self.writers else self.readers).remove(fd)
            self.do(Op("close", (fd,)))

        @precondition(lambda self: bool(texts))
        @rule(i=item, a=st.integers(0, 7), v=st.integers(0, 15), twice=st.booleans(), look=st.booleans())
        @recorded
        def text_write(self, i: int, a: int, v: int, twice: bool, look: bool) -> None:
            attr = texts[0] if a < 4 else texts[a % len(texts)]  # privlevel (first) half the time
            name = self.pick(i)
            fd, ok = self.opened(f"{name}/{attr}", "O_WRONLY")
            if ok:
                for value in (TEXTS[attr][v % len(TEXTS[attr])],) * (2 if twice else 1):
                    self.do(Op("write", (fd, value)))
                self.do(Op("close", (fd,)))
                if look:  # generation tells accepted stores from rejected ones
                    self.read_generation(name)

        @rule(i=item, a=st.integers(0, 7))
        @recorded
        def read_whole(self, i: int, a: int) -> None:
            fd, ok = self.opened(f"{self.pick(i)}/{readable[a % len(readable)]}", "O_RDONLY")
            if ok:
                self.do(Op("read", (fd, 1 << 16)))
                self.do(Op("close", (fd,)))

        @rule(i=item, n=st.sampled_from((1, 7, 100)))
        @recorded
        def read_partial(self, i: int, n: int) -> None:
            fd, ok = self.opened(f"{self.pick(i)}/{'outblob' if 'outblob' in attrs else readable[0]}", "O_RDONLY")
            self.readers.append(fd)
            if ok:
                self.do(Op("read", (fd, n)))

        @precondition(lambda self: self.readers)
        @rule(k=st.integers(0, 7), n=st.sampled_from((7, 1 << 16)), off=st.sampled_from((None, 0, 5, 1000)))
        @recorded
        def read_more(self, k: int, n: int, off: int | None) -> None:
            fd = self.readers[k % len(self.readers)]
            self.do(Op("read", (fd, n)) if off is None else Op("pread", (fd, n, off)))

        @rule(i=item, which=st.integers(0, 3))
        @recorded
        def misuse(self, i: int, which: int) -> None:
            name = self.pick(i)
            if which == 0:
                self.do(Op("open", (f"{name}/outblob", "O_RDWR")))
            elif which == 1:
                self.do(Op("open", (f"{name}/inblob", "O_RDONLY")))
            elif which == 2:
                fd, ok = self.opened(f"{name}/outblob", "O_RDONLY")
                if ok:
                    self.do(Op("lseek", (fd, 0, "SEEK_SET")))
                    self.do(Op("close", (fd,)))
            else:
                self.do(Op("listdir", (".",)))

        def teardown(self) -> None:
            self.ex.finish()

    return TreeMachine, failed
