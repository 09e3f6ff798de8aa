"""format.*: outblob, auxblob and manifestblob are well-formed reports bound to what was asked,
and their signatures verify (docs/abi.md §5; the parsers in formats/, the verifiers in verify/)."""

from __future__ import annotations

import hashlib
from typing import Any

from ..formats import registry
from ..formats.base import ParseError
from ..outcome import Unsupported
from ..verify.run import verify
from .base import Ctx, check


def _fmt(ctx: Ctx) -> str:
    fmt = ctx.profile.report_format
    if fmt is None:
        ctx.na(f"{ctx.profile.name} does not name its report format")
    return fmt


def _parse(ctx: Ctx, fmt: str, blob: bytes, what: str, keypath: str) -> Any:
    try:
        return registry.parse(fmt, blob)
    except ParseError as e:
        ctx.fail(f"{what} parses as {fmt}", f"{len(blob)} bytes: {e}", keypath)


def _report(ctx: Ctx, r: str, nonce: bytes) -> tuple[bytes, Any]:
    ctx.commit_inblob(r, nonce)
    blob = ctx.read_ok(f"{r}/outblob", "report.format")
    return blob, _parse(ctx, ctx.profile.report_format or "", blob, f"read({ctx.rel(r)}/outblob)", "report.format")


def _shared(ctx: Ctx, fmt: str) -> Any:
    """The run's shared plain report (Ctx.shared_report), parsed."""
    s = ctx.shared_report()
    return _parse(ctx, fmt, s.outblob, f"read({ctx.rel(s.name)}/outblob)", "report.format")


def _shared_certs(ctx: Ctx) -> Any:
    """The shared report's certificate table: None without auxblob or when it is empty."""
    s = ctx.shared_report()
    afmt = ctx.profile.auxblob_format
    if afmt is None or s.auxblob is None:
        return None
    if isinstance(s.auxblob, str):
        ctx.fail(f"read({ctx.rel(s.name)}/auxblob) -> bytes", f"read({ctx.rel(s.name)}/auxblob) -> {s.auxblob}",
                 "report.auxblob_format")
    return _parse(ctx, afmt, s.auxblob, f"read({ctx.rel(s.name)}/auxblob)", "report.auxblob_format") \
        if s.auxblob else None


@check("format.outblob.parses",
       "outblob parses as the profile's report format, with a version and TEE type the profile allows",
       "docs/abi.md §5.1 ATTESTATION_REPORT, §5.2 quote header, §5.3 CCA token")
def parses(ctx: Ctx) -> None:
    fmt = _fmt(ctx)
    parsed = _shared(ctx, fmt)
    versions = ctx.profile.report_versions
    if versions and fmt in registry.VERSION_FIELD:
        v = registry.field(parsed, registry.VERSION_FIELD[fmt])
        if v not in versions:
            ctx.fail(f"{registry.VERSION_FIELD[fmt]} in {list(versions)}",
                     f"{registry.VERSION_FIELD[fmt]} = {v}", "report.versions")
    tee = ctx.profile.report_tee_type
    if tee is not None and parsed.header.tee_type != tee:
        ctx.fail(f"header.tee_type = {tee:#x}", f"header.tee_type = {parsed.header.tee_type:#x}",
                 "report.tee_type")


@check("format.outblob.nonce_bound",
       "the report's nonce field (report_data / REPORTDATA / challenge) is the inblob, zero-padded, "
       "for the shortest and the longest accepted inblob",
       "docs/abi.md §5.1 report_data @0x50, §5.2 REPORTDATA, §5.3 challenge zero-padded to 64")
def nonce_bound(ctx: Ctx) -> None:
    fmt = _fmt(ctx)
    width = ctx.need_nonce_binding().length
    rng = ctx.profile.inblob_report_lengths
    lengths = sorted({rng.min, rng.max}) if rng else [ctx.report_len()]
    for salt, n in enumerate(lengths):
        with ctx.report_item() as r:
            nonce = ctx.nonce(n, salt=salt)
            _, parsed = _report(ctx, r, nonce)
            got = bytes(registry.field(parsed, registry.NONCE_FIELD[fmt]))
            want = nonce.ljust(width, b"\0")
            if got != want:
                ctx.fail(f"{registry.NONCE_FIELD[fmt]} = inblob ({n} bytes) zero-padded to {width}: {want.hex()}",
                         f"{registry.NONCE_FIELD[fmt]} = {got.hex()}", "report.nonce")


@check("format.outblob.privlevel",
       "the parsed report's privilege field (SNP: vmpl) equals privlevel for every level from the floor to 3",
       "docs/abi.md §5.1: privlevel becomes the request's VMPL", needs=("privlevel",))
def privlevel(ctx: Ctx) -> None:
    fmt = _fmt(ctx)
    if fmt not in registry.PRIVLEVEL_FIELD or not ctx.profile.privlevel_honoured:
        ctx.na(f"{ctx.profile.name} reports do not carry privlevel")
    floor = ctx.facts.privlevel_floor or 0
    with ctx.item() as r:  # privlevel is the subject: each level is written before its report
        for level in range(floor, ctx.profile.limits_privlevel_max + 1):
            ctx.write(f"{r}/privlevel", f"{level}\n".encode())
            _, parsed = _report(ctx, r, ctx.nonce(ctx.report_len(), salt=level))
            got = registry.field(parsed, registry.PRIVLEVEL_FIELD[fmt])
            if got != level:
                ctx.fail(f"{registry.PRIVLEVEL_FIELD[fmt]} = {level} after privlevel {level}",
                         f"{registry.PRIVLEVEL_FIELD[fmt]} = {got}", "privlevel.honoured")


