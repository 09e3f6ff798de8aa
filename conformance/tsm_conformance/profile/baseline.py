"""Known-failure baselines (``run --baseline FILE``, docs/results.md "Known failures").

A profile says what a provider should do; a baseline says which failures are *known* where a run
happens: a kernel bug on a range of releases (the configfs size-then-fill read race, in every
kernel so far: ``baselines/known-kernel-bugs.yaml``), a firmware bug with one module parameter.
A failing check that matches an entry is reported as known (JUnit skipped, KTAP ``# SKIP known:``)
and does not fail the run; an entry whose check ran and passed is stale (a warning, or a failure
with ``--strict-baseline``).  Files are read like profiles (bounded, line marks, JSON Schema:
``baseline.schema.json``), so a mistake is one line naming file:line and key.
"""

from __future__ import annotations

import fnmatch
import hashlib
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..inputs import BASELINE_ENTRIES, BASELINE_MAX
from .errors import ProfileError, error_at
from .model import version_tuple
from .schemacheck import check_against, validator_for
from .search import display_path
from .yamlmarks import read_yaml

SCHEMA = "tsm-baseline/1"
DEFAULT = "known-kernel-bugs"  # applied when a run names no --baseline (``none`` turns it off)
REPO_BASELINES = Path(__file__).resolve().parents[3] / "baselines"

_OPS: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne}


@dataclass(frozen=True)
class Context:
    """What an entry is matched against: the run's target."""

    kernel_release: str
    provider: str | None
    target_kind: str  # live, fuse, foreign, emulated
    params: dict[str, str] = field(default_factory=dict)  # module or --emulate parameters


@dataclass(frozen=True)
class Entry:
    check: str  # an id or a glob
    reason: str
    link: str
    where: str  # file:line of the entry
    kernels: str | None = None
    providers: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    params: tuple[tuple[str, str], ...] = ()

    def applies(self, ctx: Context) -> bool:
        """Whether this entry is about the run's kernel, provider, target kind and configuration."""
        if self.kernels and not in_range(ctx.kernel_release, self.kernels):
            return False
        if self.providers and ctx.provider not in self.providers:
            return False
        if self.targets and ctx.target_kind not in self.targets:
            return False
        return all(ctx.params.get(k) == v for k, v in self.params)

    def headline(self) -> str:
        """The reason's first clause, at most 100 characters (a SKIP reason must stay short)."""
        head = self.reason.split(": ", 1)[0] if ": " in self.reason[:100] else self.reason.split(". ", 1)[0]
        return head if len(head) <= 100 else head[:97] + "..."

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "where": self.where, "reason": self.reason, "link": self.link}


@dataclass(frozen=True)
class Baseline:
    entries: tuple[Entry, ...] = ()
    files: tuple[tuple[str, str, int], ...] = ()  # (path, sha256, entries) per file

    def match(self, check_id: str, ctx: Context) -> Entry | None:
        """The first entry for this check that applies to the run."""
        return next((e for e in self.entries if fnmatch.fnmatchcase(check_id, e.check) and e.applies(ctx)), None)


def in_range(release: str, spec: str) -> bool:
    """``release`` (e.g. "6.12.117+deb13-amd64") within ``spec`` (">=6.7, <6.19"; a bare "6.12" is
    the 6.12 series); a release without a version number is in no range."""
    rel = version_tuple(release)
    if not rel:
        return False
    for part in spec.split(","):
        part = part.strip()
        op = next((o for o in (">=", "<=", "==", "!=", ">", "<") if part.startswith(o)), "")
        want = version_tuple(part[len(op):].strip())
        if not op:
            if rel[:len(want)] != want:
                return False
        elif not _OPS[op](rel[:len(want)] if op in ("==", "!=") else rel, want):
            return False
    return True


def baseline_dirs() -> list[Path]:
    """Where shipped baselines are found by name: the wheel's ``tsm_conformance/_baselines``, the
    checkout's ``baselines/``."""
    from importlib import resources
    dirs = []
    try:
        packaged = Path(str(resources.files("tsm_conformance").joinpath("_baselines")))
        if packaged.is_dir():
            dirs.append(packaged)
    except (ModuleNotFoundError, TypeError):
        pass
    if REPO_BASELINES.is_dir():
        dirs.append(REPO_BASELINES)
    return dirs


def _resolve(name: str) -> Path:
    if "/" in name or name.endswith((".yaml", ".yml")):
        return Path(name)
    for d in baseline_dirs():
        for ext in (".yaml", ".yml"):
            if (d / f"{name}{ext}").is_file():
                return d / f"{name}{ext}"
    known = sorted({p.stem for d in baseline_dirs() for p in d.glob("*.y*ml")})
    raise ProfileError(f"no baseline named {name!r} (shipped: {', '.join(known) or 'none'}; or give a file path)",
                       file=name)


def load_baselines(names: Iterable[str], check_ids: Iterable[str] = ()) -> Baseline:
    """The entries of every named file or shipped baseline (``none``: no baseline).  With
    ``check_ids``, an entry matching none of them is an error at its line (a typo must not
    silently hide nothing)."""
    ids = list(check_ids)
    entries: list[Entry] = []
    files: list[tuple[str, str, int]] = []
    for name in names:
        if name == "none":
            continue
        path = _resolve(name)
        display = display_path(path)
        data, marks = read_yaml(path, display, what="baseline", limit=BASELINE_MAX, schema=SCHEMA)
        check_against(data, marks, validator_for("baseline.schema.json"), SCHEMA)
        raw = data["known_failures"]
        if len(entries) + len(raw) > BASELINE_ENTRIES:
            raise error_at(marks, "known_failures", f"more than {BASELINE_ENTRIES} entries in all")
        for i, x in enumerate(raw):
            kp = f"known_failures.{i}"
            if ids and not any(fnmatch.fnmatchcase(c, x["check"]) for c in ids):
                raise error_at(marks, f"{kp}.check", f"{x['check']!r} matches no check "
                                                     f"(tsm-conformance run -- --collect-only lists them)")
            m = marks.get(kp) or marks.get(f"{kp}.check")
            entries.append(Entry(check=x["check"], reason=" ".join(x["reason"].split()), link=x["link"].strip(),
                                 where=f"{display}:{m.line if m else 1}", kernels=x.get("kernels"),
                                 providers=tuple(x.get("providers", ())), targets=tuple(x.get("targets", ())),
                                 params=tuple((str(k), _text(v)) for k, v in (x.get("params") or {}).items())))
        files.append((display, hashlib.sha256(path.read_bytes()).hexdigest(), len(raw)))
    return Baseline(tuple(entries), tuple(files))


def _text(v: object) -> str:
    """A parameter value as /sys/module shows it (booleans Y/N) or as --emulate takes it."""
    if isinstance(v, bool):
        return "Y" if v else "N"
    return str(v)
