"""Profile loader: shipped profiles, extends merging, marks, selection, rendering, lookup.

The shipped profiles are the format's reference (docs/profiles.md); these tests pin the loader
behaviour the checks and the CLI rely on.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from tsm_conformance import errnos
from tsm_conformance.profile import load, search
from tsm_conformance.profile.model import Field, Range
from tsm_conformance.profile.load import (ProfileError, ProfileLookupError, list_profiles,
                                          load_profile, profile_dirs, render_profile,
                                          select_profile, validate_paths)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {"core", "sev_guest", "sev_guest-svsm", "tdx_guest", "arm_cca_guest", "tsm_test"}


def _line_of(path: Path, text: str) -> int:
    """1-based line of the first line containing ``text``."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text in line:
            return n
    raise AssertionError(f"{text!r} not in {path}")


# --------------------------------------------------------------------------- schema and discovery

def test_schema_is_valid_versioned_and_closed() -> None:
    s = load.schema()
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$id"].endswith("/tsm-profile/1")
    assert s["properties"]["schema"]["const"] == "tsm-profile/1"

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node or "patternProperties" in node:
                assert node.get("additionalProperties") is False, where
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(s, "#")


def test_list_profiles_finds_all_shipped() -> None:
    found = dict(list_profiles())
    assert SHIPPED <= set(found)
    assert found["core"].endswith("profiles/core.yaml")
    assert REPO / "profiles" in profile_dirs()


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_profile_loads(name: str) -> None:
    p = load_profile(name)
    assert p.name == name
    assert p.abstract == (name == "core")
    assert len(p.attributes) == 11
    for cond in p.errors:
        assert all(errnos.known(str(a.value)) for a in p.errors[cond])
    if p.report_nonce is not None:
        assert p.report_nonce.length <= p.limits_inblob_max


