"""service.*: the 6.11 SVSM options (docs/abi.md §1a, §5.1; docs/real-kernels.md claims: Text attributes)."""

from __future__ import annotations

from .base import Ctx, check

VALID_GUID = b"c476f1eb-0123-45a5-9641-b4e7dde5bfe3"


@check("service.guid.failed_parse_bumps_and_resets",
       "a valid service_guid bumps generation; an invalid one fails EINVAL yet still bumps (reset before parse)",
       "docs/abi.md §1a service_guid, §8.5", needs=("service_guid",))
def guid(ctx: Ctx) -> None:
    with ctx.item() as r:
        g0 = ctx.generation(r)
        ctx.expect_equal(f"write({ctx.rel(r)}/service_guid, <uuid>)", len(VALID_GUID),
                         ctx.write(f"{r}/service_guid", VALID_GUID), "attributes.service_guid")
        ctx.expect_equal("generation after a valid service_guid", g0 + 1, ctx.generation(r), "generation.text_commit")
        bad = b"00000000-0000-0000-0000-000000"  # the ABI doc's own malformed null GUID
        ctx.expect_errno("service_guid_invalid", f"write({ctx.rel(r)}/service_guid, {bad!r})",
                         ctx.write(f"{r}/service_guid", bad))
        ctx.expect_equal("generation after a rejected service_guid (bumped before parsing)", g0 + 2,
                         ctx.generation(r), "generation.text_commit")


@check("service.manifest_version.grammar",
       "service_manifest_version takes kstrtouint text (+1 each); bad text fails EINVAL with no bump",
       "docs/abi.md §1a service_manifest_version", needs=("service_manifest_version",))
def manifest_version(ctx: Ctx) -> None:
    with ctx.item() as r:
        g0 = ctx.generation(r)
        for text in (b"0x10", b"010", b"4294967295", b"7\n"):
            ctx.expect_equal(f"write({ctx.rel(r)}/service_manifest_version, {text!r})", len(text),
                             ctx.write(f"{r}/service_manifest_version", text), "attributes.service_manifest_version")
        for text in (b"-1", b"7 ", b" 7"):
            ctx.expect_errno("service_manifest_version_invalid",
                             f"write({ctx.rel(r)}/service_manifest_version, {text!r})",
                             ctx.write(f"{r}/service_manifest_version", text))
        ctx.expect_equal("generation after 4 accepted and 3 rejected writes", g0 + 4, ctx.generation(r),
                         "generation.text_commit")


@check("service.provider.rejects_other",
       "a service_provider the provider does not know makes the report read fail; a known one works",
       "docs/abi.md §5.1: only \"svsm\"; other strings give EINVAL", needs=("service_provider",))
def provider_values(ctx: Ctx) -> None:
    known = ctx.profile.service_provider_values
    want = ctx.profile.service_provider_rejected_errno
    if not known or want is None:
        ctx.na(f"{ctx.profile.name} ignores service_provider")
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        ctx.write(f"{r}/service_provider", b"not-" + known[0].encode() + b"\n")
        res = ctx.read(f"{r}/outblob")
        if res != want:
            ctx.fail(f"read({ctx.rel(r)}/outblob) -> {want}",
                     f"read({ctx.rel(r)}/outblob) -> {res if isinstance(res, str) else f'{len(res)} bytes'}",
                     "service.rejected_errno")
    with ctx.report_item() as r:
        ctx.commit_inblob(r, ctx.nonce(ctx.report_len()))
        ctx.write(f"{r}/service_provider", known[0].encode() + b"\n")
        ctx.read_ok(f"{r}/outblob", "service.provider_values")
        if "manifestblob" in ctx.facts.attributes:
            m = ctx.read_ok(f"{r}/manifestblob", "service.provider_values")
            if not m:
                ctx.fail(f"read({ctx.rel(r)}/manifestblob) -> a manifest", "0 bytes", "service.provider_values")
