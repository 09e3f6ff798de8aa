"""Every check passes on the faithful emulator, every quirk is caught by its named check, and every
check fails against at least one quirk (a check that cannot fail is a defect)."""

from __future__ import annotations

import functools

import pytest

from tsm_conformance.checks.base import all_checks
from tsm_conformance.checks.runner import Session
from tsm_conformance.emulator.era import DEFAULT_ERA, Era
from tsm_conformance.emulator.providers import CONFIGS
from tsm_conformance.emulator.quirks import QUIRKS
from tsm_conformance.outcome import Outcome
from tsm_conformance.profile.baseline import DEFAULT, Context, load_baselines
from tsm_conformance.profile.load import load_profile
from tsm_conformance.target.emulated import EmulatedTree

# The check that must catch each quirk on every provider it applies to (others may fail too).
CATCHES = {
    "stale-outblob": "cache.outblob.regenerated_after_inblob",
    "mr-overwrite": "mr.write.extends",
    "mr-size-unchecked": "mr.write.short_einval",
    "mr-readonly-writable": "mr.readonly.refused",
    "mr-refresh-always": "mr.refresh.only_after_write",
    "mr-stale-report": "mr.report.coherent",
    "mr-no-suffix": "mr.files.match_profile",
    "no-cache": "cache.outblob.stable_without_writes",
    "auxblob-regenerates": "cache.auxblob.shares_report",
    "inblob-truncate": "inblob.oversize.efbig",
    "efbig-close-no-commit": "inblob.oversize.close_commits_empty",
    "efbig-discards-buffer": "inblob.efbig.keeps_prefix",
    "zero-write-accepted": "inblob.zero_write.efault_commits_empty",
    "inblob-commit-on-write": "gen.inblob.commit_at_close",
    "inblob-last-write-wins": "inblob.multi_write.concatenates",
    "rmdir-fd-alive": "lifecycle.rmdir.open_fd_enoent",
    "pwrite-ignores-offset": "inblob.pwrite.zero_fills_gap",
    "privlevel-no-generation": "gen.privlevel.accepted_bumps",
    "privlevel-reject-bumps": "gen.privlevel.rejected_unchanged",
    "privlevel-max-unchecked": "privlevel.range.max_enforced",
    "privlevel-floor-unchecked": "privlevel.range.floor_enforced",
    "kstrtouint-lenient": "privlevel.grammar.rejected",
    "privlevel-decimal-only": "privlevel.grammar.accepted",
    "privlevel-overflow-wraps": "privlevel.grammar.erange",
    "text-write-unsplit": "gen.text.split_at_store_max",
    "text-multiwrite-once": "gen.text.one_store_per_write",
    "vmpl-ignored": "privlevel.report.echoed",
    "nonce-ignored": "outblob.nonce.bound",
    "short-inblob-accepted": "inblob.length.rejected_at_read",
    "read-before-inblob-enodata": "outblob.before_inblob.einval",
    "read-bumps-generation": "gen.read.unchanged",
    "generation-starts-at-1": "gen.fresh.initial",
    "inblob-open-bumps": "gen.inblob.open_close_noop",
    "shared-generation": "lifecycle.items.independent",
    "wrap-guard-missing": "gen.wrap_guard.ebusy",
    "provider-no-newline": "discovery.provider.matches_profile",
    "mkdir-duplicate-ok": "lifecycle.mkdir.duplicate_eexist",
    "nested-mkdir-allowed": "lifecycle.mkdir.inside_item_eperm",
    "name-max-64": "lifecycle.mkdir.name_max",
    "rmdir-name-leak": "lifecycle.rmdir.name_reusable",
    "rmdir-keeps-state": "lifecycle.rmdir.recreated_item_is_fresh",
    "rmdir-silent-fail": "lifecycle.rmdir.removes_item",
    "item-mode-0700": "lifecycle.mkdir.creates_item",
    "mode-outblob-0644": "attr.modes.match_profile",
    "extra-attribute": "attr.set.matches_profile",
    "service-attrs-leak": "attr.set.matches_profile",
    "tdx-privlevel-visible": "attr.set.matches_profile",
    "rdwr-allowed": "access.rdwr.eacces",
    "wo-readable": "access.read_write_only.eacces",
    "ro-writable": "access.write_read_only.eacces",
    "bin-seekable": "access.lseek.binary_espipe",
    "no-snapshot": "outblob.snapshot.per_fd",
    "pread-ignores-offset": "outblob.partial_reads.consistent",
    "guid-reject-no-bump": "service.guid.failed_parse_bumps_and_resets",
    "service-provider-any": "service.provider.rejects_other",
    "unregister-drops-cache": "provider.unregister.items_survive",
    "report-errno-eio": "provider.report_new.errno_passthrough",
    "per-item-lock": "provider.lock.global",
    "blob-limit-off-by-one": "provider.size.limit",
    "mkdir-race": "concurrency.mkdir.one_winner",
    "unlocked-generation": "concurrency.item.generation_protocol",
    "shared-inblob": "concurrency.items.independent_reports",
    "rmdir-read-eio": "concurrency.rmdir.during_reads",
    "report-signature-corrupt": "format.signature.verifies",
    "snp-certs-truncated": "format.auxblob.parses",
    "svsm-manifest-unbound": "format.svsm.binding",
    "tdx-wrong-tee-type": "format.outblob.parses",
    "cca-challenge-unpadded": "format.outblob.nonce_bound",
    "cca-auxblob-filled": "format.options.ignored",
    "tdx-in-flight-ignored": "host.quote_interrupted.busy_until_done",
    "tdx-failed-quote-empty": "host.quote_failed.reported",
    "report-hangs": "cache.outblob.regenerated_after_inblob",
    "floor-const-zero": "privlevel.floor.reports",
    "vmpl-rule-unchecked": "privlevel.below_floor.refused",
    "tdreport-old-errnos": "host.tdreport_failed.errno",
}
PAIRS = [(cfg, q) for q in QUIRKS for cfg in QUIRKS[q].applies_to]
ERAS = ("6.7", "6.11", "6.13", "6.16", "7.0")


