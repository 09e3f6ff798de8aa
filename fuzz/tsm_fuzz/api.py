"""The contract between fuzz targets (`targets/fuzz_<name>.py`) and the runner.

A target module defines:

* ``NAME``: the target's name (``inblob``, ``privlevel``, ``sequences``, ``parse_snp`` ...);
* ``DESCRIPTION``: one line;
* ``make(ctx: TargetContext) -> Callable[[bytes], None]``: set-up once per process, returning the
  one-input function atheris calls.  The function raises ``Finding`` when the tree or parser broke
  a rule; any other exception is a bug in the harness (the runner reports it as an error);
* optionally ``unavailable() -> str | None``: why the target cannot run here (e.g. its parser has
  not landed); the runner then reports it skipped;
* optionally ``KNOWN``: a ``collections.Counter`` of known-bug matches (rule -> count) the target
  saw and did not raise; the worker reports it and the runner prints it per target and in JUnit.

A tree target's one-input function (or, for a bound method, its object) may carry
``last_sequence() -> tsm_conformance.seq.Sequence | None``: the input it ran last as a replayable
Sequence (the results it observed as expectations where it has them).  The worker asks for it
only when the kernel log or the taint word shows a report after that input (``sequence_hook``),
so keeping what it needs must cost next to nothing per input.

The runner owns processes, atheris, corpora, minimisation, JUnit and the replay command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tsm_conformance.names import FUZZ


class Finding(Exception):
    """A rule the target broke.  ``sequence`` (a ``tsm_conformance.seq.Sequence``) replays it with
    ``tsm-conformance replay``; parser targets leave it None and the crash input is the evidence."""

    def __init__(self, rule: str, observed: str, sequence: Any = None, kernel_log: str | None = None,
                 note: str = "") -> None:
        super().__init__(f"{rule}: {observed}")
        self.rule = rule
        self.observed = observed
        self.sequence = sequence
        self.kernel_log = kernel_log  # the kernel log excerpt of a kernel finding (``kernel.*`` rules)
        self.note = note


@dataclass
class TargetContext:
    """What a target is run against."""

    emulate: str | None = None  # emulator spec, when in-process
    root: str | None = None  # a live or FUSE-mounted report directory
    any_filesystem: bool = False  # --any-filesystem: root may be on a filesystem we do not recognise
    profile: Any = None  # tsm_conformance.profile.model.Profile for the tree, when known
    facts: Any = None  # tsm_conformance.checks.base.Facts probed from the tree, when known
    prefix: str = FUZZ  # report names this process may create (unique per process)
    options: dict[str, str] = field(default_factory=dict)

    def tree(self) -> Any:
        """A fresh Tree for the target (tsm_conformance.runstate.make_tree)."""
        from tsm_conformance.runstate import make_tree
        return make_tree(self.root, self.emulate, any_filesystem=self.any_filesystem)


OneInput = Callable[[bytes], None]


def sequence_hook(one: OneInput) -> Callable[[], Any] | None:
    """The target's ``last_sequence`` (on the function, or on the object of a bound method), if any."""
    hook = getattr(one, "last_sequence", None)
    if hook is None:
        hook = getattr(getattr(one, "__self__", None), "last_sequence", None)
    return hook if callable(hook) else None
