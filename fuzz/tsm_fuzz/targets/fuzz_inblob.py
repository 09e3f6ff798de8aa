"""inblob: payload bytes, write chunking, pwrite offsets, several fds closed in any order, reads.

The input decodes to a short program on one fresh item (privlevel set to the floor when that is
above 0; then opens of inblob, write()s and pwrite()s of 0..79 bytes at offsets up to 71, closes,
lseeks, outblob reads); it runs through the suite's sequence executor with the item's generation
tracked after every write and close, and each result and generation is judged by the oracle's
``SpecModel`` (``tsm_conformance.oracle``: configfs' binary attribute buffer and the report rules,
docs/abi.md §1a, §1c, §2, §3), which says:

* each fd has its own buffer; write()/pwrite() grow it to the end offset, zero-filling a gap, and
  return the count; an end offset past ``inblob_max`` (64) that grows the buffer fails EFBIG and
  leaves the buffer and position as they were; a zero-length write fails EFAULT (growing the
  buffer to the offset); either way the fd is now "write in progress";
* close() of such an fd commits its whole buffer (0..64 bytes) and bumps generation by exactly
  one; nothing else (open, write, read, close of a clean fd) changes generation;
* inblob opened O_RDONLY or O_RDWR fails EACCES; lseek() on it fails ESPIPE;
* outblob before any commit (or after committing 0 bytes) fails EINVAL; with a committed length
  the provider rejects (profile ``inblob.report_lengths``) it fails with the profile's errno;
  otherwise the report binds exactly the committed bytes (profile ``report.nonce``), two reads at
  one generation give identical bytes and (profiles with fresh reports) a new generation a new report.
"""

from __future__ import annotations

from ..api import Finding, TargetContext
from .. import harness

NAME = "inblob"
DESCRIPTION = "inblob writes (chunking, pwrite offsets, several fds, close order) and the report's nonce"
# instrumented besides this module (tsm_fuzz.worker): the in-process kernel (configfs + tsm core)
EMULATED_INSTRUMENT = ("tsm_conformance.emulator.kernel",)
MAX_LEN = 256  # libFuzzer -max_len
MAX_OPS = 48
MAX_FDS = 3


def decode(data: bytes, limits: frozenset[str] = frozenset(), floor: int = 0) -> list:  # noqa: ANN201
    """The program an input stands for: a list of seq.Op on item r0.  ``limits``: what the tree
    cannot show (target/fuse_limits.py: a FUSE mount answers zero-length writes and lseek itself);
    such ops are left out.  ``floor``: a privlevel floor above 0 is written to the new item first,
    as a correct client does, so that its reports are not refused below the floor."""
    from tsm_conformance.seq import Op
    r = harness.Bytes(data)
    ops = [Op("mkdir", ("r0",))]
    nfd = 0
    if floor:
        ops += [Op("open", ("r0/privlevel", "O_WRONLY")), Op("write", ("fd0", b"%d" % floor)), Op("close", ("fd0",))]
        nfd = 1
    open_w: list[str] = []

    def new_fd(flags: str) -> str:
        nonlocal nfd
        ops.append(Op("open", ("r0/inblob", flags)))
        nfd += 1
        return f"fd{nfd - 1}"

    while r.left() and len(ops) < MAX_OPS:
        c = r.u8()
        kind, arg = c & 7, c >> 3
        if kind in (0, 1) or (kind in (2, 3, 4) and not open_w):
            if kind in (0, 1) and arg >= 30:  # the wrong directions, rarely
                new_fd("O_RDONLY" if arg & 1 else "O_RDWR")
                continue
            if len(open_w) < MAX_FDS:
                open_w.append(new_fd("O_WRONLY"))
            if kind in (0, 1):
                continue
        fd = open_w[arg % len(open_w)] if open_w else None
        if kind in (2, 3) and fd:
            data_ = r.take(r.u8() % 80)
            if data_ or "zero-length-write" not in limits:
                ops.append(Op("write", (fd, data_)))
        elif kind == 4 and fd:
            n, off = r.u8() % 40, r.u8() % 72
            data_ = r.take(n)
            if data_ or "zero-length-write" not in limits:
                ops.append(Op("pwrite", (fd, data_, off)))
        elif kind == 5 and fd:
            ops.append(Op("close", (fd,)))
            open_w.remove(fd)
        elif kind == 6:
            rfd = f"fd{nfd}"
            nfd += 1
            ops += [Op("open", ("r0/outblob", "O_RDONLY")), Op("read", (rfd, 1 << 16)), Op("close", (rfd,))]
        elif kind == 7 and fd and "binary-lseek" not in limits:
            ops.append(Op("lseek", (fd, arg % 8, "SEEK_SET")))
    for fd in list(open_w):
        ops.append(Op("close", (fd,)))
    if r.data and r.data[0] & 0x80:  # end with a read of the report
        rfd = f"fd{nfd}"
        ops += [Op("open", ("r0/outblob", "O_RDONLY")), Op("read", (rfd, 1 << 16)), Op("close", (rfd,))]
    return ops


