"""Cross-key rules on a merged profile that the JSON Schema cannot express.

Owns ``check_semantics``, run once ``extends:`` is resolved: keys that must be set somewhere in
the chain, group references (attribute visibility, ``match.groups``), errno names (through
``errnos.known``), and sizes and offsets that must fit each other and ``limits``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errnos
from ..suggest import did_you_mean
from .errors import Marks, ProfileError, error_at

_LIMIT_KEYS = ("inblob_max", "privlevel_max", "text_store_max", "name_max", "outblob_max")


def check_semantics(d: dict[str, Any], marks: Marks) -> None:
    # One long function on purpose: the profile language's rules in the order a reader meets the
    # keys, each a test that fails naming its keypath; split, they would be one-rule functions.
    def fail(kp: str, msg: str) -> ProfileError:
        return error_at(marks, kp, msg)

    inherited = "(set it here or in a profile this one extends)"
    for key in ("item_mode", "limits", "attributes"):
        if key not in d:
            raise fail("", f"missing '{key}' {inherited}")
    for key in _LIMIT_KEYS:
        if key not in d["limits"]:
            raise fail("limits", f"missing 'limits.{key}' {inherited}")
    if "initial" not in d.get("generation", {}):
        raise fail("generation", f"missing 'generation.initial' {inherited}")
    if not d.get("abstract") and not d.get("provider"):
        raise fail("name", "a profile that is not 'abstract: true' needs 'provider:' (the text "
                           "of the provider attribute, e.g. sev_guest)")

    attrs: dict[str, dict[str, Any]] = d["attributes"]
    groups: dict[str, list[str]] = d.get("groups", {})
    for a, spec in attrs.items():
        for key in ("kind", "mode", "visible"):
            if key not in spec:
                raise fail(f"attributes.{a}", f"attribute '{a}' has no '{key}' {inherited}")
    for g, members in groups.items():
        for i, m in enumerate(members):
            if m not in attrs:
                raise fail(f"groups.{g}.{i}", f"unknown attribute '{m}' in group '{g}'"
                                              f"{did_you_mean(m, attrs) or ';'} attributes: "
                                              f"{', '.join(attrs)}")
    for a, spec in attrs.items():
        vis = spec["visible"]
        if isinstance(vis, dict):
            g = vis["group"]
            if g not in groups:
                raise fail(f"attributes.{a}.visible.group",
                           f"undefined group '{g}'{did_you_mean(g, groups) or ';'} "
                           f"defined groups: "
                           f"{', '.join(groups) or '(none; add a groups: section)'}")
            if a not in groups[g]:
                raise fail(f"attributes.{a}.visible.group",
                           f"attribute '{a}' is shown with group '{g}' but groups.{g} does not "
                           f"list it")
    for g in d.get("match", {}).get("groups", {}):
        if g not in groups:
            raise fail(f"match.groups.{g}",
                       f"undefined group '{g}'{did_you_mean(g, groups) or ';'} "
                       f"defined groups: {', '.join(groups) or '(none)'}")

    for kp, name in _errno_names(d):
        if not errnos.known(name):
            raise fail(kp, f"unknown errno '{name}'"
                           f"{did_you_mean(name, errnos.ABI_ERRNOS) or ';'} "
                           f"allowed: {', '.join(errnos.ABI_ERRNOS)}")

    lim = d["limits"]
    rng = d.get("inblob", {}).get("report_lengths")
    if rng:
        if rng["min"] > rng["max"]:
            raise fail("inblob.report_lengths.min",
                       f"min {rng['min']} is greater than max {rng['max']}")
        if rng["max"] > lim["inblob_max"]:
            raise fail("inblob.report_lengths.max", f"max {rng['max']} is above "
                                                    f"limits.inblob_max {lim['inblob_max']}")
    floor = d.get("privlevel", {}).get("floor")
    floor_min = d.get("privlevel", {}).get("floor_min")
    if floor_min is not None and (floor_min > lim["privlevel_max"] or isinstance(floor, int)):
        raise fail("privlevel.floor_min", f"floor_min {floor_min} needs floor: any and at most "
                   f"limits.privlevel_max ({lim['privlevel_max']})")
    if isinstance(floor, int) and floor > lim["privlevel_max"]:
        raise fail("privlevel.floor", f"floor {floor} is above limits.privlevel_max "
                                      f"{lim['privlevel_max']}")
    rep = d.get("report", {})
    nonce = rep.get("nonce")
    if nonce and nonce["length"] > lim["inblob_max"]:
        raise fail("report.nonce.length", f"nonce length {nonce['length']} is longer than "
                                          f"limits.inblob_max {lim['inblob_max']}")
    for key, size in (("nonce", "length"), ("privlevel", "width")):
        f = rep.get(key)
        if f and f["offset"] is not None and "min_length" in rep \
                and f["offset"] + f[size] > rep["min_length"]:
            raise fail(f"report.{key}.offset",
                       f"field ends at {f['offset'] + f[size]:#x}, past report.min_length "
                       f"{rep['min_length']:#x}")
    for key in ("versions", "tee_type", "auxblob_format"):
        if key in rep and "format" not in rep:
            raise fail(f"report.{key}", f"report.{key} describes a format: set report.format too")
    if "tee_type" in rep and rep.get("format") != "tdx":
        raise fail("report.tee_type", f"tee_type is a TDX quote field; report.format is {rep.get('format')}")


def _errno_names(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for cond, v in d.get("errors", {}).items():
        if isinstance(v, str):
            out.append((f"errors.{cond}", v))
        else:
            out += [(f"errors.{cond}.{i}.errno", alt["errno"]) for i, alt in enumerate(v)]
    for kp in (("inblob", "rejected_length_errno"), ("service", "rejected_errno"), ("privlevel", "below_floor_errno")):
        name = d.get(kp[0], {}).get(kp[1])
        if name is not None:
            out.append((".".join(kp), name))
    return out
