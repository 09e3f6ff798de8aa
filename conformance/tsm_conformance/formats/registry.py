"""Format names (as profiles and `inspect --format` spell them) → parser, and detection.

Detection asks each parser's `sniff()` in a fixed order: the cheap, distinctive magic first
(CBOR tags, the TDX header), the SNP report (a version word and a fixed size) after, and the
certificate table (24-byte GUID entries) last.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import ParseError

#: name -> (module, parse function name, description)
FORMATS: dict[str, tuple[str, str, str]] = {
    "cca": ("cca", "parse_token", "Arm CCA attestation token (tag 399 collection or CMW)"),
    "tdx": ("tdx", "parse_quote", "Intel TDX quote v4/v5"),
    "snp": ("snp", "parse_report", "AMD SEV-SNP ATTESTATION_REPORT"),
    "snp-certs": ("snp_certs", "parse_cert_table", "SEV-SNP GHCB certificate table (auxblob)"),
    "svsm-manifest": ("svsm", "parse_manifest", "SVSM attestation services manifest (manifestblob)"),
}
DETECT_ORDER = ("cca", "tdx", "snp", "snp-certs")


def _module(name: str) -> Any:
    return importlib.import_module(f"{__package__}.{FORMATS[name][0]}")


def parser(name: str) -> Callable[[bytes], Any]:
    if name not in FORMATS:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return getattr(_module(name), FORMATS[name][1])


def parse(name: str, data: bytes) -> Any:
    return parser(name)(data)


def detect(data: bytes) -> str:
    """The format `data` looks like; ParseError when none matches."""
    for name in DETECT_ORDER:
        if _module(name).sniff(data):
            return name
    raise ParseError("detect", f"{len(data)} bytes match none of {', '.join(DETECT_ORDER)} "
                               "(give --format)")


#: Where each parsed format carries the caller's nonce (attribute path on the parsed object).
NONCE_FIELD = {"snp": "report_data", "tdx": "body.report_data", "cca": "realm.challenge"}
#: Where it carries the requested privilege level, for formats that have one.
PRIVLEVEL_FIELD = {"snp": "vmpl"}
#: The format's version field.
VERSION_FIELD = {"snp": "version", "tdx": "header.version"}


def field(parsed: Any, path: str) -> Any:
    for part in path.split("."):
        parsed = getattr(parsed, part)
    return parsed
