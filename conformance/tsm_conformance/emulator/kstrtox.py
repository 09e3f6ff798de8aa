"""Exact models of the kernel string parsers the tsm core uses: kstrtouint(buf, 0) and guid_parse.

Written from lib/kstrtox.c and lib/uuid.c semantics (docs/abi.md §1a, docs/real-kernels.md claims: Text
attributes): optional '+', base auto-detection (0x.. hex only if a hex digit follows, 0.. octal),
digits until the first non-digit, one optional trailing '\\n', nothing else; the NUL that
configfs appends ends the string.  Errors are the errno the kernel returns.
"""

from __future__ import annotations

import errno

U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
_HEX = b"0123456789abcdefABCDEF"


def _cstr(buf: bytes) -> bytes:
    """The C string view: configfs NUL-terminates the page, so bytes after a NUL are unseen."""
    i = buf.find(b"\0")
    return buf if i < 0 else buf[:i]


_DIGITS = {8: b"01234567", 10: b"0123456789", 16: _HEX}  # the characters _parse_integer takes per base


def kstrtoull(buf: bytes, base: int = 0) -> int:
    s = _cstr(buf)
    if s[:1] == b"+":
        s = s[1:]
    if base == 0:
        if s[:1] == b"0":
            if s[1:2] in (b"x", b"X") and len(s) > 2 and s[2] in _HEX:
                base, s = 16, s[2:]
            else:
                base = 8
        else:
            base = 10
    elif base == 16 and s[:2] in (b"0x", b"0X"):
        s = s[2:]
    # _parse_integer: digits of the base until the first other character.  The C loop flags
    # overflow when the running value passes U64_MAX; the value only grows as digits are added, so
    # that is the whole run's value passing it (a 4095-digit store is parsed without a loop here).
    consumed = len(s) - len(s.lstrip(_DIGITS[base]))
    if consumed == 0:
        raise OSError(errno.EINVAL, "Invalid argument")
    digits = s[:consumed].lstrip(b"0")
    # (more than 64 digits of any base pass U64_MAX; int() refuses over 4300 decimal ones)
    if len(digits) > 64 or (val := int(digits or b"0", base)) > U64_MAX:
        raise OSError(errno.ERANGE, "Numerical result out of range")
    rest = s[consumed:]
    if rest[:1] == b"\n":
        rest = rest[1:]
    if rest:
        raise OSError(errno.EINVAL, "Invalid argument")
    return val


def kstrtouint(buf: bytes, base: int = 0) -> int:
    v = kstrtoull(buf, base)
    if v > U32_MAX:
        raise OSError(errno.ERANGE, "Numerical result out of range")
    return v


def kstrtoll(buf: bytes, base: int = 0) -> int:
    """kstrtoll: a leading '-' negates the unsigned parse of the rest (module int parameters)."""
    s = _cstr(buf)
    if s[:1] == b"-":
        if s[1:2] == b"+":
            raise OSError(errno.EINVAL, "Invalid argument")
        v = kstrtoull(s[1:], base)
        if v > 1 << 63:
            raise OSError(errno.ERANGE, "Numerical result out of range")
        return -v
    v = kstrtoull(s, base)
    if v > (1 << 63) - 1:
        raise OSError(errno.ERANGE, "Numerical result out of range")
    return v


# guid_t byte i comes from the hex pair at this string offset (little-endian first three fields).
_GUID_INDEX = (6, 4, 2, 0, 11, 9, 16, 14, 19, 21, 24, 26, 28, 30, 32, 34)
GUID_NULL = bytes(16)


def guid_parse(buf: bytes) -> bytes:
    """lib/uuid.c guid_parse: the first 36 chars must be a UUID; anything after is ignored."""
    s = _cstr(buf)
    if len(s) < 36:
        raise OSError(errno.EINVAL, "Invalid argument")
    for i in range(36):
        c = s[i]
        if i in (8, 13, 18, 23):
            if c != 0x2D:
                raise OSError(errno.EINVAL, "Invalid argument")
        elif c not in _HEX:
            raise OSError(errno.EINVAL, "Invalid argument")
    return bytes(int(s[j:j + 2], 16) for j in _GUID_INDEX)