SHIPPED = load_baselines([DEFAULT])
# these sleep and race on purpose, or (the state machine) draw thousands of operations: run them
# only where needed (each provider's plain configuration runs them at every era, other legal
# configurations at the default era)
SLOW = ("provider.", "concurrency.", "host.", "model.state_machine.")


@functools.cache
def failing(spec: str, profile: str, slow: bool = True, only: str | None = None) -> frozenset[str]:
    """The checks that fail (or hang) on ``spec``; ``only``: run just that check (a quirk test
    asks only whether its catcher fails: the rest of a session costs seconds per quirk)."""
    checks = [c for c in all_checks() if (slow or not c.id.startswith(SLOW)) and only in (None, c.id)]
    kw: dict = {}
    if "report-hangs" in spec:  # every report generation hangs: a short deadline, one area, no stop
        checks, kw = [c for c in checks if c.area == "cache"], {"op_timeout": 0.3, "stop_on_hang": False}
    tree = EmulatedTree(spec)
    res = Session(tree, load_profile(profile), **kw).run(checks)
    errors = [r for r in res if r.outcome == Outcome.ERROR]
    assert not errors, [(r.check.id, r.reason) for r in errors]
    # a known kernel bug (the shipped baseline) is reported as known by a run, not as a failure
    ctx = Context(tree.kernel_release(), tree.spec.config, "emulated", dict(tree.spec.params))
    return frozenset(r.check.id for r in res if r.outcome in (Outcome.FAIL, Outcome.TIMEOUT)
                     and SHIPPED.match(r.check.id, ctx) is None)


def quirk_spec(config: str, quirk: str) -> str:
    # The wrap guard is only reachable with a narrow counter; other quirks keep the kernel's 64 bits.
    return f"{config}:gen_bits=8+{quirk}" if quirk == "wrap-guard-missing" else f"{config}+{quirk}"


def test_every_quirk_has_a_named_catcher() -> None:
    assert set(CATCHES) == set(QUIRKS)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("era", ERAS)
def test_faithful_emulator_passes(config: str, era: str) -> None:
    first = CONFIGS[config][2]
    if tuple(map(int, era.split("."))) < tuple(map(int, first.split("."))):
        pytest.skip(f"{config} does not exist at {era}")
    assert failing(f"{config}:gen_bits=8@{era}", config) == frozenset()
    assert failing(f"{config}@{era}", config) == frozenset()


def _legal() -> list[tuple[str, str, str]]:
    """(config, era, spec) for every configuration the field has (Provider.legal_params)."""
    out = []
    for config, (cls, fixed, first) in CONFIGS.items():
        for era in ERAS:
            if Era.parse(era).version < Era.parse(first).version:
                continue
            for params in cls.legal_params(fixed, Era.parse(era)):
                extra = {k: v for k, v in params.items() if fixed.get(k) != v}
                if extra:  # the plain configuration is test_faithful_emulator_passes
                    out.append((config, era, f"{config}:{','.join(f'{k}={v}' for k, v in extra.items())}@{era}"))
    return out