def make(ctx: TargetContext):  # noqa: ANN201
    harness.prepare(ctx)
    from tsm_conformance.oracle import SpecModel, expected_attributes
    from tsm_conformance.seq import Executor, ReportShape, Sequence, Step, project_reads, show
    profile, facts = ctx.profile, ctx.facts
    tree = ctx.tree()
    limits = frozenset(getattr(tree, "limits", None) or ())
    tracked = ("mkdir", "write", "pwrite", "close")  # results carry r0's generation (execute's track)
    floor = facts.privlevel_floor if "privlevel" in facts.attributes and facts.privlevel_floor else 0
    attrs = expected_attributes(profile, facts)  # SpecModel.from_facts, computed once
    last: list = [[], [], []]  # the last input's ops, results and raw results, for last_sequence()
    shape = ReportShape.of(profile)

    def sequence(ops: list, results: list[str], raw: list, hdr: dict[str, str]) -> Sequence:
        """The steps run with their results as expectations; report reads by their projection
        (header ``report``: their bytes differ per generation, seq.project_reads)."""
        proj = project_reads(ops[:len(raw)], raw, shape)
        steps = [Step(op, proj.get(i, results[i]) if i < len(results) else None) for i, op in enumerate(ops)]
        seq = Sequence(steps, {**hdr, "track": "r0", "report": shape.text()})
        if ctx.emulate:
            seq.header["emulate"] = ctx.emulate
        return seq

    def one(data: bytes) -> None:
        ops = decode(data, limits, floor)
        model = SpecModel(profile, attrs, facts.privlevel_floor, facts.provider)
        ex = Executor(tree, harness.fresh_prefix(ctx))
        results: list[str] = []
        raw: list = []
        last[0], last[1], last[2] = ops, results, raw
        bad: tuple[int, str, str] | None = None
        try:
            for i, op in enumerate(ops):
                obs = ex.call(op)
                raw.append(obs)
                res = show(obs)
                expect, why = model.step(op, obs)
                want = expect.text
                if op.name in tracked and (op.name != "mkdir" or obs == 0):
                    got_gen, gen = ex._gen("r0"), model.generation("r0")
                    res += got_gen
                    want += f" gen={gen}"
                    if why is None and got_gen != f" gen={gen}":
                        why = "another generation"
                results.append(res)
                if why is not None:
                    bad = (i, res, f"{want} ({why})")
                    break
        finally:
            ex.finish()
        if bad is None:
            return
        i, got, want = bad
        rule = "inblob: buffered per fd, <= 64 bytes, committed at close (+1 generation), bound by the report"
        observed = f"step {i + 1} {ops[i]}: {got}, expected {want}"
        seq = sequence(ops[:len(results)], results, raw, harness.header(NAME, rule, observed, ctx))
        seq.header["expected"] = f"step {i + 1}: {want}"
        raise Finding(rule, observed, seq)

    def last_sequence() -> Sequence:
        """The last input as run, its results as expectations (a kernel report's finding)."""
        return sequence(last[0], last[1], last[2], harness.header(NAME, "", "", ctx))

    one.last_sequence = last_sequence  # type: ignore[attr-defined]  # tsm_fuzz.api.sequence_hook
    return one

