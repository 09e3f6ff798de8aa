"""The two text grammars of the report attributes, written again from docs/abi.md §1a (N-version: the
emulator has its own ``kstrtox``; this module must not share code with it).

* ``kstrtouint(buf, 0)``: the C string (up to the first NUL), one leading ``+``, base from the
  prefix (``0x``+hex digit -> 16, ``0`` -> 8, else 10), at least one digit, one optional ``\\n``,
  nothing else; ERANGE above U32_MAX (or on 64-bit overflow, before any junk).
* ``guid_parse``: the first 36 characters must be ``8-4-4-4-12`` hex groups; the rest is ignored.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

U32_MAX = 0xFFFFFFFF
U64_MAX = (1 << 64) - 1
_HEX = set(b"0123456789abcdefABCDEF")
_RUN = {10: re.compile(rb"[0-9]*"), 8: re.compile(rb"[0-7]*"), 16: re.compile(rb"[0-9a-fA-F]*")}


def c_string(buf: bytes) -> bytes:
    """What the store sees: configfs NUL-terminates the copied buffer, the parser stops at a NUL."""
    return buf.split(b"\0", 1)[0]


@functools.lru_cache(maxsize=1024)  # a fuzz target stores the same few texts again and again
def kstrtouint(buf: bytes) -> int | Literal["EINVAL", "ERANGE"]:
    """The value, or the errno name the kernel returns (``"EINVAL"`` / ``"ERANGE"``).

    Overflow is judged before trailing junk, as _kstrtoull does (ERANGE for "99...9x").  The digit
    run is matched whole: the value only grows as digits are appended, and no per-character loop
    keeps long texts cheap for the fuzzers, which use this same grammar."""
    s = c_string(buf)
    i = 1 if s[:1] == b"+" else 0
    base = 10
    if s[i:i + 1] == b"0":
        if s[i + 1:i + 2] in (b"x", b"X") and s[i + 2:i + 3] and s[i + 2] in _HEX:
            base, i = 16, i + 2
        else:
            base = 8
    # every _RUN pattern matches the empty string, so match() is never None here
    end = _RUN[base].match(s, i).end()  # type: ignore[union-attr]
    if end == i:
        return "EINVAL"
    value = int(s[i:end], base)
    if value > U64_MAX:
        return "ERANGE"
    rest = s[end:]
    if rest and rest != b"\n":
        return "EINVAL"
    return "ERANGE" if value > U32_MAX else value


def guid_ok(buf: bytes) -> bool:
    s = c_string(buf)[:36]
    if len(s) < 36:
        return False
    return all((ch == ord("-")) if i in (8, 13, 18, 23) else (ch in _HEX) for i, ch in enumerate(s))


def service_provider_value(chunk: bytes) -> bytes:
    """One trailing newline stripped, then kstrndup, which stops at the first NUL."""
    return c_string(chunk[:-1] if chunk.endswith(b"\n") else chunk)
