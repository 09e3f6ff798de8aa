"""sequences: multi-threaded operation sequences over several items, checked by the oracle.

An input decodes to a ``.tsmseq`` schedule: set-up (some items made first), then 1-4 threads
(``T1:`` ...) each running a short program of macros - mkdir/rmdir (several threads making one
name at once), inblob commits (chunked writes, pwrite offsets, oversize and empty writes), text
attribute writes (privlevel, service_*), whole and partial reads, generation-bracketed outblob
reads, misuse (O_RDWR, wrong directions, lseek, nested mkdir), and on a tsm_test tree with module
control, outblob_size changes that make report lengths vary - then a tear-down reading every
item's generation and the group listing.  ``seq.execute_threads`` runs it; the oracle
(``tsm_conformance.oracle.check_trace``) judges the trace (docs/abi.md §1-§4, §7).

Known kernel bugs are expectations, not findings: a whole outblob read of the wrong length while
another thread wrote the item is the size-then-fill race (docs/abi.md §8.14), present in every
kernel so far.  It is counted in ``KNOWN`` and raised only when the tree models the fix
(``size_fill_fix=1`` in the emulator spec) or the option ``known=fail`` asks for it.

A finding is confirmed on fresh trees, shrunk macro by macro while the same rule still breaks,
and carried as a replayable Sequence (threads replay concurrently, ``attempts`` times).
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections import Counter
from typing import Any

from tsm_conformance.names import FUZZ, with_pid

from .. import harness
from ..api import Finding, TargetContext

NAME = "sequences"
DESCRIPTION = "multi-threaded mkdir/rmdir/write/read schedules over several items, judged by the oracle"
EMULATED_INSTRUMENT = ("tsm_conformance.emulator.kernel",)
MAX_THREADS = 4
MAX_MACROS = 6  # per thread
KNOWN: Counter[str] = Counter()  # known-bug matches seen in this process (rule -> count)
CONFIRM_ATTEMPTS = 30  # fresh-tree runs to confirm (and, per candidate, to shrink) a racy finding
SHRINK_BUDGET = 3.0  # seconds
# errnos a frontend adds on its own: the FUSE kernel module answers a lookup racing an rmdir with
# ESTALE before the daemon (the emulator) sees it; configfs itself would say ENOENT
FRONTEND_ERRNOS = {"fuse": ("ESTALE",)}

Macro = tuple  # ("kind", thread, args...): kept as data so shrinking can drop any one of them


# ----------------------------------------------------------------------------- decoding
class Shape:
    """What the tree offers, fixed per process: attributes, report length, module control."""

    def __init__(self, profile: Any, facts: Any, control: bool) -> None:
        from tsm_conformance.seqgen import GUIDS, MANIFEST_VERSIONS, PRIVLEVEL_TEXTS, SERVICE_PROVIDERS
        self.attrs = set(facts.attributes)
        r = profile.inblob_report_lengths
        self.report_len = r.max if r else profile.limits_inblob_max
        self.texts = [(a, v) for a, v in (("privlevel", PRIVLEVEL_TEXTS), ("service_provider", SERVICE_PROVIDERS),
                                          ("service_guid", GUIDS), ("service_manifest_version", MANIFEST_VERSIONS))
                      if a in self.attrs]
        self.reads = sorted(a for a in self.attrs if a in ("outblob", "auxblob", "manifestblob", "generation",
                                                          "provider", "privlevel_floor"))
        self.control = control and profile.provider == "tsm_test"
        self._parts: dict[tuple[Macro, int], tuple[list[Any], int]] = {}

    def part(self, m: Macro, first_fd: int) -> tuple[list[Any], int]:
        """A macro's Steps in a program of one thread whose earlier opens named fds up to
        ``first_fd`` (its own fds are named from there), and how many opens it makes.  Kept: an
        input's macros recur in the inputs mutated from it, at the same place, and expanding one
        cost more than looking it up."""
        key = (m, first_fd)
        hit = self._parts.get(key)
        if hit is None:
            if len(self._parts) >= 1 << 14:
                self._parts.clear()
            steps = harness.to_steps([(None, *op) for op in _expand(m, self, 0)], first_fd)
            hit = self._parts[key] = (steps, sum(st.op.name == "open" for st in steps))
        return hit


def decode(data: bytes, shape: Shape) -> tuple[list[str], list[Macro]]:
    """(items made in set-up, macros in file order); every input decodes to something."""
    r = harness.Bytes(data)
    head = r.u8()
    nthreads = 1 + head % MAX_THREADS
    nitems = 1 + (head >> 2) % 3
    items = ITEMS[:nitems]
    premade = [x for i, x in enumerate(items) if not (head >> 4) & (1 << i)] or ["r0"]
    macros: list[Macro] = []
    per = [0] * nthreads
    while r.left() and min(per) < MAX_MACROS:
        c = r.u8()
        th = (c & 3) % nthreads
        if per[th] >= MAX_MACROS:
            continue
        per[th] += 1
        kind, item = (c >> 2) % 13, items[r.u8() % nitems]
        k = len(macros)
        if kind == 0:
            macros.append(("mkdir", th, item))
        elif kind == 1:
            macros.append(("rmdir", th, item))
        elif kind in (2, 3):
            b = r.u8()
            n = (shape.report_len, shape.report_len, shape.report_len, 1, 31, 32, 63, 65)[b & 7]
            macros.append(("inblob", th, item, _nonce(th, k, n), (b >> 3) & 3, r.u8() % 72))
        elif kind == 4 and shape.texts:
            attr, values = shape.texts[r.u8() % len(shape.texts)]
            b = r.u8()
            macros.append(("text", th, item, attr, values[b % len(values)], 1 + (b >> 7)))
        elif kind in (5, 6):
            macros.append(("bracket", th, item, 1 + r.u8() % 4))
        elif kind == 7 and shape.reads:
            macros.append(("read", th, item, shape.reads[r.u8() % len(shape.reads)], (1, 7, 100, 1 << 16)[r.u8() & 3]))
        elif kind == 8:
            macros.append(("churn", th, item, 1 + r.u8() % 6, k))
        elif kind == 9:
            macros.append(("misuse", th, item, r.u8() % 9))
        elif kind == 10:
            macros.append(("list", th))
        elif kind == 11:
            macros.append(("stale", th, item))
        else:
            macros.append(("gen", th, item))
    return premade, macros


ITEMS = ["r0", "r1", "r2"]  # the item names an input may use


@functools.lru_cache(maxsize=4096)  # a few hundred recur in every run: (thread, macro, length)
def _nonce(th: int, k: int, n: int) -> bytes:
    """Distinct per (thread, macro): a report's nonce names the one commit it came from."""
    return (hashlib.blake2b(b"%d:%d" % (th, k), digest_size=64).digest() * 2)[:n]


