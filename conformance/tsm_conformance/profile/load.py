"""Find, validate, resolve and build provider profiles (docs/profiles.md).

Pipeline for one profile:

1. YAML is *composed* (not constructed) so every key keeps its ``line:col``; plain data plus a
   mark per dotted keypath (``attributes.inblob.mode``, ``errors.x.0.errno``) come out of it
   (``yamlmarks``).
2. Each file is checked against ``profile.schema.json`` on its own, so an error cites that file
   (``schemacheck``).
3. ``extends:`` is resolved by name (the including file's directory first, then the search path,
   ``search``) and deep-merged: mappings recursively, lists and scalars replaced by the child.
4. Cross-key rules the schema cannot express run on the merged data (errno names via
   ``errnos.known``, group references, completeness, sizes that must fit each other;
   ``semantics``).
5. The frozen ``model.Profile`` is built; its ``marks`` say which file and line set each key.

Every problem is one ``ProfileError`` (``errors``) whose ``str()`` is a single line
``FILE:LINE:COL: KEYPATH: message`` that names the bad value and what is allowed.

This module owns steps 3 and 5 and the public API; it re-exports the public names of the modules
above, so ``from tsm_conformance.profile.load import X`` is the one import callers need.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping

from ..inputs import PROFILE_EXTENDS
from ..suggest import did_you_mean
from .errors import Marks, ProfileError, ProfileLookupError, error_at, join
from .model import Alternative, Attribute, ExpectedFailure, Field, Measurements, MrRegister, Profile, Range
from .render import render_profile
from .schemacheck import SCHEMA_VERSION, check_schema, schema
from .search import (ENTRY_POINT_GROUP, REPO_PROFILES, display_path, find, is_path, list_profiles,
                     profile_dirs, profile_files, unknown)
from .semantics import check_semantics
from .yamlmarks import read_yaml

__all__ = ["ProfileError", "ProfileLookupError", "load_profile", "list_profiles", "profile_dirs",
           "validate_paths", "render_profile", "select_profile", "schema", "SCHEMA_VERSION",
           "ENTRY_POINT_GROUP", "REPO_PROFILES"]

#: Keys that describe one file and are never inherited through ``extends:``.
_PER_FILE_KEYS = ("name", "abstract", "extends")


# --------------------------------------------------------------------------- extends + merge

def _merge(parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(parent)
    for k, v in child.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _merged_marks(data: Any, parent: Marks, child: Marks, kp: str = "",
                  out: Marks | None = None) -> Marks:
    """A mark for every keypath of the merged data, the child's where it has one."""
    out = {} if out is None else out
    mark = child.get(kp) or parent.get(kp)
    if mark:
        out[kp] = mark
    items: Iterable[tuple[Any, Any]] = ()
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    for k, v in items:
        _merged_marks(v, parent, child, join(kp, k), out)
    return out


def _read_profile(path: Path, display: str) -> tuple[dict[str, Any], Marks]:
    data, marks = read_yaml(path, display)
    check_schema(data, marks)
    if data["name"] != path.stem:  # names are looked up by file name, so they must agree
        raise error_at(marks, "name", f"profile name '{data['name']}' does not match its file "
                                      f"name '{path.name}'; expected '{path.stem}'")
    return data, marks


_Frame = tuple[Path, str, Marks]  # (resolved path, profile name, marks) on the extends stack