def test_entry_point_profiles_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vendor = tmp_path / "acme_tsm"
    vendor.mkdir()
    (vendor / "__init__.py").write_text("", encoding="utf-8")
    (vendor / "acme_guest.yaml").write_text(
        "schema: tsm-profile/1\nname: acme_guest\nextends: core\nprovider: acme_guest\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))

    class FakeEntryPoint:
        name, value = "acme_guest", "acme_tsm"

        def load(self) -> object:
            import acme_tsm  # type: ignore[import-not-found]
            return acme_tsm

    def fake_entry_points(group: str) -> list[FakeEntryPoint]:
        return [FakeEntryPoint()] if group == load.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(search.metadata, "entry_points", fake_entry_points)
    assert profile_dirs()[0] == vendor.resolve()
    assert dict(list_profiles())["acme_guest"].endswith("acme_guest.yaml")
    p = load_profile("acme_guest")
    assert p.extends == ("core",) and select_profile("acme_guest", {}).name == "acme_guest"


def test_validate_paths_accepts_the_profiles_dir() -> None:
    results = validate_paths([REPO / "profiles"])
    assert {Path(f).stem for f, _ in results} >= SHIPPED
    assert [(f, str(e)) for f, e in results if e] == []


# --------------------------------------------------------------------------- values and merging

def test_sev_guest_merges_core() -> None:
    p = load_profile("sev_guest")
    assert p.extends == ("core",) and not p.abstract and p.provider == "sev_guest"
    aux = p.attributes["auxblob"]
    assert (aux.kind, aux.mode, aux.visible) == ("binary", 0o444, "always")  # kind/mode from core
    assert p.attributes["service_guid"].visible == "never"
    assert p.errno("mkdir_no_provider") == ("ENXIO",)
    assert p.errno("uncached_read_provider_gone") == ("ENOTTY", "ENXIO")
    assert p.errors["uncached_read_provider_gone"][1].commit == "fba4ceaa242d"
    assert p.limits_inblob_max == 64 and p.item_mode == 0o755
    assert p.outblob_max_for("6.12") == 32768 and p.outblob_max_for("7.0.1") == 16 << 20
    assert p.inblob_report_lengths == Range(64, 64)
    assert p.privlevel_floor is None and p.privlevel_honoured  # vmpck_id: any floor 0..3
    assert p.privlevel_below_floor_errno == "EINVAL"  # the firmware's VMPL rule
    assert p.report_nonce == Field(0x50, 64) and p.report_privlevel == Field(0x30, 4)
    assert p.match_groups == {"svsm": False}


def test_svsm_overrides_sev_guest() -> None:
    p = load_profile("sev_guest-svsm")
    assert p.extends == ("sev_guest", "core")
    assert p.provider == "sev_guest" and p.since == "6.11"
    assert p.match_groups == {"svsm": True}
    assert p.attributes["manifestblob"].group == "svsm"
    assert p.privlevel_floor is None and p.privlevel_honoured
    assert p.service_provider_values == ("svsm",)
    assert p.service_provider_rejected_errno == "EINVAL"
    assert p.visible_attributes({"svsm": True}) == set(p.attributes)
    assert "manifestblob" not in p.visible_attributes({"svsm": False})


def test_provider_specifics() -> None:
    tdx = load_profile("tdx_guest")
    assert tdx.visible_attributes({}) == {"generation", "provider", "inblob", "outblob"}
    assert tdx.report_min_length == 0x3FC and tdx.report_nonce == Field(None, 64)  # v4 and v5 differ
    assert tdx.errno("quote_failed") == ("EIO",) and tdx.errors["quote_failed"][0].since == "7.0"
    cca = load_profile("arm_cca_guest")
    assert cca.visible_attributes({}) == set(cca.attributes)
    assert cca.inblob_report_lengths == Range(32, 64)
    assert cca.report_nonce == Field(None, 64) and cca.report_min_length is None
    assert not cca.privlevel_honoured and cca.privlevel_floor == 0
    alt = cca.errors["token_over_granule"][0]
    assert (alt.value, alt.until, alt.commit) == ("ENXIO", "7.1", "e534e9d13d0b")
    t = load_profile("tsm_test")
    assert t.groups["service"] == ("service_provider", "service_guid",
                                   "service_manifest_version", "manifestblob")
    assert len(t.visible_attributes({"service": False})) == 7
    assert t.report_min_length == 192 and t.report_nonce == Field(0x40, 64)
    assert t.inblob_report_lengths == Range(1, 64) and t.inblob_rejected_length_errno is None


def test_lists_and_scalars_are_replaced(tmp_path: Path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text("schema: tsm-profile/1\nname: child\nextends: sev_guest\nprovider: acme\n"
                     "limits:\n  outblob_max:\n    - {value: 4096}\n"
                     "groups: {svsm: [manifestblob]}\n", encoding="utf-8")
    p = load_profile(str(child))
    assert [a.value for a in p.limits_outblob_max] == [4096]
    assert p.limits_inblob_max == 64  # sibling keys of the mapping still merge
    assert p.groups == {"svsm": ("manifestblob",)}
    assert p.provider == "acme" and p.extends == ("sev_guest", "core")
    assert p.where("limits.outblob_max.0.value") == f"{child}:7"
    assert "limits.outblob_max.1" not in p.marks  # the parent's longer list is gone entirely


def test_abstract_is_not_inherited(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("schema: tsm-profile/1\nname: base\nextends: core\n"
                                        "abstract: true\nprovider: x\n", encoding="utf-8")
    (tmp_path / "leaf.yaml").write_text("schema: tsm-profile/1\nname: leaf\nextends: base\n",
                                        encoding="utf-8")
    leaf = load_profile(str(tmp_path / "leaf.yaml"))  # the sibling base.yaml is found first
    assert not leaf.abstract and leaf.provider == "x" and leaf.extends == ("base", "core")


# --------------------------------------------------------------------------- marks

def test_marks_point_at_the_defining_line() -> None:
    p = load_profile("sev_guest")
    core, sev = REPO / "profiles" / "core.yaml", REPO / "profiles" / "sev_guest.yaml"
    cases = {
        "inblob.report_lengths": (sev, "report_lengths:"),
        "attributes.auxblob.visible": (sev, "auxblob:         {visible: always}"),
        "attributes.auxblob.kind": (core, "auxblob:  "),
        "limits.inblob_max": (core, "inblob_max: 64"),
        "errors.uncached_read_provider_gone.1.errno": (core, "ENXIO, since: \"6.16\""),
        "report.nonce.offset": (sev, "nonce: {offset: 0x50"),
    }
    for keypath, (path, text) in cases.items():
        assert p.where(keypath).endswith(f"profiles/{path.name}:{_line_of(path, text)}"), keypath
    assert p.where("attributes.auxblob.no_such_key") == p.where("attributes.auxblob")
    assert "abstract" not in p.marks  # per-file keys of the parent do not leak


def test_marks_use_the_path_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert load_profile("profiles/tdx_guest.yaml").where("provider") == "profiles/tdx_guest.yaml:5"
    assert load_profile("tdx_guest").path == "profiles/tdx_guest.yaml"


# --------------------------------------------------------------------------- selection and lookup

def test_select_profile_by_svsm_group() -> None:
    assert select_profile("sev_guest", {"svsm": False}).name == "sev_guest"
    assert select_profile("sev_guest", {}).name == "sev_guest"
    assert select_profile("sev_guest", {"svsm": True}).name == "sev_guest-svsm"
    assert select_profile("tdx_guest", {"svsm": True}).name == "tdx_guest"
    assert select_profile("tsm_test", {"service": True}).name == "tsm_test"


def test_select_profile_unknown_provider() -> None:
    with pytest.raises(LookupError) as info:
        select_profile("sev_gues", {})
    assert "did you mean 'sev_guest'?" in str(info.value) and "\n" not in str(info.value)


def test_unknown_profile_name_suggests() -> None:
    with pytest.raises(ProfileLookupError) as info:
        load_profile("sev_gest")
    text = str(info.value)
    assert "unknown profile 'sev_gest'; did you mean 'sev_guest'?" in text
    assert "tdx_guest" in text and "\n" not in text
    assert isinstance(info.value, ProfileError) and isinstance(info.value, LookupError)


def test_missing_file_is_a_profile_error() -> None:
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile("nowhere/none.yaml")


# --------------------------------------------------------------------------- rendering

@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_render_round_trips(name: str, tmp_path: Path) -> None:
    p = load_profile(name)
    text = render_profile(p)
    assert f"name: {name}" in text and f"profiles/{name}.yaml:" in text
    out = tmp_path / f"{name}.yaml"
    out.write_text(text, encoding="utf-8")
    again = load_profile(str(out))
    assert again == dataclasses.replace(p, path=str(out), extends=())


def test_render_shows_where_values_come_from() -> None:
    text = render_profile(load_profile("sev_guest"))
    line = next(x for x in text.splitlines() if x.lstrip().startswith("auxblob:"))
    assert "sev_guest.yaml" in line and "core.yaml" in line  # visible vs kind/mode
    assert "nonce: {offset: 0x50, length: 64}" in text


# --------------------------------------------------------------------------- robustness

@pytest.mark.parametrize("text, expect", [
    ("", "empty profile"),
    ("a: &x [*x]\n", "recursive YAML alias"),
    ("schema: tsm-profile/1\n<<: {name: x}\n", "merge keys"),
    ("schema: !!python/name:os.system x\n", "YAML tag '!!python/name:os.system' is not allowed"),
    ("? [a]\n: b\n", "plain names"),
    ("--- {a: 1}\n--- {b: 2}\n", "YAML syntax error"),
])
def test_hostile_yaml_is_a_one_line_profile_error(text: str, expect: str, tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile(str(f))
    assert expect in str(info.value) and "\n" not in str(info.value)


def test_json_dump_of_schema_is_stable() -> None:
    # The schema file is data for non-Python editors too; it must stay plain JSON.
    path = Path(load.__file__).with_name("profile.schema.json")
    assert json.loads(path.read_text(encoding="utf-8")) == load.schema()
