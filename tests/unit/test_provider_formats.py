"""The emulated providers' report variants all pass the format.* checks (and the rest)."""

from __future__ import annotations

import pytest

from tsm_conformance.checks.base import all_checks
from tsm_conformance.checks.runner import Session
from tsm_conformance.outcome import Outcome
from tsm_conformance.profile.load import load_profile
from tsm_conformance.target.emulated import EmulatedTree

VARIANTS = [
    ("sev_guest:signing_key=vlek", "sev_guest"),
    ("sev_guest:report_version=3", "sev_guest"),
    ("sev_guest:report_version=5", "sev_guest"),
    ("sev_guest:certs=0", "sev_guest"),
    ("sev_guest-svsm:vmpck_id=3", "sev_guest-svsm"),
    ("tdx_guest:quote_version=5", "tdx_guest"),
    ("tdx_guest@6.11", "tdx_guest"),
    ("arm_cca_guest:token=cmw", "arm_cca_guest"),
]


def outcomes(spec: str, profile: str, prefix: str = "format.") -> dict[str, str]:
    checks = [c for c in all_checks() if c.id.startswith(prefix)]
    return {r.check.id: r.outcome for r in Session(EmulatedTree(spec), load_profile(profile)).run(checks)}


@pytest.mark.parametrize("spec,profile", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_variant_passes_format_checks(spec: str, profile: str) -> None:
    res = outcomes(spec, profile)
    assert not {k: v for k, v in res.items() if v in (Outcome.FAIL, Outcome.ERROR)}, res
    assert Outcome.PASS in res.values()


def test_no_host_certificates_makes_signature_unsupported_not_pass() -> None:
    res = outcomes("sev_guest:certs=0", "sev_guest")
    assert res["format.auxblob.parses"] == Outcome.PASS  # an empty auxblob is allowed
    assert res["format.signature.verifies"] == Outcome.SKIP_UNSUPPORTED


def test_live_target_without_anchors_never_passes_signatures() -> None:
    tree = EmulatedTree("tdx_guest")
    tree.trust_anchor_pems = lambda: []  # type: ignore[method-assign]  # as a live tree: no roots known
    checks = [c for c in all_checks() if c.id == "format.signature.verifies"]
    (r,) = Session(tree, load_profile("tdx_guest")).run(checks)
    assert r.outcome == Outcome.SKIP_UNSUPPORTED, r.reason