# ----------------------------------------------------------------------------- to a schedule
def schedule(items: list[str], premade: list[str], macros: list[Macro], shape: Shape) -> list[Any]:
    """Steps in file order: set-up, the threads' macros round-robin, tear-down (every item's
    generation read, the group listed).  fd names are placeholders until the file order is fixed,
    then ``fdN`` by position."""
    setup = [("mkdir", None, x) for x in premade]
    teardown = [("end", None, x) for x in items] + [("list", None)]
    if len({m[1] for m in macros}) <= 1:  # one program (most inputs): its macros' kept Steps in order
        steps: list[Any] = []
        nfd = 0
        for m in setup + macros + teardown:
            part, opens = shape.part(m, nfd)
            steps += part
            nfd += opens
        return steps
    progs: dict[int, list[tuple[str, tuple]]] = {}
    for k, m in enumerate(macros):
        progs.setdefault(m[1], []).extend(_expand(m, shape, k))
    raw: list[tuple[str | None, str, tuple]] = [(None, *op) for m in setup for op in _expand(m, shape, 0)]
    raw += harness.interleave(progs)
    raw += [(None, *op) for m in teardown for op in _expand(m, shape, f"end{m[2]}" if len(m) > 2 else "end")]
    return harness.to_steps(raw)


def _expand(m: Macro, shape: Shape, k: int | str) -> list[tuple[str, tuple]]:
    """A macro's operations; ``k`` makes its fd placeholders (``@k.``) unique in the schedule."""
    # One long function on purpose: one case per macro kind, as decode has one per kind.
    kind, th, *a = m
    fd = f"@{k}."
    if kind in ("mkdir", "rmdir"):
        return [(kind, (a[0],))]
    if kind == "list":
        return [("listdir", (".",))]
    item = a[0]
    if kind == "gen":
        return _whole(item, "generation", fd + "g")
    if kind == "end":  # the tear-down's generation read
        return [("open", (f"{item}/generation", "O_RDONLY", fd)), ("read", (fd, 64)), ("close", (fd,))]
    if kind == "inblob":
        nonce, chunking, off = a[1], a[2], a[3]
        ops: list[tuple[str, tuple]] = [("open", (f"{item}/inblob", "O_WRONLY", fd))]
        if chunking == 0:
            ops.append(("write", (fd, nonce)))
        elif chunking == 1:
            half = len(nonce) // 2
            ops += [("write", (fd, nonce[:half])), ("write", (fd, nonce[half:]))]
        elif chunking == 2:  # back to front with pwrite: the same bytes, gaps filled later
            half = len(nonce) // 2
            ops += [("pwrite", (fd, nonce[half:], half)), ("pwrite", (fd, nonce[:half], 0))]
        else:  # an odd offset, sometimes past the limit (EFBIG) or empty (EFAULT)
            ops.append(("pwrite", (fd, nonce[: off % 17], off)))
        return ops + [("close", (fd,))]
    if kind == "text":  # one or two stores on one fd; a 5000-byte write is cut to 4095 and stored once
        value = a[2] if a[3] == 1 or a[2] else b"0" * 4094 + b"3" + b"9" * 905
        return [("open", (f"{item}/{a[1]}", "O_WRONLY", fd))] + [("write", (fd, value))] * a[3] + [("close", (fd,))]
    if kind == "bracket":
        out: list[tuple[str, tuple]] = []
        for i in range(a[1]):
            out += _whole(item, "generation", f"{fd}a{i}") + _whole(item, "outblob", f"{fd}b{i}") + \
                _whole(item, "generation", f"{fd}c{i}")
        return out
    if kind == "read":
        attr, n = a[1], a[2]
        return [("open", (f"{item}/{attr}", "O_RDONLY", fd)), ("read", (fd, n)), ("read", (fd, n)),
                ("pread", (fd, n, 5)), ("close", (fd,))]
    if kind == "stale":  # an fd opened before rmdir: unfilled, it must fail ENOENT (docs/abi.md §3)
        return [("open", (f"{item}/outblob", "O_RDONLY", fd)), ("open", (f"{item}/generation", "O_RDONLY", fd + "g")),
                ("read", (fd + "g", 1)), ("rmdir", (item,)), ("read", (fd, 1 << 16)), ("read", (fd + "g", 64)),
                ("close", (fd,)), ("close", (fd + "g",)), ("mkdir", (item,))]
    if kind == "churn":  # commits (and, with module control, report sizes) changing quickly
        out = []
        for i in range(a[1]):
            if shape.control:
                out.append(("param", ("outblob_size", (1000, 21000)[i % 2])))
            f = f"{fd}w{i}"
            out += [("open", (f"{item}/inblob", "O_WRONLY", f)),
                    ("write", (f, _nonce(th, a[2] * 16 + i, shape.report_len))), ("close", (f,))]
        return out
    if kind == "misuse":
        which = a[1]
        if which == 0:
            return [("open", (f"{item}/outblob", "O_RDWR", fd)), ("close", (fd,))]
        if which == 1:
            return [("open", (f"{item}/inblob", "O_RDONLY", fd)), ("close", (fd,))]
        if which == 2:
            return [("open", (f"{item}/generation", "O_WRONLY", fd)), ("close", (fd,))]
        if which == 3:
            return [("open", (f"{item}/outblob", "O_RDONLY", fd)), ("lseek", (fd, 0, "SEEK_SET")), ("close", (fd,))]
        if which == 4:
            return [("mkdir", (f"{item}/sub",))]
        if which == 5:
            return [("stat", (f"{item}/outblob",)), ("listdir", (item,))]
        if which == 6:  # open and close without a write: no commit
            return [("open", (f"{item}/inblob", "O_WRONLY", fd)), ("close", (fd,))]
        if which == 7:
            return [("stat", (item,)), ("stat", (f"{item}/generation",))]
        return [("open", (f"{item}/inblob", "O_WRONLY", fd)), ("write", (fd, bytes(60))),
                ("write", (fd, bytes(10))), ("close", (fd,))]  # EFBIG keeps the 60 bytes before it
    return []


