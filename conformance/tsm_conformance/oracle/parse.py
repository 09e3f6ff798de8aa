"""The two text grammars of the report attributes, written again from abi.md §1a (N-version: the
emulator has its own ``kstrtox``; this module must not share code with it).

* ``kstrtouint(buf, 0)``: the C string (up to the first NUL), one leading ``+``, base from the
  prefix (``0x``+hex digit -> 16, ``0`` -> 8, else 10), at least one digit, one optional ``\\n``,
  nothing else; ERANGE above U32_MAX.
* ``guid_parse``: the first 36 characters must be ``8-4-4-4-12`` hex groups; the rest is ignored.
"""

from __future__ import annotations

U32_MAX = 0xFFFFFFFF
_HEX = set(b"0123456789abcdefABCDEF")


def c_string(buf: bytes) -> bytes:
    """What the store sees: configfs NUL-terminates the copied buffer, the parser stops at a NUL."""
    return buf.split(b"\0", 1)[0]


def kstrtouint(buf: bytes) -> int | str:
    """The value, or the errno name the kernel returns (``"EINVAL"`` / ``"ERANGE"``)."""
    s = c_string(buf)
    if s[:1] == b"+":
        s = s[1:]
    if s[:2].lower() == b"0x" and s[2:3] and s[2] in _HEX:
        base, s = 16, s[2:]
    elif s[:1] == b"0":
        base = 8
    else:
        base = 10
    digits = b"0123456789abcdef"[:base]
    n = 0
    while n < len(s) and s[n:n + 1].lower() in [digits[i:i + 1] for i in range(base)]:
        n += 1
    if n == 0:
        return "EINVAL"
    rest = s[n:]
    if rest[:1] == b"\n":
        rest = rest[1:]
    if rest:
        return "EINVAL"
    value = int(s[:n], base)
    return "ERANGE" if value > U32_MAX else value


def guid_ok(buf: bytes) -> bool:
    s = c_string(buf)[:36]
    if len(s) < 36:
        return False
    return all((ch == ord("-")) if i in (8, 13, 18, 23) else (ch in _HEX) for i, ch in enumerate(s))


def service_provider_value(chunk: bytes) -> bytes:
    """One trailing newline stripped, then kstrndup, which stops at the first NUL."""
    return c_string(chunk[:-1] if chunk.endswith(b"\n") else chunk)
