"""Text option attributes: privlevel, service_provider, service_guid, service_manifest_version.

Random text is written to one of the attributes the tree shows; the result of every write() and the
generation after it are checked against an oracle written here with the grammar of
``tsm_conformance.oracle.parse`` (independent of the emulator's parsers; docs/abi.md §1a, §1c,
§2, §3; lib/kstrtox.c, lib/uuid.c):

* configfs stores at most ``text_store_max`` (4095) bytes per write() into a zeroed page, so the
  store sees a C string: bytes after a NUL are invisible; write() returns the count stored; a
  zero-length write() stores nothing and fails EFAULT;
* ``kstrtouint(s, 0)``: optional ``+``; base 16 after ``0x``/``0X`` only if a hex digit follows,
  else base 8 after a leading ``0``, else 10; digits up to the first non-digit of the base;
  overflow past 2^64-1 is ERANGE whatever follows; no digits is EINVAL; then one ``\\n`` may follow
  and nothing else; a value over 2^32-1 is ERANGE;
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

from ..api import Finding, TargetContext
from .. import harness

NAME = "privlevel"
DESCRIPTION = "text attributes (privlevel, service_*) against an independent kstrtouint/guid_parse oracle"
# instrumented besides this module (tsm_fuzz.worker)
EMULATED_INSTRUMENT = ()  # the oracle alone: 3x the exec/s of also instrumenting emulator.kstrtox
MAX_LEN = 64  # libFuzzer -max_len: the long-text mode covers texts past one page
ATTRS = ("privlevel", "service_provider", "service_guid", "service_manifest_version")

# The grammar is the oracle's (tsm_conformance.oracle.parse), an encoding independent of the
# emulator's kstrtox: one place for it on the checking side.
parse_uint = oracle_parse.kstrtouint
guid_ok = oracle_parse.guid_ok


class Oracle:
    """What one write() of ``chunk`` to ``attr`` must return and whether it bumps generation."""

    def __init__(self, profile, floor: int) -> None:  # noqa: ANN001
        self.store_max = profile.limits_text_store_max
        self.pl_max = profile.limits_privlevel_max
        self.floor = floor
        self.e_invalid = profile.errno("privlevel_invalid")[0]
        self.e_range = profile.errno("privlevel_out_of_range")[0]
        self.e_overflow = profile.errno("privlevel_overflow")[0]
        self.e_zero = profile.errno("write_zero_length")[0]
        self.e_guid = profile.errno("service_guid_invalid")[0]
        self.e_smv = profile.errno("service_manifest_version_invalid")[0]

    def __call__(self, attr: str, chunk: bytes) -> tuple[str, int]:
        if not chunk:
            return self.e_zero, 0
        stored = chunk[: self.store_max]
        ok = str(len(stored))
        if attr == "privlevel":
            v = parse_uint(stored)
            if v == "EINVAL":
                return self.e_invalid, 0
            if v == "ERANGE":
                return self.e_overflow, 0
            if not self.floor <= v <= self.pl_max:  # type: ignore[operator]
                return self.e_range, 0
            return ok, 1
        if attr == "service_manifest_version":
            v = parse_uint(stored)
            if v == "EINVAL":
                return self.e_smv, 0
            if v == "ERANGE":
                return self.e_overflow, 0
            return ok, 1
        if attr == "service_guid":
            return (ok if guid_ok(stored) else self.e_guid), 1
        return ok, 1  # service_provider


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
    harness.prepare(ctx)
    from tsm_conformance import errnos
    prof, facts = ctx.profile, ctx.facts
    attrs = tuple(a for a in ATTRS if a in facts.attributes)
    if not attrs:
        raise RuntimeError(f"{facts.provider} shows none of {', '.join(ATTRS)}")
    floor = facts.privlevel_floor if facts.privlevel_floor is not None else 0
    oracle = Oracle(prof, floor)
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
            res, bump = oracle(attr, c)
            g += bump
            out.append(f"{res} gen={g}")
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

    def one(data: bytes) -> None:
        attr, chunks = decode(data, attrs)
        if drop_empty:
            chunks = [c for c in chunks if c]
        fd = t_open(paths[attr], wr)
        try:
            for k, c in enumerate(chunks):
                want, bump = oracle(attr, c)
                try:
                    got = str(t_write(fd, c))
                except OSError as e:
                    got = name(e.errno)
                g = generation()
                if got != want or g != state[0] + bump:
                    delta, state[0] = g - state[0], g
                    raise finding(attr, chunks, k, f"{got} gen+{delta}", f"{want} gen+{bump}")
                state[0] = g
        finally:
            t_close(fd)

    return one