LEGAL = _legal()


@pytest.mark.parametrize("config,era,spec", LEGAL, ids=[s for _, _, s in LEGAL])
def test_faithful_emulator_passes_every_legal_configuration(config: str, era: str, spec: str) -> None:
    """Module parameters, firmware and host states a real machine has: its profile passes on each
    (the SLOW checks run at the default era only, to keep the loop fast)."""
    assert failing(spec, config, slow=era == DEFAULT_ERA) == frozenset()


def test_a_floor_the_firmware_refuses_is_flagged() -> None:
    """sev_guest before 6.11 with vmpck_id 1: privlevel_floor reads 0 while the firmware refuses
    reports below VMPL 1 (fixed by 614dc0fb7632): a real kernel defect, named by its check."""
    assert "privlevel.floor.reports" in failing("sev_guest:vmpck_id=1@6.7", "sev_guest", slow=False)


@pytest.mark.parametrize("config,quirk", PAIRS, ids=[f"{c}+{q}" for c, q in PAIRS])
def test_quirk_caught(config: str, quirk: str) -> None:
    bad = failing(quirk_spec(config, quirk), config, only=CATCHES[quirk])
    assert CATCHES[quirk] in bad, f"{quirk} on {config}: failing checks {sorted(bad)}"


# Known kernel bugs (the shipped baseline, baselines/known-kernel-bugs.yaml): the faithful emulator
# reproduces the bug, and an emulator with the fix modelled passes (a run reports the entry stale).
KNOWN_BUGS = {"provider.read.size_then_fill_integrity": "tsm_test:size_fill_fix=1"}


# Checks no quirk names as its catcher, each with one quirk that makes it fail too (checked below).
ALSO_CAUGHT = {
    "cache.outblob.regenerated_after_option": ("tsm_test", "stale-outblob"),
    "mr.extend.replayed": ("tdx_guest", "mr-overwrite"),
    "mr.write.long_clamped": ("tsm_test", "mr-overwrite"),
    "mr.write.offsets": ("tdx_guest", "mr-size-unchecked"),
    "mr.report.cached_until_inblob": ("tsm_test", "no-cache"),
    "format.outblob.privlevel": ("sev_guest", "stale-outblob"),
    "model.state_machine.sequential": ("tsm_test", "generation-starts-at-1"),  # every seed finds it
    "privlevel.zero_write.efault": ("tsm_test", "zero-write-accepted"),
    "service.manifest_version.grammar": ("tsm_test", "kstrtouint-lenient"),
    "inblob.length.accepted_range": ("tsm_test", "nonce-ignored"),
    "discovery.privlevel_floor.matches_profile": ("tsm_test", "provider-no-newline"),
    "cleanup.items.none_left": ("tsm_test", "rmdir-silent-fail"),
}


def test_every_check_can_fail() -> None:
    """Each check is some quirk's named catcher (test_quirk_caught), an ALSO_CAUGHT entry
    (test_also_caught) or a known kernel bug: none is left that cannot fail.  Kept apart from the
    sessions so that each test runs its own few (the tests can run in parallel processes)."""
    never = sorted(c.id for c in all_checks()
                   if c.id not in set(CATCHES.values()) | set(ALSO_CAUGHT) | set(KNOWN_BUGS))
    assert not never, f"checks no quirk makes fail: {never}"


@pytest.mark.parametrize("check_id", sorted(ALSO_CAUGHT))
def test_also_caught(check_id: str) -> None:
    config, quirk = ALSO_CAUGHT[check_id]
    assert check_id in failing(quirk_spec(config, quirk), config, only=check_id)


def test_known_kernel_bugs_fail_and_their_fix_passes() -> None:
    checks = {c.id: c for c in all_checks()}
    for check_id, fixed in KNOWN_BUGS.items():
        profile = load_profile("tsm_test")
        ctx = Context(EmulatedTree("tsm_test").kernel_release(), "tsm_test", "emulated")
        assert SHIPPED.match(check_id, ctx) is not None
        (r,) = Session(EmulatedTree("tsm_test"), profile).run([checks[check_id]])
        assert r.outcome == Outcome.FAIL, r.reason
        (r,) = Session(EmulatedTree(fixed), profile).run([checks[check_id]])
        assert r.outcome == Outcome.PASS, r.reason
