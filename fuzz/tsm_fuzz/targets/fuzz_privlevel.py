"""Text option attributes: privlevel, service_provider, service_guid, service_manifest_version.

Random text is written to one of the attributes the tree shows; the result of every write() and the
generation after it are checked against the oracle's write rules (``tsm_conformance.oracle.rules``
with the grammar of ``oracle.parse``, independent of the emulator's parsers; docs/abi.md §1a, §1c,
§2, §3; lib/kstrtox.c, lib/uuid.c), which say:

* configfs stores at most ``text_store_max`` (4095) bytes per write() into a zeroed page, so the
  store sees a C string: bytes after a NUL are invisible; write() returns the count stored; a
  zero-length write() stores nothing and fails EFAULT;
* ``kstrtouint(s, 0)``: optional ``+``; base 16 after ``0x``/``0X`` only if a hex digit follows,
  else base 8 after a leading ``0``, else 10; digits up to the first non-digit of the base;
  overflow past 2^64-1 is ERANGE whatever follows; no digits is EINVAL; then one ``\\n`` may follow
  and nothing else; a value over 2^32-1 is ERANGE (for both numeric attributes);
* privlevel: parse errors and values outside floor..3 fail without a bump; success bumps once;
* service_manifest_version: parse errors fail without a bump; any u32 is accepted (bump);
* service_provider: always accepted, bumps;
* service_guid: bumps first, then ``guid_parse``: the first 36 characters must be 8-4-4-4-12 hex
  digits and dashes, anything after is ignored; otherwise EINVAL (generation still bumped).

Input: byte 0 picks the attribute (bits 0-1), two write()s on one fd instead of one (bit 2, split
point from bits 5-7) and a long text (bits 3 and 4: the text NUL-padded past one page, so the
4095-byte store limit and write()'s count are exercised); the rest is the text.
One item per process, one fresh fd per input: set-up cost stays out of the per-input path.
"""

from __future__ import annotations

import atexit
import os

from tsm_conformance.oracle import parse as oracle_parse
from tsm_conformance.oracle.rules import text_store, text_store_bumps

from ..api import Finding, TargetContext
from .. import harness

NAME = "privlevel"
DESCRIPTION = "text attributes (privlevel, service_*) against the oracle's kstrtouint/guid_parse write rules"
# instrumented besides this module (tsm_fuzz.worker)
EMULATED_INSTRUMENT = ()  # the oracle alone: 3x the exec/s of also instrumenting emulator.kstrtox
MAX_LEN = 64  # libFuzzer -max_len: the long-text mode covers texts past one page
ATTRS = ("privlevel", "service_provider", "service_guid", "service_manifest_version")

# The grammar is the oracle's (tsm_conformance.oracle.parse), an encoding independent of the
# emulator's kstrtox: one place for it on the checking side.
parse_uint = oracle_parse.kstrtouint
guid_ok = oracle_parse.guid_ok


def oracle(profile, floor: int):  # noqa: ANN001, ANN201
    """``(attr, chunk) -> (results allowed, as text; generation change)`` for one write() to a
    live item, from the oracle's rules."""
    def expect(attr: str, chunk: bytes) -> tuple[tuple[str, ...], int]:
        r = text_store(profile, floor, attr, chunk)
        if isinstance(r, str):
            names = profile.errno(r)
            return names, int(text_store_bumps(profile, attr, chunk, names[0]))
        return (str(r),), int(text_store_bumps(profile, attr, chunk, r))
    return expect


def decode(data: bytes, attrs: tuple[str, ...]) -> tuple[str, list[bytes]]:
    if not data:
        return attrs[0], [b""]
    c = data[0]
    attr = attrs[(c & 3) % len(attrs)]
    text = data[1:]
    if c & 0x18 == 0x18:  # past one page, NUL-padded: a digit run that long costs the
        text = text + bytes(4200 - len(text) % 4096)  # kernel model a Python loop per character
    if c & 0x04:
        cut = len(text) * (c >> 5) // 7
        return attr, [text[:cut], text[cut:]]
    return attr, [text]


def program(attr: str, chunks: list[bytes]) -> list:  # noqa: ANN201
    from tsm_conformance.seq import Op
    return ([Op("mkdir", ("r0",)), Op("open", (f"r0/{attr}", "O_WRONLY"))]
            + [Op("write", ("fd0", c)) for c in chunks] + [Op("close", ("fd0",))])


