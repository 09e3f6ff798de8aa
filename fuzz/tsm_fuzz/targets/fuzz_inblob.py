"""inblob: payload bytes, write chunking, pwrite offsets, several fds closed in any order, reads.

The input decodes to a short program on one fresh item (opens of inblob, write()s and pwrite()s of
0..79 bytes at offsets up to 71, closes, lseeks, outblob reads); it runs through the suite's
sequence executor with the item's generation tracked after every write and close, and each result
is checked against a model of configfs' binary attribute buffer (docs/abi.md §1a, §1c, §2, §3):

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


def decode(data: bytes, limits: frozenset[str] = frozenset()) -> list:  # noqa: ANN201
    """The program an input stands for: a list of seq.Op on item r0.  ``limits``: what the tree
    cannot show (target/fuse_limits.py: a FUSE mount answers zero-length writes and lseek itself);
    such ops are left out."""
    from tsm_conformance.seq import Op
    r = harness.Bytes(data)
    ops = [Op("mkdir", ("r0",))]
    open_w: list[str] = []
    nfd = 0

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


class _Fd:
    __slots__ = ("attr", "buf", "pos", "wip")

    def __init__(self, attr: str) -> None:
        self.attr, self.buf, self.pos, self.wip = attr, bytearray(), 0, False


class Model:
    """The expected result of each op, given what the tree returned so far (raw read bytes)."""

    def __init__(self, profile) -> None:  # noqa: ANN001
        p = profile
        self.p = p
        self.max = p.limits_inblob_max
        self.gen = p.generation_initial
        self.committed: bytes | None = None
        self.fds: dict[str, _Fd] = {}
        self.nfd = 0
        self.report: tuple[int, bytes] | None = None  # (generation, bytes) of the last report read
        self.e_big = p.errno("inblob_oversize")[0]
        self.e_zero = p.errno("write_zero_length")[0]
        self.e_dir = p.errno("open_wrong_direction")[0]
        self.e_seek = p.errno("lseek_binary")[0]
        self.e_noin = p.errno("read_before_inblob")[0]

    def step(self, op, got: str, raw: bytes | None) -> str | None:  # noqa: ANN001
        """None if ``got`` is right, else what was expected."""
        name, a = op.name, op.args
        g = f" gen={self.gen}"
        if name == "mkdir":
            return None if got == "0" + g else "0" + g
        if name == "open":
            fd = f"fd{self.nfd}"
            self.nfd += 1
            if a[0] == "r0/inblob" and a[1] != "O_WRONLY":
                return None if got == self.e_dir else self.e_dir
            self.fds[fd] = _Fd(str(a[0]).split("/")[1])
            return None if got == fd else fd
        f = self.fds.get(str(a[0]))
        if f is None:
            return None if got == "EBADF" else "EBADF"
        if name in ("write", "pwrite"):
            data = a[1]
            pos = f.pos if name == "write" else a[2]
            end = pos + len(data)
            f.wip = True
            if end > len(f.buf) and end > self.max:
                want = self.e_big
            else:
                if end > len(f.buf):
                    f.buf.extend(bytes(end - len(f.buf)))
                f.buf[pos:end] = data
                want = str(len(data)) if data else self.e_zero
                if name == "write":
                    f.pos = end
            want += g
            return None if got == want else want
        if name == "lseek":
            return None if got == self.e_seek else self.e_seek
        if name == "close":
            del self.fds[str(a[0])]
            if f.attr == "inblob" and f.wip:
                self.committed = bytes(f.buf)
                self.gen += 1
            want = f"0 gen={self.gen}"
            return None if got == want else want
        if name == "read":
            return self._report(got, raw)
        return None

    def _report(self, got: str, raw: bytes | None) -> str | None:
        p, n = self.p, len(self.committed or b"")
        if not n:
            return None if got == self.e_noin else self.e_noin
        lengths = p.inblob_report_lengths
        if lengths is not None and n not in lengths and p.inblob_rejected_length_errno:
            want = p.inblob_rejected_length_errno
            return None if got == want else f"{want} (inblob of {n} bytes)"
        if raw is None:
            return f"a report (inblob of {n} bytes)"
        nonce, committed = p.report_nonce, self.committed or b""
        if nonce is not None:
            if nonce.offset is None:
                if committed.ljust(nonce.length, b"\0") not in raw:
                    return f"a report carrying the {n}-byte nonce {committed.hex()}"
            elif raw[nonce.offset:nonce.offset + n] != committed:
                return (f"a report carrying the {n}-byte nonce {committed.hex()} at {nonce.offset:#x}, "
                        f"got {raw[nonce.offset:nonce.offset + n].hex()}")
        last = self.report
        self.report = (self.gen, raw)
        if last is not None:
            if last[0] == self.gen and last[1] != raw:
                return "the same report as the previous read at this generation (cached)"
            if last[0] != self.gen and last[1] == raw and p.report_fresh_per_generation:
                return "a new report after the generation changed"
        return None


def make(ctx: TargetContext):  # noqa: ANN201
    harness.prepare(ctx)
    from tsm_conformance import errnos
    from tsm_conformance.seq import Executor, Sequence, Step, _show
    profile = ctx.profile
    tree = ctx.tree()
    limits = frozenset(getattr(tree, "limits", None) or ())

    def one(data: bytes) -> None:
        ops = decode(data, limits)
        model = Model(profile)
        ex = Executor(tree, harness.fresh_prefix(ctx), annotate=True)
        results: list[str] = []
        bad: tuple[int, str, str] | None = None
        try:
            for i, op in enumerate(ops):
                raw = None
                if op.name == "read" and str(op.args[0]) in ex.fds:
                    try:
                        raw = tree.read(ex.fds[str(op.args[0])], int(op.args[1]))
                        res = _show(raw)
                    except OSError as e:
                        res = errnos.name(e.errno)
                else:
                    res = ex.run(op)
                if op.name in ("write", "pwrite", "close"):
                    res += ex._gen("r0")
                results.append(res)
                want = model.step(op, res, raw)
                if want is not None:
                    bad = (i, res, want)
                    break
        finally:
            ex.finish()
        if bad is None:
            return
        i, got, want = bad
        rule = "inblob: buffered per fd, <= 64 bytes, committed at close (+1 generation), bound by the report"
        observed = f"step {i + 1} {ops[i]}: {got}, expected {want}"
        seq = Sequence([Step(op, res) for op, res in zip(ops, results)],
                       {**harness.header(NAME, rule, observed, ctx), "track": "r0"})
        seq.header["expected"] = f"step {i + 1}: {want}"
        if ctx.emulate:
            seq.header["emulate"] = ctx.emulate
        raise Finding(rule, observed, seq)

    return one

