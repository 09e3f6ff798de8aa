"""`tsm-conformance inspect FILE`: parse a captured report and print its fields (and verification
results when anchors or certificates are given).  Entry-point layer: formats/ and verify/ do the work."""

from __future__ import annotations

import json
import string
import sys
from typing import Any

from .formats import registry
from .formats.base import ParseError, to_jsonable
from .verify.base import TrustAnchors, Verification
from .verify.run import verify

_HEX = set(string.hexdigits) | set(string.whitespace)


def load_input(data: bytes) -> bytes:
    """Raw bytes, or hex text (what `xxd -p` and many tools print) decoded."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data
    compact = "".join(text.split())
    if compact and set(text) <= _HEX and len(compact) % 2 == 0:
        return bytes.fromhex(compact)
    return data


def inspect_blob(data: bytes, fmt: str | None, anchors: TrustAnchors, certs: bytes | None
                 ) -> tuple[str, Any, Verification | None]:
    """(format, parsed, verification or None).  Raises ParseError for malformed input."""
    if fmt in (None, "snp"):
        from .formats import snp
        unwrapped, note = snp.unwrap(data)
        if note:
            data, fmt = unwrapped, "snp"
            print(f"tsm-conformance: {note}", file=sys.stderr)
    fmt = fmt or registry.detect(data)
    parsed = registry.parse(fmt, data)
    if fmt not in ("snp", "tdx", "cca"):
        return fmt, parsed, None
    table = registry.parse("snp-certs", certs) if fmt == "snp" and certs else None
    if not anchors and table is None and fmt == "snp":
        return fmt, parsed, None
    return fmt, parsed, verify(fmt, parsed, anchors, table)


def render_text(fmt: str, parsed: Any, v: Verification | None) -> str:
    lines = [f"format: {fmt} ({registry.FORMATS[fmt][2]})"]
    _walk(to_jsonable(parsed), lines, "")
    if v is not None:
        lines.append("verification:")
        lines += [f"  {s.name}: {s.status}" + (f" ({s.detail})" if s.detail else "") for s in v.steps]
    return "\n".join(lines) + "\n"


def render_json(fmt: str, parsed: Any, v: Verification | None) -> str:
    out: dict[str, Any] = {"format": fmt, **to_jsonable(parsed)}
    if v is not None:
        out["verification"] = [{"step": s.name, "status": s.status, "detail": s.detail} for s in v.steps]
    return json.dumps(out, indent=2) + "\n"


def _walk(value: Any, lines: list[str], indent: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{indent}{k}:")
                _walk(v, lines, indent + "  ")
            else:
                lines.append(f"{indent}{k}: {_scalar(v)}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, (dict, list)):
                lines.append(f"{indent}[{i}]:")
                _walk(v, lines, indent + "  ")
            else:
                lines.append(f"{indent}[{i}]: {_scalar(v)}")


def _scalar(v: Any) -> str:
    if isinstance(v, str) and "\n" in v:
        return v.splitlines()[0] + f" ... ({len(v.splitlines())} lines)"
    if isinstance(v, list):
        return "[]"
    if isinstance(v, dict):
        return "{}"
    return str(v)


__all__ = ["ParseError", "inspect_blob", "load_input", "render_json", "render_text"]
