"""Frozen, typed view of a validated profile.

Built only by ``profile.load`` from data that passed the JSON Schema and the semantic checks, so
every field here can be trusted.  ``Profile.where(keypath)`` gives the ``file:line`` that set a
value (after ``extends:`` merging), which failure messages cite as the expectation's source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Kind = Literal["text", "binary"]


def version_tuple(v: str) -> tuple[int, ...]:
    """"6.16" -> (6, 16); "7.3.4+deb13-amd64" -> (7, 3, 4)."""
    out: list[int] = []
    for part in v.replace("-", ".").replace("+", ".").split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


@dataclass(frozen=True)
class Alternative:
    """One allowed outcome with its era hints (hints only; never a gate)."""

    value: str | int
    since: str | None = None
    until: str | None = None
    commit: str | None = None

    def hint(self) -> str:
        bits = []
        if self.since:
            bits.append(f"since {self.since}")
        if self.until:
            bits.append(f"before {self.until}")
        if self.commit:
            bits.append(f"linux-git:{self.commit}")
        return ", ".join(bits)


@lru_cache(maxsize=256)
def _errno_names(alternatives: tuple[Alternative, ...]) -> tuple[str, ...]:
    return tuple(str(a.value) for a in alternatives)


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: Kind
    mode: int  # permission bits, e.g. 0o444
    visible: str  # "always" | "never" | "group:<name>"
    since: str | None = None

    @property
    def readable(self) -> bool:
        return bool(self.mode & 0o444)

    @property
    def writable(self) -> bool:
        return bool(self.mode & 0o222)

    @property
    def group(self) -> str | None:
        return self.visible.split(":", 1)[1] if self.visible.startswith("group:") else None


@dataclass(frozen=True)
class Range:
    min: int
    max: int

    def __contains__(self, n: object) -> bool:
        return isinstance(n, int) and self.min <= n <= self.max


@dataclass(frozen=True)
class Field:
    """Where the report carries an echo of an input: byte offset and length/width.

    ``offset`` None means "anywhere in the outblob" (formats without a fixed offset)."""

    offset: int | None
    length: int


@dataclass(frozen=True)
class ExpectedFailure:
    check: str
    reason: str
    tracking: str
    kernels: str | None = None


@dataclass(frozen=True)
class MrRegister:
    """One measurement register the provider shows (docs/abi-measurements.md §1)."""

    name: str  # without the hash suffix
    size: int
    hash: str | None  # None: no suffix (TSM_MR_F_NOHASH)
    mode: int  # 0444 read-only, 0644 extendable
    live: bool = False
    report_blob: str | None = None  # where a report carries it: a blob and offset ...
    report_offset: int | None = None
    report_field: str | None = None  # ... or a field of the parsed report format

    @property
    def file_name(self) -> str:
        return self.name if self.hash is None else f"{self.name}:{self.hash}"

    @property
    def writable(self) -> bool:
        return bool(self.mode & 0o222)


@dataclass(frozen=True)
class Measurements:
    since: str
    group: str  # the sysfs directory on a live machine
    registers: tuple[MrRegister, ...]
    refresh_counter: str | None = None
    extendable_by_tests: bool = False  # a test provider's: extending them on a live machine harms nothing


@dataclass(frozen=True)
class Profile:
    name: str
    path: str  # file the profile came from (the leaf of the extends chain)
    abstract: bool
    provider: str | None
    description: str
    since: str | None
    item_mode: int
    limits_inblob_max: int
    limits_privlevel_max: int
    limits_text_store_max: int
    limits_name_max: int
    limits_outblob_max: tuple[Alternative, ...]
    attributes: Mapping[str, Attribute]
    groups: Mapping[str, tuple[str, ...]]
    match_groups: Mapping[str, bool]  # group name -> must be present (True) / absent (False)
    errors: Mapping[str, tuple[Alternative, ...]]  # condition -> allowed errno names
    generation_initial: int
    # provider behaviour; None where the provider does not have the feature
    inblob_report_lengths: Range | None
    inblob_rejected_length_errno: str | None
    privlevel_floor: int | None  # expected floor; None: any value privlevel_floor_min..max is fine
    privlevel_floor_min: int
    privlevel_honoured: bool
    privlevel_below_floor_errno: str | None  # a report asked below the floor (firmware rule); None: not stated
    report_min_length: int | None
    report_nonce: Field | None
    report_privlevel: Field | None
    report_fresh_per_generation: bool
    report_format: str | None  # "snp" | "tdx" | "cca": the format.* checks parse and verify it
    report_versions: tuple[int, ...]  # empty: any version the parser accepts
    report_tee_type: int | None
    auxblob_format: str | None
    auxblob_may_be_empty: bool
    report_always_empty: tuple[str, ...]  # blobs that read as 0 bytes
    report_ignores: tuple[str, ...]  # options accepted and ignored
    service_provider_values: tuple[str, ...]  # strings the provider reports on (empty: any/ignored)
    service_provider_rejected_errno: str | None  # read() errno after any other string
    service_attestation: str | None  # "svsm": the SVSM attestation binding applies
    expected_failures: tuple[ExpectedFailure, ...]
    extends: tuple[str, ...] = ()  # chain of parent names, nearest first
    marks: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    measurements: Measurements | None = None  # tsm-mr registers (6.16+); None: the provider has none

    def where(self, keypath: str) -> str:
        """``file:line`` that set ``keypath`` (dotted, e.g. ``attributes.inblob.mode``).

        Falls back to the nearest ancestor key that has a mark, then to the profile file."""
        k = keypath
        while k:
            if k in self.marks:
                return self.marks[k]
            k = k.rpartition(".")[0]
        return self.path

    def errno(self, condition: str) -> tuple[str, ...]:
        """Allowed errno names for a condition (alternatives in profile order)."""
        return _errno_names(self.errors[condition])

    def errno_at(self, condition: str, release: str) -> tuple[str, ...]:
        """The alternatives a kernel ``release`` may still give: stable backports bring a fix to
        older kernels, never take it out of newer ones, so an alternative that ended (``until``)
        at or before the release is out; an unparsable release keeps every alternative."""
        rel = version_tuple(release)
        alts = self.errors[condition]
        kept = tuple(a for a in alts if not (rel and a.until and rel >= version_tuple(a.until)))
        return _errno_names(kept or alts)

    def visible_attributes(self, groups_present: Mapping[str, bool]) -> set[str]:
        """The attribute set a fresh item must show, given which groups were probed present."""
        out = set()
        for a in self.attributes.values():
            if a.visible == "always" or (a.group and groups_present.get(a.group, False)):
                out.add(a.name)
        return out

    def outblob_max_for(self, release: str) -> int:
        """The blob size limit for a kernel release (era hint; the largest value if unknown)."""
        rel = version_tuple(release)
        for alt in self.limits_outblob_max:
            lo = version_tuple(alt.since) if alt.since else ()
            hi = version_tuple(alt.until) if alt.until else None
            if rel and rel >= lo and (hi is None or rel < hi):
                return int(alt.value)
        return max(int(a.value) for a in self.limits_outblob_max)