def _resolve(path: Path, display: str, stack: list[_Frame]
             ) -> tuple[dict[str, Any], Marks, tuple[str, ...]]:
    """Read one file and everything it extends; returns merged data, marks and parent chain."""
    data, marks = _read_profile(path, display)
    parent = data.get("extends")
    if parent is None:
        return data, marks, ()
    ppath = find(parent, first=[path.parent])
    if ppath is None:
        siblings = [p.stem for p in profile_files(path.parent)] if path.parent.is_dir() else []
        raise error_at(marks, "extends", unknown(parent, siblings))
    frames = [*stack, (path.resolve(), data["name"], marks)]
    for i, (seen_path, _, seen_marks) in enumerate(frames):
        if seen_path == ppath.resolve():
            names = [n for _, n, _ in frames[i:]] + [frames[i][1]]
            raise error_at(seen_marks, "extends", f"extends cycle: {' -> '.join(names)}")
    if len(frames) >= PROFILE_EXTENDS:
        raise error_at(marks, "extends", f"extends chain longer than {PROFILE_EXTENDS} profiles")
    pdisplay = str(ppath) if not ppath.is_absolute() else display_path(ppath)
    pdata, pmarks, chain = _resolve(ppath, pdisplay, frames)
    for k in _PER_FILE_KEYS:
        pdata.pop(k, None)
    merged = _merge(pdata, data)
    return merged, _merged_marks(merged, pmarks, marks), (parent, *chain)


# --------------------------------------------------------------------------- build

def _alts(v: str | list[dict[str, Any]], key: str) -> tuple[Alternative, ...]:
    if isinstance(v, str):
        return (Alternative(value=v),)
    return tuple(Alternative(value=a[key], since=a.get("since"), until=a.get("until"),
                             commit=a.get("commit")) for a in v)


def _build(d: dict[str, Any], marks: Marks, chain: tuple[str, ...], display: str) -> Profile:
    lim = d["limits"]
    groups = {g: tuple(m) for g, m in d.get("groups", {}).items()}
    attrs = {}
    for a, s in d["attributes"].items():
        vis = s["visible"]
        attrs[a] = Attribute(name=a, kind=s["kind"], mode=int(s["mode"], 8),
                             visible=f"group:{vis['group']}" if isinstance(vis, dict) else vis,
                             since=s.get("since"))
    inblob, priv = d.get("inblob", {}), d.get("privlevel", {})
    rep, svc = d.get("report", {}), d.get("service", {})
    rng, nonce, rpriv = inblob.get("report_lengths"), rep.get("nonce"), rep.get("privlevel")
    floor = priv.get("floor", "any")
    return Profile(
        name=d["name"], path=display, abstract=bool(d.get("abstract", False)),
        provider=d.get("provider"), description=d.get("description", ""), since=d.get("since"),
        item_mode=int(d["item_mode"], 8),
        limits_inblob_max=int(lim["inblob_max"]), limits_privlevel_max=int(lim["privlevel_max"]),
        limits_text_store_max=int(lim["text_store_max"]), limits_name_max=int(lim["name_max"]),
        limits_outblob_max=_alts(lim["outblob_max"], "value"),
        attributes=attrs, groups=groups,
        match_groups={g: s == "present" for g, s in d.get("match", {}).get("groups", {}).items()},
        errors={c: _alts(v, "errno") for c, v in d.get("errors", {}).items()},
        generation_initial=int(d["generation"]["initial"]),
        inblob_report_lengths=Range(int(rng["min"]), int(rng["max"])) if rng else None,
        inblob_rejected_length_errno=inblob.get("rejected_length_errno"),
        privlevel_floor=None if floor == "any" else int(floor),
        privlevel_floor_min=int(priv.get("floor_min", 0)),
        privlevel_honoured=bool(priv.get("honoured", False)),
        privlevel_below_floor_errno=priv.get("below_floor_errno"),
        report_min_length=rep.get("min_length"),
        report_nonce=Field(nonce["offset"], int(nonce["length"])) if nonce else None,
        report_privlevel=Field(int(rpriv["offset"]), int(rpriv["width"])) if rpriv else None,
        report_fresh_per_generation=bool(rep.get("fresh_per_generation", False)),
        report_format=rep.get("format"),
        report_versions=tuple(int(v) for v in rep.get("versions", ())),
        report_tee_type=rep.get("tee_type"),
        auxblob_format=rep.get("auxblob_format"),
        auxblob_may_be_empty=bool(rep.get("auxblob_may_be_empty", False)),
        report_always_empty=tuple(rep.get("always_empty", ())),
        report_ignores=tuple(rep.get("ignores", ())),
        service_provider_values=tuple(svc.get("provider_values", ())),
        service_provider_rejected_errno=svc.get("rejected_errno"),
        service_attestation=svc.get("attestation"),
        expected_failures=tuple(ExpectedFailure(check=x["check"], reason=x["reason"],
                                                tracking=x["tracking"], kernels=x.get("kernels"))
                                for x in d.get("expected_failures", ())),
        extends=chain,
        marks={k: m.short() for k, m in marks.items() if k},
        measurements=_measurements(d.get("measurements")),
    )


