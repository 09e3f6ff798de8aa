"""What every parser shares: the one error type, a bounds-checked reader, JSON rendering."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any


class ParseError(ValueError):
    """Malformed input.  `offset` is where in the input the problem was found, when known."""

    def __init__(self, fmt: str, message: str, offset: int | None = None) -> None:
        self.fmt = fmt
        self.offset = offset
        where = f" at offset {offset:#x}" if offset is not None else ""
        super().__init__(f"{fmt}: {message}{where}")


class Reader:
    """Little-endian reads from a bytes object that raise ParseError past the end, not IndexError."""

    def __init__(self, fmt: str, data: bytes, base: int = 0) -> None:
        self.fmt = fmt
        self.data = bytes(data)
        self.base = base  # offset of data[0] in the outer input, for error messages

    def need(self, off: int, n: int, what: str) -> None:
        if off < 0 or n < 0 or off + n > len(self.data):
            raise ParseError(self.fmt, f"{what}: need {n} bytes, input has {max(len(self.data) - off, 0)}",
                             self.base + off)

    def bytes(self, off: int, n: int, what: str) -> bytes:
        self.need(off, n, what)
        return self.data[off:off + n]

    def u8(self, off: int, what: str) -> int:
        return self.bytes(off, 1, what)[0]

    def u16(self, off: int, what: str) -> int:
        return int(struct.unpack_from("<H", self.bytes(off, 2, what))[0])

    def u32(self, off: int, what: str) -> int:
        return int(struct.unpack_from("<I", self.bytes(off, 4, what))[0])

    def u64(self, off: int, what: str) -> int:
        return int(struct.unpack_from("<Q", self.bytes(off, 8, what))[0])

    def error(self, message: str, off: int | None = None) -> ParseError:
        return ParseError(self.fmt, message, None if off is None else self.base + off)


def to_jsonable(value: Any) -> Any:
    """Dataclasses → dicts (field names are the specifications' names in snake_case), bytes → lowercase hex."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.name.startswith("_")}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value
