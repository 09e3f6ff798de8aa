"""The oracle: a second, independent encoding of what configfs-tsm must do (N-version with the
emulator, which it never imports), from docs/abi.md and the profile.

* ``SpecModel`` (model.py): exact predictions for single-threaded sequences;
* ``check_trace`` (invariants.py): the rules every executed trace must keep, threads or not;
* rules.py: what one write() to a text attribute or inblob must return and change, which both of
  them and the fuzz targets ask (the one checking-side encoding of those rules);
* ``check_usable``: the tree still works afterwards (mkdir, write, read, rmdir of a fresh item).
"""

from __future__ import annotations

from ..profile.model import Profile
from ..seq import Done, Op, Step, execute_threads
from ..target.base import Tree
from .invariants import SIZE_FILL, Violation, check_trace
from .model import ANY, Expect, SpecModel, expected_attributes


def usable_steps(profile: Profile, nonce: bytes) -> list[Step]:
    """A fresh item: mkdir, commit a nonce, read generation and outblob, rmdir."""
    ops = [Op("mkdir", ("r0",)), Op("open", ("r0/inblob", "O_WRONLY")), Op("write", ("fd0", nonce)),
           Op("close", ("fd0",)), Op("open", ("r0/generation", "O_RDONLY")), Op("read", ("fd1", 64)),
           Op("close", ("fd1",)), Op("open", ("r0/outblob", "O_RDONLY")), Op("read", ("fd2", 1 << 16)),
           Op("close", ("fd2",)), Op("rmdir", ("r0",))]
    return [Step(op) for op in ops]


def check_usable(tree: Tree, profile: Profile, prefix: str, attributes: frozenset[str] | set[str],
                 floor: int | None, provider: str | None = None) -> list[Violation]:
    """The tree is still usable (after a fuzz input, a quirk, a hang): a fresh item works."""
    r = profile.inblob_report_lengths
    n = r.max if r else profile.limits_inblob_max
    done = execute_threads(tree, usable_steps(profile, bytes(range(1, n + 1))), prefix)
    return [Violation("tree.usable", v.expected, v.where, v.observed, v.step)
            for v in check_trace(profile, done, attributes, floor, provider)]


__all__ = ["ANY", "Done", "Expect", "SIZE_FILL", "SpecModel", "Violation", "check_trace", "check_usable",
           "expected_attributes", "usable_steps"]