@check("format.auxblob.parses",
       "auxblob is empty (no host certificates) or a certificate table holding the report's signing key",
       "docs/abi.md §5.1 auxblob: GHCB certificate table, 24-byte GUID entries, all-zero terminator",
       needs=("auxblob",))
def auxblob(ctx: Ctx) -> None:
    afmt = ctx.profile.auxblob_format
    if afmt is None:
        ctx.na(f"{ctx.profile.name} does not name an auxblob format")
    table = _shared_certs(ctx)
    if table is None:
        if not ctx.profile.auxblob_may_be_empty:
            ctx.fail("auxblob holds certificates", "0 bytes", "report.auxblob_format")
        return
    names = {e.name for e in table.entries}
    if not names & {"vcek", "vlek"}:
        ctx.fail("a VCEK or VLEK entry", f"entries: {sorted(str(n) for n in names)}", "report.auxblob_format")


def _verdict(ctx: Ctx, what: str, v: Any, keypath: str) -> None:
    bad = [s for s in v.steps if s.status == "fail"]
    if bad:
        ctx.fail(f"{what}: every verification step passes",
                 "; ".join(f"{s.name}: {s.detail or 'fail'}" for s in bad), keypath)
    if not ctx.anchors:
        raise Unsupported("unsupported: no trust anchor (give --trust-anchor PEM); "
                          "self-consistency steps passed: " + ", ".join(s.name for s in v.steps if s.status == "pass"))
    missing = [s.name for s in v.steps if s.status == "unsupported"]
    if missing:
        raise Unsupported(f"unsupported: could not verify {', '.join(missing)} with the given anchors")


def _certs(ctx: Ctx, r: str) -> Any:
    if ctx.profile.auxblob_format is None or "auxblob" not in ctx.facts.attributes:
        return None
    blob = ctx.read_ok(f"{r}/auxblob", "report.auxblob_format")
    return _parse(ctx, ctx.profile.auxblob_format, blob, f"read({ctx.rel(r)}/auxblob)",
                  "report.auxblob_format") if blob else None


@check("format.signature.verifies",
       "the report's signature and certificate chain verify up to a trust anchor",
       "docs/abi.md §5.1 signature over [0, 0x2A0) by VCEK/VLEK; §5.2 quote signature data; §5.3 COSE_Sign1")
def signature(ctx: Ctx) -> None:
    fmt = _fmt(ctx)
    parsed = _shared(ctx, fmt)
    _verdict(ctx, "outblob", verify(fmt, parsed, ctx.anchors, _shared_certs(ctx)), "report.format")


@check("format.svsm.binding",
       "with service_provider=svsm, report_data = SHA-512(nonce || manifestblob), the manifest parses "
       "and the report verifies",
       "docs/abi.md §5.1 SVSM path; SVSM spec §7 attestation", needs=("service_provider", "manifestblob"))
def svsm(ctx: Ctx) -> None:
    fmt = _fmt(ctx)
    if ctx.profile.service_attestation != "svsm":
        ctx.na(f"{ctx.profile.name} has no SVSM attestation")
    with ctx.report_item() as r:
        ctx.write(f"{r}/service_provider", b"svsm\n")
        nonce = ctx.nonce(ctx.report_len())
        _, parsed = _report(ctx, r, nonce)
        manifest = ctx.read_ok(f"{r}/manifestblob", "service.attestation")
        _parse(ctx, "svsm-manifest", manifest, f"read({ctx.rel(r)}/manifestblob)", "service.attestation")
        want = hashlib.sha512(nonce + manifest).digest()
        got = bytes(registry.field(parsed, registry.NONCE_FIELD[fmt]))
        if got != want:
            ctx.fail(f"report_data = SHA-512(nonce || manifestblob) = {want.hex()}",
                     f"report_data = {got.hex()}", "service.attestation")
        _verdict(ctx, "SVSM report", verify(fmt, parsed, ctx.anchors, _certs(ctx, r)), "service.attestation")


@check("format.options.ignored",
       "options the provider ignores change nothing: with them set, the report still parses and binds "
       "the nonce, and the blobs it never fills read as 0 bytes",
       "docs/abi.md §5.3: privlevel 0..3 and service_* accepted and ignored; auxblob, manifestblob empty")
def ignored(ctx: Ctx) -> None:
    fmt = _fmt(ctx)
    ignores = [a for a in ctx.profile.report_ignores if a in ctx.facts.attributes]
    empty = [a for a in ctx.profile.report_always_empty if a in ctx.facts.attributes]
    if not ignores and not empty:
        ctx.na(f"{ctx.profile.name} neither ignores options nor leaves blobs empty")
    values = {"privlevel": f"{ctx.profile.limits_privlevel_max}\n", "service_provider": "svsm\n",
              "service_guid": "c476f1eb-0123-45a5-9641-b4e7dde5bfe3\n", "service_manifest_version": "7\n"}
    with ctx.report_item() as r:
        for a in ignores:
            ctx.write(f"{r}/{a}", values[a].encode())
        nonce = ctx.nonce(ctx.report_len())
        _, parsed = _report(ctx, r, nonce)
        got = bytes(registry.field(parsed, registry.NONCE_FIELD[fmt]))
        if ctx.profile.report_nonce and got != nonce.ljust(ctx.profile.report_nonce.length, b"\0"):
            ctx.fail(f"{registry.NONCE_FIELD[fmt]} = the inblob with {', '.join(ignores)} set",
                     f"{registry.NONCE_FIELD[fmt]} = {got.hex()}", "report.ignores")
        for a in empty:
            blob = ctx.read_ok(f"{r}/{a}", "report.always_empty")
            if blob:
                ctx.fail(f"read({ctx.rel(r)}/{a}) -> 0 bytes", f"{len(blob)} bytes", "report.always_empty")
