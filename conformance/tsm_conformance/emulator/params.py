"""What each ``--emulate`` parameter accepts: one table per provider (``Provider.PARAMS``) plus the
emulator's own (``EMULATOR``), checked once, when the spec is parsed, so a typo or a bad value is
one line before anything runs instead of an error inside a check.

Integers are read as the kernel reads module parameters (kstrtoint/kstrtouint, base 0: ``0x10``
works); booleans as ``param_set_bool`` does for the values a user would type (1/0/y/n/Y/N).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_INT = re.compile(r"^[+-]?(?:0[xX][0-9a-fA-F]+|0|[1-9][0-9]*)$")  # no _, spaces, 0o/0b (kstrtoint has none)

BOOL_TRUE, BOOL_FALSE = ("1", "y", "Y"), ("0", "n", "N")


@dataclass(frozen=True)
class Param:
    kind: str  # "int" | "bool" | "choice"
    lo: int = 0
    hi: int = 0
    choices: tuple[str, ...] = ()
    help: str = ""

    def describe(self) -> str:
        if self.kind == "int":
            return f"an integer {self.lo}..{self.hi}"
        if self.kind == "bool":
            return "1 or 0 (y/n)"
        return " | ".join(self.choices)

    def check(self, value: str) -> bool:
        if self.kind == "bool":
            return value in BOOL_TRUE + BOOL_FALSE
        if self.kind == "choice":
            return value in self.choices
        if not _INT.match(value):  # what kstrtoint(s, 0) takes that int(s, 0) agrees on
            return False
        return self.lo <= int(value, 0) <= self.hi


def Int(lo: int, hi: int, help: str = "") -> Param:  # noqa: N802 (reads like a type in the tables)
    return Param("int", lo, hi, help=help)


def Bool(help: str = "") -> Param:  # noqa: N802
    return Param("bool", help=help)


def Choice(*choices: str, help: str = "") -> Param:  # noqa: N802
    return Param("choice", choices=choices, help=help)


HOUR_MS = 3_600_000
EMULATOR: dict[str, Param] = {
    "gen_bits": Int(2, 64, "width of the generation counter (it wraps)"),
    "init_on_alloc": Bool("the kernel zeroes new buffers"),
    "size_fill_fix": Bool("a configfs with the size-then-fill read race fixed"),
    "registered": Bool("0: the core is loaded but no provider registered (mkdir gives ENXIO)"),
}


def validate(owner: str, table: dict[str, Param], params: dict[str, str]) -> None:
    """ValueError with one line naming the first unknown key or bad value."""
    from ..suggest import did_you_mean
    known = {**EMULATOR, **table}
    for key, value in params.items():
        p = known.get(key)
        if p is None:
            raise ValueError(f"unknown {owner} parameter '{key}'{did_you_mean(key, known)} "
                             f"(known: {', '.join(known)})")
        if not p.check(value):
            raise ValueError(f"{owner} parameter {key}={value}: expected {p.describe()}")


def as_bool(value: str) -> bool:
    return value not in BOOL_FALSE