def _measurements(m: dict[str, Any] | None) -> Measurements | None:
    if not m:
        return None
    regs = tuple(MrRegister(name=r["name"], size=int(r["size"]), hash=None if r["hash"] == "none" else r["hash"],
                            mode=int(r["mode"], 8), live=bool(r.get("live", False)),
                            report_blob=(r.get("report") or {}).get("blob"),
                            report_offset=(r.get("report") or {}).get("offset"),
                            report_field=(r.get("report") or {}).get("field"))
                 for r in m["registers"])
    return Measurements(since=str(m["since"]), group=m["group"], registers=regs,
                        refresh_counter=m.get("refresh_counter"),
                        extendable_by_tests=bool(m.get("extendable_by_tests", False)))


# --------------------------------------------------------------------------- public API

def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (search path) or by file path (anything ending .yaml/.yml or
    containing '/'), resolve ``extends:`` and validate it.  Raises ``ProfileError``."""
    s = str(name_or_path)
    if is_path(s):
        return _load_file(Path(s), s)
    found = find(s)
    if found is None:
        raise ProfileLookupError(unknown(s))
    return _load_file(found, display_path(found))


def _load_file(path: Path, display: str) -> Profile:
    if not os.path.lexists(path):  # anything else there (a FIFO, a directory) is refused unread, saying what it is
        raise ProfileError("no such profile file", file=display)
    data, marks, chain = _resolve(path, display, [])
    check_semantics(data, marks)
    return _build(data, marks, chain, display)


def validate_paths(paths: Iterable[str | Path]) -> list[tuple[str, ProfileError | None]]:
    """Load every file (directories: their *.yaml / *.yml) and report each one's first error."""
    files: list[str] = []
    for p in map(Path, paths):
        files += [str(f) for f in profile_files(p)] if p.is_dir() else [str(p)]
    out: list[tuple[str, ProfileError | None]] = []
    for f in files:
        try:
            _load_file(Path(f), f)
            out.append((f, None))
        except ProfileError as e:
            out.append((f, e))
    return out


def select_profile(provider: str, groups_present: Mapping[str, bool]) -> Profile:
    """The profile for a probed provider: non-abstract, same ``provider``, every ``match.groups``
    rule holding; the most derived one (longest extends chain) if several fit."""
    profiles = [load_profile(name) for name, _ in list_profiles()]
    same = [p for p in profiles if not p.abstract and p.provider == provider]
    fits = [p for p in same if all(groups_present.get(g, False) == want
                                   for g, want in p.match_groups.items())]
    present = ", ".join(g for g, v in sorted(groups_present.items()) if v) or "none"
    if not fits:
        if not same:
            providers = sorted({p.provider for p in profiles if p.provider})
            raise ProfileLookupError(
                f"no profile for provider '{provider}'{did_you_mean(provider, providers) or ';'} "
                f"profiled providers: {', '.join(providers)}")
        needs = "; ".join(f"{p.name} needs " + ", ".join(
            f"{g} {'present' if w else 'absent'}" for g, w in p.match_groups.items()) for p in same)
        raise ProfileLookupError(f"no profile for provider '{provider}' matches the probed groups "
                                 f"(present: {present}): {needs}")
    fits.sort(key=lambda p: len(p.extends), reverse=True)
    if len(fits) > 1 and len(fits[0].extends) == len(fits[1].extends):
        tied = [p.name for p in fits if len(p.extends) == len(fits[0].extends)]
        raise ProfileLookupError(f"several profiles fit provider '{provider}' (present: "
                                 f"{present}): {', '.join(tied)}; choose one with --tsm-profile")
    return fits[0]

