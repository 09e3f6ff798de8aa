"""Named emulator faults.  Each reproduces a real bug class so that every check can be shown to
fail; ``tests/test_quirk_matrix.py`` proves each one is caught by at least one named check."""

from __future__ import annotations

from dataclasses import dataclass

from ..suggest import did_you_mean

ALL = ("tsm_test", "sev_guest", "sev_guest-svsm", "tdx_guest", "arm_cca_guest")
PRIVLEVEL = ("tsm_test", "sev_guest", "sev_guest-svsm", "arm_cca_guest")  # privlevel visible
HONOURS_PRIVLEVEL = ("tsm_test", "sev_guest", "sev_guest-svsm")
FLOOR_ABOVE_ZERO = ("tsm_test", "sev_guest-svsm")
SERVICE = ("tsm_test", "sev_guest-svsm", "arm_cca_guest")
AUXBLOB = ("tsm_test", "sev_guest", "sev_guest-svsm")  # auxblob visible and non-empty
FORMATS = ("sev_guest", "sev_guest-svsm", "tdx_guest", "arm_cca_guest")  # signed report formats
LENGTH_RULE = ("sev_guest", "sev_guest-svsm", "tdx_guest", "arm_cca_guest")
MR = ("tsm_test", "tdx_guest")  # measurement registers (6.16+: emulator/measurements.py)


@dataclass(frozen=True)
class Quirk:
    name: str
    applies_to: tuple[str, ...]
    description: str


