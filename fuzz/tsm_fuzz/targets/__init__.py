"""Fuzz targets: every ``fuzz_<name>.py`` module here is one target named ``<name>``.

Each module follows ``tsm_fuzz.api`` (``NAME``, ``DESCRIPTION``, ``make(ctx)``; optionally
``unavailable() -> str | None``, a reason the target cannot run here, e.g. a parser not yet
present, or ``unavailable(ctx)`` when the reason depends on the tree).  Discovery goes by file
name so the runner can list targets without importing them: the worker imports a target only
inside atheris' instrumentation.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    """Every target, sorted: ``fuzz_inblob.py`` -> ``inblob``."""
    return sorted(p.stem[len("fuzz_"):] for p in HERE.glob("fuzz_*.py"))


def module_name(name: str) -> str:
    return f"{__name__}.fuzz_{name}"


def load(name: str) -> ModuleType:
    """Import a target module and check it against the contract; ValueError for an unknown name."""
    if name not in names():
        from tsm_conformance.suggest import did_you_mean
        raise ValueError(f"unknown fuzz target '{name}'{did_you_mean(name, names())} "
                         f"(known: {', '.join(names())})")
    mod = importlib.import_module(module_name(name))
    for attr in ("NAME", "DESCRIPTION", "make"):
        if not hasattr(mod, attr):
            raise ValueError(f"fuzz target {name}: module defines no {attr}")
    return mod


def unavailable(mod: ModuleType, ctx: Any = None) -> str | None:
    """Why a loaded target cannot run here (None: it can).  A target whose answer depends on the
    tree (``measurements``: only where the provider has registers) declares ``unavailable(ctx)``
    and is asked with the ``TargetContext`` when the caller has one; without one it answers for
    the module alone."""
    fn = getattr(mod, "unavailable", None)
    if not callable(fn):
        return None
    if ctx is not None and inspect.signature(fn).parameters:
        return fn(ctx)
    return fn()
