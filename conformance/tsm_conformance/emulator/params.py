"""What each ``--emulate`` parameter accepts: one table per provider (``Provider.PARAMS``) plus the
emulator's own (``EMULATOR``), checked once, when the spec is parsed, so a typo or a bad value is
one line before anything runs instead of an error inside a check.

Integers are read as the kernel reads module parameters (kstrtox.py, base 0: ``0x10`` is hex,
``010`` octal); booleans as ``param_set_bool`` does for the values a user would type (1/0/y/n/Y/N).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .kstrtox import kstrtoll

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
        try:
            return self.lo <= to_int(value) <= self.hi
        except OSError:
            return False


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
    # legal but adversarial worlds a client must cope with (tsm-conformance client's fault plans):
    # not kernel bugs, so not quirks
    "client_fault": Choice("none", "generation-bump", "empty-outblob", "busy-once", "enxio-read", "eintr-once",
                           "slow", "name-taken",
                           help="what the first outblob read of each item meets: another writer's commit "
                                "just before it, a 0-byte report (a failed TDX quote before 7.0), EBUSY "
                                "once (a quote in flight), ENXIO (the provider went away), EINTR once (a "
                                "signal while waiting for the host), a provider that takes 3 s; or "
                                "(name-taken) what the first mkdir of a new item meets: someone else made "
                                "that name a moment before (EEXIST)"),
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


@functools.lru_cache(maxsize=256)  # every reboot of a fuzz target's tree reads the same few
def to_int(value: str) -> int:
    """A parameter's integer as the kernel reads it (kstrtox: 0x.. hex, 0.. octal); OSError if bad."""
    return kstrtoll(value.encode())


def as_bool(value: str) -> bool:
    return value not in BOOL_FALSE