def make(ctx: TargetContext):  # noqa: ANN201
    # One long function on purpose: the target is closures over one long-lived item, its tree's
    # bound operations and the last input (a call per input is the target's cost).
    harness.prepare(ctx)
    from tsm_conformance import errnos
    prof, facts = ctx.profile, ctx.facts
    attrs = tuple(a for a in ATTRS if a in facts.attributes)
    if not attrs:
        raise RuntimeError(f"{facts.provider} shows none of {', '.join(ATTRS)}")
    floor = facts.privlevel_floor if facts.privlevel_floor is not None else 0
    expect = oracle(prof, floor)
    tree = ctx.tree()
    item = f"{harness.pid_prefix(ctx)}pl"
    tree.mkdir(item)

    def _cleanup() -> None:  # a plain exit; under libFuzzer the runner sweeps tsmfz-<pid>-* instead
        try:
            tree.rmdir(item)
        except OSError:
            pass
    atexit.register(_cleanup)
    paths = {a: f"{item}/{a}" for a in attrs}
    gpath = f"{item}/generation"
    t_open, t_write, t_read, t_close = tree.open, tree.write, tree.read, tree.close
    rd, wr = os.O_RDONLY, os.O_WRONLY
    name = errnos.name

    def generation() -> int:
        fd = t_open(gpath, rd)
        try:
            return int(t_read(fd, 32))
        finally:
            t_close(fd)

    state = [generation()]

    def expected_fresh(attr: str, chunks: list[bytes]) -> list[str]:
        """The oracle's results for ``program`` on a fresh item (the .tsmseq's terms)."""
        g = prof.generation_initial
        out = [f"0 gen={g}", "fd0"]
        for c in chunks:
            res, bump = expect(attr, c)
            g += bump
            out.append(f"{'|'.join(res)} gen={g}")
        return out + [f"0 gen={g}"]

    def finding(attr: str, chunks: list[bytes], k: int, got: str, want: str) -> Finding:
        ops = program(attr, chunks)
        rule = f"write({attr}) result and generation follow kstrtouint/guid_parse and the profile"
        observed = f"write {k + 1} of {len(chunks)}: {got}, expected {want}"
        seq, fresh = harness.record(ctx, ops, harness.header(NAME, rule, observed, ctx))
        exp = expected_fresh(attr, chunks)
        diff = [f"step {i + 1} {ops[i]}: expected {e}" for i, (e, g) in enumerate(zip(exp, fresh)) if e != g]
        seq.header["expected"] = "; ".join(diff) if diff else "(not reproduced on a fresh item)"
        return Finding(rule, observed, seq)

    # A FUSE mount answers zero-length writes itself (target/fuse_limits.py): leave them out there.
    drop_empty = "zero-length-write" in (getattr(tree, "limits", None) or ())

    last: list = ["", [], []]  # the last input's attribute, chunks and write results, for last_sequence()

    def one(data: bytes) -> None:
        attr, chunks = decode(data, attrs)
        if drop_empty:
            chunks = [c for c in chunks if c]
        results: list[str] = []
        last[0], last[1], last[2] = attr, chunks, results
        fd = t_open(paths[attr], wr)
        try:
            for k, c in enumerate(chunks):
                want, bump = expect(attr, c)
                try:
                    got = str(t_write(fd, c))
                except OSError as e:
                    got = name(e.errno)
                results.append(got)
                g = generation()
                if got not in want or g != state[0] + bump:
                    delta, state[0] = g - state[0], g
                    raise finding(attr, chunks, k, f"{got} gen+{delta}", f"{'|'.join(want)} gen+{bump}")
                state[0] = g
        finally:
            t_close(fd)

    def last_sequence():  # noqa: ANN202 - a tsm_conformance.seq.Sequence
        """The last input on a fresh item (``program``), the write results it gave as expectations
        (generations are left out: the input ran on this process's long-lived item)."""
        from tsm_conformance.seq import Sequence, Step
        attr, chunks, results = last
        ops = program(attr, chunks)
        expected = [None, None] + [results[k] if k < len(results) else None for k in range(len(chunks))] + [None]
        seq = Sequence([Step(op, e) for op, e in zip(ops, expected)], harness.header(NAME, "", "", ctx))
        if ctx.emulate:
            seq.header["emulate"] = ctx.emulate
        return seq

    one.last_sequence = last_sequence  # type: ignore[attr-defined]  # tsm_fuzz.api.sequence_hook
    return one