QUIRKS: dict[str, Quirk] = {q.name: q for q in (
    Quirk("stale-outblob", ALL, "cached outblob served after a new inblob or option write"),
    Quirk("mr-overwrite", MR, "a measurement register write replaces its value instead of extending it"),
    Quirk("mr-size-unchecked", MR, "a measurement register write of another size or at another offset extends"),
    Quirk("mr-readonly-writable", MR, "a read-only measurement register opens for writing and extends"),
    Quirk("mr-refresh-always", ("tsm_test",), "every read of a live register refreshes the group, written or not"),
    Quirk("mr-stale-report", MR, "reports carry the registers' cached values: an extend is missing until a "
          "sysfs read refreshes them"),
    Quirk("mr-no-suffix", MR, "measurement register files lack their :ALGO hash suffix"),
    Quirk("no-cache", ALL, "every read regenerates the report, even at the same generation"),
    Quirk("auxblob-regenerates", AUXBLOB, "reading auxblob makes a new report instead of sharing the cached one"),
    Quirk("inblob-truncate", ALL, "oversize inblob silently truncated to 64 bytes instead of EFBIG"),
    Quirk("efbig-close-no-commit", ALL, "an EFBIG write does not mark the fd, so close commits nothing"),
    Quirk("efbig-discards-buffer", ALL, "an EFBIG write throws away the bytes buffered before it"),
    Quirk("zero-write-accepted", ALL, "zero-length write() returns 0 instead of EFAULT"),
    Quirk("inblob-commit-on-write", ALL, "inblob committed (generation bumped) at write(), not at close"),
    Quirk("inblob-last-write-wins", ALL, "each write() to inblob replaces the buffer instead of appending"),
    Quirk("rmdir-fd-alive", ALL, "fds opened before rmdir keep working on the removed item"),
    Quirk("pwrite-ignores-offset", ALL, "binary pwrite() writes at the file position, not the offset"),
    Quirk("privlevel-no-generation", PRIVLEVEL, "accepted privlevel write does not bump generation"),
    Quirk("privlevel-reject-bumps", PRIVLEVEL, "rejected privlevel write still bumps generation"),
    Quirk("privlevel-max-unchecked", PRIVLEVEL, "privlevel above TSM_PRIVLEVEL_MAX (3) accepted"),
    Quirk("privlevel-floor-unchecked", FLOOR_ABOVE_ZERO, "privlevel below privlevel_floor accepted"),
    Quirk("kstrtouint-lenient", PRIVLEVEL, "privlevel parsed like simple_strtoul: spaces and junk ignored"),
    Quirk("privlevel-decimal-only", PRIVLEVEL, "privlevel parsed base 10: 0x.. rejected, 0.. not octal"),
    Quirk("privlevel-overflow-wraps", PRIVLEVEL, "privlevel above U32_MAX wraps instead of ERANGE"),
    Quirk("text-write-unsplit", PRIVLEVEL, "text write over 4095 bytes stored whole"),
    Quirk("text-multiwrite-once", PRIVLEVEL, "only the first write() on a text fd is stored"),
    Quirk("vmpl-ignored", HONOURS_PRIVLEVEL, "report ignores privlevel (always VMPL 0)"),
    Quirk("nonce-ignored", ALL, "report does not carry the inblob nonce"),
    Quirk("report-signature-corrupt", FORMATS, "one bit of the report's signature flipped after signing"),
    Quirk("snp-certs-truncated", ("sev_guest", "sev_guest-svsm"), "auxblob certificate table cut in half"),
    Quirk("svsm-manifest-unbound", ("sev_guest-svsm",), "SVSM report_data = SHA-512(nonce), not of nonce || manifest"),
    Quirk("tdx-wrong-tee-type", ("tdx_guest",), "quote header tee_type 0 (SGX) instead of 0x81 (TDX)"),
    Quirk("tdx-in-flight-ignored", ("tdx_guest",),
          "after an interrupted quote, a new request proceeds instead of EBUSY"),
    Quirk("tdx-failed-quote-empty", ("tdx_guest",),
          "a failed quote reads as a 0-byte outblob on a kernel with the status check (7.0)"),
    Quirk("cca-auxblob-filled", ("arm_cca_guest",), "auxblob returns part of the token instead of nothing"),
    Quirk("cca-challenge-unpadded", ("arm_cca_guest",),
          "a short challenge is padded with stale bytes, not zeroes, to 64"),
    Quirk("short-inblob-accepted", LENGTH_RULE, "report made from an inblob shorter than the provider requires"),
    Quirk("read-before-inblob-enodata", ALL, "outblob before any inblob fails ENODATA instead of EINVAL"),
    Quirk("read-bumps-generation", ALL, "generating a report bumps generation"),
    Quirk("generation-starts-at-1", ALL, "a fresh item reports generation 1"),
    Quirk("inblob-open-bumps", ALL, "opening inblob for writing and closing it bumps generation"),
    Quirk("shared-generation", ALL, "one generation counter shared by all items"),
    Quirk("wrap-guard-missing", ALL, "no EBUSY when the generation counter would wrap onto the read generation"),
    Quirk("provider-no-newline", ALL, "provider text lacks its trailing newline"),
    Quirk("mkdir-duplicate-ok", ALL, "mkdir of an existing name succeeds"),
    Quirk("nested-mkdir-allowed", ALL, "mkdir inside a report item creates a directory"),
    Quirk("name-max-64", ALL, "item names over 64 bytes rejected with ENAMETOOLONG"),
    Quirk("rmdir-name-leak", ALL, "rmdir leaves the name taken: a new mkdir gets EEXIST"),
    Quirk("rmdir-keeps-state", ALL, "mkdir after rmdir revives the old item's generation and report"),
    Quirk("rmdir-silent-fail", ALL, "rmdir returns success but the item stays"),
    Quirk("item-mode-0700", ALL, "report item directories are created 0700"),
    Quirk("mode-outblob-0644", ALL, "outblob has mode 0644"),
    Quirk("extra-attribute", ALL, "items carry a stray 'debug' attribute"),
    Quirk("service-attrs-leak", ("sev_guest",), "service_* and manifestblob shown without an SVSM"),
    Quirk("tdx-privlevel-visible", ("tdx_guest",), "tdx_guest items show privlevel"),
    Quirk("rdwr-allowed", ALL, "O_RDWR open of an attribute succeeds"),
    Quirk("wo-readable", ALL, "write-only attributes can be read back (inblob leaks the nonce)"),
    Quirk("ro-writable", ALL, "read-only attributes accept O_WRONLY opens and swallow writes"),
    Quirk("bin-seekable", ALL, "lseek() on binary attributes succeeds"),
    Quirk("no-snapshot", ALL, "binary reads are not a per-fd snapshot: each read() refetches"),
    Quirk("pread-ignores-offset", ALL, "binary pread() reads at the file position"),
    Quirk("guid-reject-no-bump", SERVICE, "a rejected service_guid neither bumps generation nor resets the GUID"),
    Quirk("unregister-drops-cache", ("tsm_test",), "cached reports are no longer served once the provider unregisters"),
    Quirk("report-errno-eio", ("tsm_test",), "every report_new error reaches read() as EIO"),
    Quirk("per-item-lock", ("tsm_test",), "report_new runs under a per-item lock, not the global tsm_rwsem"),
    Quirk("blob-limit-off-by-one", ("tsm_test",), "a blob one byte over the limit is served instead of EFBIG"),
    Quirk("mkdir-race", ALL, "concurrent mkdir of one name can succeed more than once"),
    Quirk("unlocked-generation", ALL, "a report made while a write lands is stamped with the newer generation"),
    Quirk("shared-inblob", ALL, "all items share one inblob: a write to one changes the others' reports"),
    Quirk("rmdir-read-eio", ALL, "reads racing or following rmdir fail EIO instead of ENOENT"),
    Quirk("report-hangs", ALL, "report generation blocks for an hour under the global lock (a host that "
          "never answers); interruptible, like the TDX quote wait"),
    Quirk("service-provider-any", ("sev_guest-svsm",), "service_provider strings other than svsm accepted"),
    Quirk("floor-const-zero", ("sev_guest-svsm",), "privlevel_floor reads 0 whatever vmpck_id is, while the "
          "firmware refuses reports below vmpck_id (sev_guest before 614dc0fb7632, 6.11)"),
    Quirk("vmpl-rule-unchecked", ("sev_guest-svsm",), "the firmware serves a report below the VMPL of the "
          "VMPCK that asked for it (a fresh item's privlevel 0 under an SVSM)"),
    Quirk("tdreport-old-errnos", ("tdx_guest",), "TDREPORT failures keep the pre-6.16 errnos (INVALID_OPERAND "
          "EINVAL, OPERAND_BUSY EIO) on a 6.16+ kernel"),
)}


def check_applicable(config: str, names: list[str]) -> None:
    """ValueError naming the first unknown or inapplicable quirk."""
    for n in names:
        q = QUIRKS.get(n)
        if q is None:
            raise ValueError(f"unknown quirk '{n}'{did_you_mean(n, QUIRKS)} (tsm-conformance quirks lists them)")
        if config not in q.applies_to:
            raise ValueError(f"quirk '{n}' does not apply to {config} "
                             f"(applies to {', '.join(q.applies_to)})")