def _whole(item: str, attr: str, fd: str) -> list[tuple[str, tuple]]:
    return [("open", (f"{item}/{attr}", "O_RDONLY", fd)), ("read", (fd, 1 << 16)), ("close", (fd,))]


# ----------------------------------------------------------------------------- running and judging
class Runner:
    """The per-process state of the target: tree, profile, facts, shape, and the oracle call."""

    def __init__(self, ctx: TargetContext) -> None:
        harness.prepare(ctx)
        self.ctx = ctx
        self.profile, self.facts = ctx.profile, ctx.facts
        self.tree = ctx.tree()
        self._spare: Any = None  # the emulated tree rebooted for each input (fresh())
        self._spare_prefix = ""  # its item names: fresh ones at each boot, the same after a reboot
        from tsm_conformance.oracle import check_trace
        from tsm_conformance.seq import HUNG, Pool, execute_threads
        # imported here, once (not with this module: a worker imports its target before it
        # instruments the modules it fuzzes; not per input: an import statement costs a lookup)
        self._execute, self._check, self._hung = execute_threads, check_trace, HUNG
        self.pool = Pool()  # a real tree's threads for every input's schedule (a new thread each cost more)
        # an emulated tree's threaded schedules run cooperatively (tsm_conformance/coop.py), each
        # execution with the next seed of this generator: the same inputs, the same interleavings
        self.seeds = random.Random(0) if ctx.emulate else None
        from tsm_conformance.oracle import expected_attributes
        self.attrs = expected_attributes(self.profile, self.facts)
        self.shape = Shape(self.profile, self.facts, getattr(self.tree, "control", None) is not None)
        spec = ctx.emulate or ""
        self.strict_known = "size_fill_fix=1" in spec or ctx.options.get("size_fill_fix") == "1" or \
            ctx.options.get("known") == "fail"
        self._last: tuple[list[Any], list[Any]] | None = None  # the last input's steps and trace

    def observable(self, steps: list[Any]) -> list[Any]:
        """Drop what the tree declares it cannot show (a FUSE mount: target/fuse_limits.py)."""
        lim = getattr(self.tree, "limits", None) or {}
        if not lim:
            return steps
        return [st for st in steps if not (st.op.name in ("write", "pwrite") and not st.op.args[1]
                                            and "zero-length-write" in lim)
                and not (st.op.name == "lseek" and "binary-lseek" in lim)]

    def run(self, tree: Any, steps: list[Any]) -> tuple[list[Any], list[Any]]:
        """(trace, violations) of one execution of ``steps`` (``observable`` ones)."""
        prefix = self._spare_prefix if tree is self._spare else harness.fresh_prefix(self.ctx)
        done = self._execute(tree, steps, prefix, pool=self.pool,
                               coop=self.seeds.getrandbits(32) if self.seeds is not None else None,
                               tidy=tree is not self._spare)  # the spare is rebooted before its next input
        if tree is self._spare and self._hung in [d.result for d in done]:
            self._spare = None  # a thread may still be inside it: never reboot it under that thread
        f = self.facts
        return done, self._check(self.profile, done, self.attrs, f.privlevel_floor, f.provider)

    def fresh(self) -> Any:
        """A fresh tree: an emulated one as newly booted, one per process rebooted in place for
        each run (``EmulatedTree.reboot``: the same state as a new boot, without parsing the spec
        and booting again, which cost more than a short input); else a new Tree on the root."""
        if not self.ctx.emulate:
            return self.ctx.tree()
        if self._spare is None:
            self._spare = self.ctx.tree()
            self._spare_prefix = harness.fresh_prefix(self.ctx)  # (a reboot leaves no item behind)
        else:
            self._spare.reboot()
        return self._spare

    def finding(self, v: Any) -> bool:
        """A violation that is a finding: not a known kernel bug (unless asked), not an errno a
        frontend adds (FUSE)."""
        if v.known and not self.strict_known:
            return False
        return not (v.rule == "errno.allowed" and v.observed in FRONTEND_ERRNOS.get(getattr(self.tree, "kind", ""), ()))

    def verdict(self, violations: list[Any]) -> Any | None:
        """The first violation that is a finding (the others are counted in KNOWN)."""
        for v in violations:
            if self.finding(v):
                return v
            # a known kernel bug by its name ("size-then-fill race"), not by the rule that saw it
            KNOWN[v.known.split(":")[0] if v.known else f"{v.rule} {v.observed} (frontend)"] += 1
        return None

    def one(self, data: bytes) -> None:
        premade, macros = decode(data, self.shape)
        items = sorted({m[2] for m in macros if len(m) > 2 and isinstance(m[2], str)} | set(premade))
        # an emulated tree starts every input freshly booted (fresh()), so no state carries
        # over and every finding replays from a fresh tree; a live tree is what it is
        tree = self.fresh() if self.ctx.emulate else self.tree
        steps = self.observable(schedule(items, premade, macros, self.shape))
        done, vs = self.run(tree, steps)
        self._last = (steps, done)
        v = self.verdict(vs)
        if v is None:
            return
        seq, v = self.confirm(items, premade, macros, v.rule)
        raise Finding(v.rule, f"{v.observed}; expected {v.expected} ({v.where})", seq)

    def last_sequence(self) -> Any:
        """The last input as a replayable Sequence (the fuzz worker's hook for a kernel-log finding,
        tsm_fuzz.api.sequence_hook): its steps with their observed results as expectations, only
        where one thread ran (a threaded schedule's results depend on the interleaving)."""
        from tsm_conformance.seq import Sequence, Step, show
        if self._last is None:
            return None
        steps, done = self._last
        threaded = len({s.thread for s in steps if s.thread}) > 1
        hdr = harness.header(NAME, "", "", self.ctx)
        if threaded:
            hdr.update({"schedule": "threads", "attempts": str(CONFIRM_ATTEMPTS)})
        if self.ctx.emulate:
            hdr["emulate"] = self.ctx.emulate
        return Sequence([Step(s.op, None if threaded else show(d.result), s.thread) for s, d in zip(steps, done)],
                        hdr)

    # ---- findings
    def _again(self, items: list[str], premade: list[str], macros: list[Macro], rule: str,
               attempts: int) -> tuple[list[Any], Any, list[Any]] | None:
        """Re-run on fresh trees until `rule` breaks again: (steps, violation, trace) or None."""
        steps = self.observable(schedule(items, premade, macros, self.shape))
        for _ in range(attempts):
            done, vs = self.run(self.fresh(), steps)
            v = next((x for x in vs if x.rule == rule and self.finding(x)), None)
            if v is not None:
                return steps, v, done
        return None

    def confirm(self, items: list[str], premade: list[str], macros: list[Macro], rule: str) -> tuple[Any, Any]:
        """Shrink the program macro by macro while the rule still breaks; the Sequence of the
        smallest run, with its observed results as expectations."""
        from tsm_conformance.seq import Sequence, Step, show
        racy = len({m[1] for m in macros}) > 1
        tries = CONFIRM_ATTEMPTS if racy else 1
        best = self._again(items, premade, macros, rule, tries)
        if best is None:  # did not recur on a fresh tree: report the original run as observed
            note = "did not recur on a fresh tree: it depends on state earlier inputs left (or a rare race)"
            steps = self.observable(schedule(items, premade, macros, self.shape))
            done, vs = self.run(self.tree, steps)
            v = next((x for x in vs if x.rule == rule), vs[0] if vs else None)
            best = (steps, v, done)
        else:
            note = ""
        if racy:  # one thread, program order kept: a deterministic reproduction beats a racy one
            flat = [(m[0], 0, *m[2:]) for m in macros]
            got = self._again(items, premade, flat, rule, 1)
            if got is not None:
                macros, best, note = flat, got, ""
        end = time.monotonic() + SHRINK_BUDGET
        i = 0
        while i < len(macros) and time.monotonic() < end:
            cand = macros[:i] + macros[i + 1:]
            got = self._again(items, premade, cand, rule, tries if len({m[1] for m in cand}) > 1 else 1)
            if got is not None:
                macros, best = cand, got
            else:
                i += 1
        steps, v, done = best
        hdr = harness.header(NAME, v.rule, f"{v.observed} at step {v.step + 1}", self.ctx)
        threaded = len({s.thread for s in steps if s.thread}) > 1
        if threaded:  # a race recurs only sometimes: replay tries again, and checks the evidence only
            hdr.update({"schedule": "threads", "attempts": str(CONFIRM_ATTEMPTS * 10)})
        if self.ctx.emulate:
            hdr["emulate"] = self.ctx.emulate
        if note:
            hdr["note"] = note
        evidence = {v.step, *v.related}
        seq = Sequence([Step(s.op, show(d.result) if (not threaded or d.index in evidence) else None, s.thread)
                        for s, d in zip(steps, done)], hdr)
        return seq, v


def make(ctx: TargetContext):  # noqa: ANN201
    return Runner(ctx).one


if __name__ == "__main__":  # plain-random driver, no atheris: python -m tsm_fuzz.targets.fuzz_sequences SPEC SECONDS
    import os
    import sys
    spec, secs = (sys.argv[1] if len(sys.argv) > 1 else "sev_guest"), float(sys.argv[2] if len(sys.argv) > 2 else 10)
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 48
    one = make(TargetContext(emulate=spec, prefix=with_pid(FUZZ)))
    rnd, n, t0 = random.Random(int(os.environ.get("SEED", "1"))), 0, time.monotonic()
    while time.monotonic() - t0 < secs:
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, size)))
        try:
            one(data)
        except Finding as f:
            print(f"FINDING {f.rule}: {f.observed}")
            from tsm_conformance.seq import format_tsmseq
            print(format_tsmseq(f.sequence))
            break
        n += 1
    dt = time.monotonic() - t0
    print(f"{spec}: {n} inputs in {dt:.1f} s = {n / dt:.0f} execs/s; known: {dict(KNOWN)}")
