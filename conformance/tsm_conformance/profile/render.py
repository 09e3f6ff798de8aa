"""A resolved profile written back out as annotated YAML.

Owns ``render_profile`` (for ``tsm-conformance profiles show NAME``): the frozen ``Profile``
turned back into profile-language data, printed as YAML that loads again, each line followed by
the ``file:line`` that set it (and, for one-line records, the sub-keys set elsewhere).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import join
from .model import Alternative, Measurements, Profile
from .schemacheck import SCHEMA_VERSION


class _Mode(int):
    """An int rendered as a quoted octal mode string."""


class _Hex(int):
    """An int rendered in hex (report offsets, as the profiles write them)."""


_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
#: Records printed on one line, as the shipped profiles write them.
_FLOW = re.compile(r"(attributes\.[^.]+|report\.(nonce|privlevel)|inblob\.report_lengths)")


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, _Mode):
        return f'"{int(v):04o}"'
    if isinstance(v, _Hex):
        return f"{int(v):#x}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_scalar(x)}" for k, x in v.items()) + "}"
    s = str(v)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_/.-]*", s) and s.lower() not in _YAML_WORDS:
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def _alts_data(alts: tuple[Alternative, ...], key: str, force_list: bool) -> Any:
    if len(alts) == 1 and not force_list and not alts[0].hint():
        return alts[0].value
    return [{key: a.value, **{k: getattr(a, k) for k in ("since", "until", "commit")
                              if getattr(a, k)}} for a in alts]


def _profile_data(p: Profile) -> dict[str, Any]:
    """The resolved profile as profile-language data (keys mirror the YAML keypaths)."""
    # One long function on purpose: one key after another, as the YAML has them.
    d: dict[str, Any] = {"schema": SCHEMA_VERSION, "name": p.name}
    if p.abstract:
        d["abstract"] = True
    for key in ("provider", "since", "description"):
        if getattr(p, key):
            d[key] = getattr(p, key)
    d["limits"] = {"inblob_max": p.limits_inblob_max, "privlevel_max": p.limits_privlevel_max,
                   "text_store_max": p.limits_text_store_max, "name_max": p.limits_name_max,
                   "outblob_max": _alts_data(p.limits_outblob_max, "value", True)}
    d["item_mode"] = _Mode(p.item_mode)
    d["attributes"] = {a.name: {"kind": a.kind, "mode": _Mode(a.mode),
                                "visible": {"group": a.group} if a.group else a.visible,
                                **({"since": a.since} if a.since else {})}
                       for a in p.attributes.values()}
    if p.groups:
        d["groups"] = {g: list(m) for g, m in p.groups.items()}
    if p.match_groups:
        d["match"] = {"groups": {g: "present" if w else "absent"
                                 for g, w in p.match_groups.items()}}
    d["generation"] = {"initial": p.generation_initial}
    if p.errors:
        d["errors"] = {c: _alts_data(a, "errno", False) for c, a in p.errors.items()}
    inblob: dict[str, Any] = {}
    if p.inblob_report_lengths:
        inblob["report_lengths"] = {"min": p.inblob_report_lengths.min,
                                    "max": p.inblob_report_lengths.max}
    if p.inblob_rejected_length_errno:
        inblob["rejected_length_errno"] = p.inblob_rejected_length_errno
    if inblob:
        d["inblob"] = inblob
    if p.privlevel_floor is not None or p.privlevel_honoured:
        d["privlevel"] = {"floor": "any" if p.privlevel_floor is None else p.privlevel_floor,
                          "honoured": p.privlevel_honoured}
        if p.privlevel_floor_min:
            d["privlevel"]["floor_min"] = p.privlevel_floor_min
        if p.privlevel_below_floor_errno:
            d["privlevel"]["below_floor_errno"] = p.privlevel_below_floor_errno
    rep: dict[str, Any] = {}
    if p.report_min_length is not None:
        rep["min_length"] = p.report_min_length
    if p.report_nonce:
        off = p.report_nonce.offset
        rep["nonce"] = {"offset": None if off is None else _Hex(off),
                        "length": p.report_nonce.length}
    if p.report_privlevel:
        rep["privlevel"] = {"offset": _Hex(p.report_privlevel.offset or 0),
                            "width": p.report_privlevel.length}
    if p.report_fresh_per_generation:
        rep["fresh_per_generation"] = True
    if p.report_format:
        rep["format"] = p.report_format
    if p.report_versions:
        rep["versions"] = list(p.report_versions)
    if p.report_tee_type is not None:
        rep["tee_type"] = _Hex(p.report_tee_type)
    if p.auxblob_format:
        rep["auxblob_format"] = p.auxblob_format
    if p.auxblob_may_be_empty:
        rep["auxblob_may_be_empty"] = True
    if p.report_always_empty:
        rep["always_empty"] = list(p.report_always_empty)
    if p.report_ignores:
        rep["ignores"] = list(p.report_ignores)
    if rep:
        d["report"] = rep
    svc: dict[str, Any] = {}
    if p.service_provider_values:
        svc["provider_values"] = list(p.service_provider_values)
    if p.service_provider_rejected_errno:
        svc["rejected_errno"] = p.service_provider_rejected_errno
    if p.service_attestation:
        svc["attestation"] = p.service_attestation
    if svc:
        d["service"] = svc
    if p.measurements:
        d["measurements"] = _measurements_data(p.measurements)
    if p.expected_failures:
        d["expected_failures"] = [{k: v for k, v in vars(x).items() if v is not None}
                                  for x in p.expected_failures]
    return d


def _measurements_data(m: Measurements) -> dict[str, Any]:
    regs = []
    for r in m.registers:
        reg: dict[str, Any] = {"name": r.name, "size": r.size, "hash": r.hash or "none", "mode": f"0{r.mode:o}"}
        if r.live:
            reg["live"] = True
        report = {k: v for k, v in (("blob", r.report_blob), ("offset", r.report_offset), ("field", r.report_field))
                  if v is not None}
        if report:
            reg["report"] = report
        regs.append(reg)
    out: dict[str, Any] = {"since": m.since, "group": m.group}
    if m.refresh_counter:
        out["refresh_counter"] = m.refresh_counter
    if m.extendable_by_tests:
        out["extendable_by_tests"] = True
    out["registers"] = regs
    return out


def _note(p: Profile, kp: str, flow: Any = None) -> str:
    """Trailing ``# file:line``; for one-line records also the sub-keys set elsewhere."""
    own = p.marks.get(kp)
    if own is None:
        return ""
    other: dict[str, list[str]] = {}
    for k in flow or ():
        m = p.marks.get(f"{kp}.{k}")
        if m and m.rsplit(":", 1)[0] != own.rsplit(":", 1)[0]:
            other.setdefault(m, []).append(str(k))
    extra = "".join(f"; {', '.join(ks)}: {m}" for m, ks in other.items())
    return f"  # {own}{extra}"


def _render(d: Mapping[str, Any], kp: str, p: Profile, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    for k, v in d.items():
        sub = join(kp, k)
        if isinstance(v, dict) and v and not _FLOW.fullmatch(sub):
            out.append(f"{pad}{k}:{_note(p, sub)}")
            _render(v, sub, p, depth + 1, out)
        elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
            out.append(f"{pad}{k}:{_note(p, sub)}")
            out += [f"{pad}  - {_scalar(x)}{_note(p, join(sub, i), x)}" for i, x in enumerate(v)]
        else:
            out.append(f"{pad}{k}: {_scalar(v)}{_note(p, sub, v if isinstance(v, dict) else None)}")


def render_profile(p: Profile) -> str:
    """The merged, resolved profile as YAML (loadable again), each line annotated with the
    ``file:line`` that set it; for ``tsm-conformance profiles show NAME``."""
    chain = " -> ".join((p.name, *p.extends))
    out = [f"# resolved profile {p.name} from {p.path}; extends chain: {chain}"]
    _render(_profile_data(p), "", p, 0, out)
    return "\n".join(out) + "\n"
