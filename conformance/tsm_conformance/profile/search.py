"""Where profiles are found by name, and how their paths are shown.

Owns the search path, first hit wins: an explicit file path, then directories named by entry
points of group ``ENTRY_POINT_GROUP``, the wheel's packaged ``tsm_conformance/_profiles``, the
checkout's ``REPO_PROFILES``; ``profile_dirs`` and ``list_profiles`` report it, ``find`` looks a
name up, ``unknown`` words the "unknown profile" message and ``display_path`` keeps host paths
out of messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from importlib import metadata, resources
from pathlib import Path

from ..suggest import did_you_mean

ENTRY_POINT_GROUP = "tsm_conformance.profiles"
#: Checkout or editable install: <repo>/conformance/tsm_conformance/profile/ -> <repo>/profiles
REPO_PROFILES = Path(__file__).resolve().parents[3] / "profiles"


def display_path(p: Path) -> str:
    """Relative to the working directory when below it (messages carry no host paths)."""
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _entry_point_dirs() -> list[Path]:
    out = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a broken vendor plugin must not hide the built-in profiles
            warnings.warn(f"profile entry point {ep.name!r} ({ep.value}) failed to load: {e}",
                          stacklevel=2)
            continue
        f = getattr(obj, "__file__", None)
        if isinstance(obj, (str, Path)):  # an attribute naming the directory itself
            out.append(Path(obj).resolve())
        elif f:
            out.append(Path(f).resolve().parent)
        else:  # namespace package
            out += [Path(p).resolve() for p in getattr(obj, "__path__", [])]
    return out


def _packaged_dir() -> Path | None:
    try:
        p = Path(str(resources.files("tsm_conformance").joinpath("_profiles")))
    except (ModuleNotFoundError, TypeError):
        return None
    return p if p.is_dir() else None


def profile_dirs() -> list[Path]:
    """Directories searched for profiles by name, first hit wins: entry points of group
    ``tsm_conformance.profiles``, the wheel's ``tsm_conformance/_profiles``, the checkout's
    ``profiles/``."""
    dirs = _entry_point_dirs()
    packaged = _packaged_dir()
    if packaged:
        dirs.append(packaged)
    if REPO_PROFILES.is_dir():
        dirs.append(REPO_PROFILES)
    unique: dict[Path, Path] = {}
    for d in dirs:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


def profile_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def list_profiles() -> list[tuple[str, str]]:
    """``(name, path)`` of every profile on the search path (abstract ones too), by name."""
    found: dict[str, str] = {}
    for d in profile_dirs():
        for p in profile_files(d):
            found.setdefault(p.stem, display_path(p))
    return sorted(found.items())


def find(name: str, first: Iterable[Path] = ()) -> Path | None:
    for d in [*first, *profile_dirs()]:
        for ext in (".yaml", ".yml"):
            p = d / f"{name}{ext}"
            if p.is_file():
                return p
    return None


def is_path(s: str) -> bool:
    return s.endswith((".yaml", ".yml")) or "/" in s


def unknown(name: str, extra: Iterable[str] = ()) -> str:
    known = sorted({n for n, _ in list_profiles()} | set(extra))
    return (f"unknown profile '{name}'{did_you_mean(name, known) or ';'} known profiles: "
            f"{', '.join(known) or '(none)'}")
