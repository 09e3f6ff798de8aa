"""host.*: what a provider reports when its host (VMM, quoting service) fails or stalls
(docs/abi.md §5.2 tdx_guest).  Needs a target whose host can be told to misbehave: the emulator."""

from __future__ import annotations

import time

from ..profile.model import version_tuple
from .base import Ctx, check


def _shown(res: object) -> str:
    return f"{len(res)} bytes" if isinstance(res, bytes) else str(res)


@check("host.quote_failed.reported",
       "a quote the host fails is reported: EIO on kernels with the GetQuote status check, a 0-byte "
       "outblob before them; the item works again once the host does",
       "docs/abi.md §5.2: status != SUCCESS gives EIO (7.0); before, out_len 0 gives an empty outblob")
def quote_failed(ctx: Ctx) -> None:
    if "quote_failed" not in ctx.profile.errors:
        ctx.na(f"{ctx.profile.name} has no quote_failed condition")
    alts = ctx.profile.errors["quote_failed"]
    since = min((version_tuple(a.since) for a in alts if a.since), default=None)
    old_kernel = since is not None and version_tuple(ctx.facts.kernel_release) < since
    with ctx.report_item() as r:
        nonce = ctx.nonce(ctx.report_len())
        with ctx.host(quote_status="error"):
            ctx.commit_inblob(r, nonce)
            res = ctx.read(f"{r}/outblob", retry_busy=True)
        op = f"read({ctx.rel(r)}/outblob) with the host failing the quote"
        if old_kernel:
            if res != b"" and res not in ctx.profile.errno("quote_failed"):
                ctx.fail(f"{op} -> 0 bytes (before the status check) or "
                         f"{' or '.join(ctx.profile.errno('quote_failed'))}", f"{op} -> {_shown(res)}",
                         "errors.quote_failed")
        else:
            ctx.expect_errno("quote_failed", op, res)
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len(), salt=1))
        if not ctx.read_ok(f"{r}/outblob", "errors.quote_failed"):
            ctx.fail("a quote once the host works again", "0 bytes", "errors.quote_failed")


@check("host.quote_interrupted.busy_until_done",
       "a signal while the host works on a quote gives EINTR; requests before the host finishes get "
       "EBUSY; after it finishes, quotes work again",
       "docs/abi.md §5.2: EINTR leaves the buffer IN_FLIGHT, later requests get EBUSY until the VMM finishes")
def quote_interrupted(ctx: Ctx) -> None:
    for cond in ("quote_interrupted", "quote_in_flight"):
        if cond not in ctx.profile.errors:
            ctx.na(f"{ctx.profile.name} has no {cond} condition")
    quote_ms, signal_ms = 400, 40
    with ctx.report_item() as r:
        with ctx.host(quote_ms=quote_ms, signal_ms=signal_ms):
            ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
            t0 = time.monotonic()
            ctx.expect_errno("quote_interrupted", f"read({ctx.rel(r)}/outblob) interrupted after {signal_ms} ms",
                             ctx.read(f"{r}/outblob", retry_busy=True))
        with ctx.report_item() as r2:  # another item, same provider: the host still owns the buffer
            ctx.commit_inblob(r2, ctx.nonce(ctx.report_len(), salt=1))
            if time.monotonic() - t0 < quote_ms / 1000 * 0.75:
                ctx.expect_errno("quote_in_flight", f"read({ctx.rel(r2)}/outblob) while the host is busy",
                                 ctx.read(f"{r2}/outblob"))
            else:  # never pass without having looked: say the machine was too slow
                from ..outcome import Unsupported
                raise Unsupported("unsupported: this machine took too long to reach the in-flight "
                                  f"window ({quote_ms} ms) after the interrupted read")
            time.sleep(max(0.0, quote_ms / 1000 - (time.monotonic() - t0)) + 0.05)
            ctx.read_ok(f"{r2}/outblob", "errors.quote_in_flight")


TDREPORT = {"invalid_operand": "tdreport_invalid_operand", "operand_busy": "tdreport_operand_busy",
            "error": "tdreport_failed"}


@check("host.tdreport_failed.errno",
       "a TDREPORT the TDX module refuses fails the outblob read with its status's errno (6.16+: "
       "INVALID_OPERAND ENXIO, OPERAND_BUSY EBUSY; before: EINVAL, EIO; others EIO); the item "
       "works again once the module does",
       "docs/providers.md tdx_guest: tdx_mcall_get_report0() errno mapping, tsm.git 2748566da8b0")
def tdreport_failed(ctx: Ctx) -> None:
    missing = [c for c in TDREPORT.values() if c not in ctx.profile.errors]
    if missing:
        ctx.na(f"{ctx.profile.name} has no {missing[0]} condition")
    with ctx.report_item() as r:
        for i, (status, cond) in enumerate(TDREPORT.items()):
            ctx.commit_inblob(r, ctx.nonce(ctx.report_len(), salt=i))
            with ctx.host(tdreport=status):
                res = ctx.read(f"{r}/outblob")
            allowed = ctx.profile.errno_at(cond, ctx.facts.kernel_release)
            if res not in allowed:
                op = f"read({ctx.rel(r)}/outblob) with TDG.MR.REPORT answering {status.upper()}"
                ctx.fail(f"{op} -> {' or '.join(allowed)} (kernel {ctx.facts.kernel_release})",
                         f"{op} -> {_shown(res)}", f"errors.{cond}")
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len(), salt=9))
        ctx.read_ok(f"{r}/outblob", "errors.tdreport_failed")
