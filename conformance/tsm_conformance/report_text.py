"""The one failure text: pytest repr_failure, the JUnit <failure> body and the CLI all use it."""

from __future__ import annotations

from .outcome import TsmFailure


def render_failure(f: TsmFailure) -> str:
    lines = [
        f"{f.check_id}: {f.rule}",
        f"  expected : {f.expected}",
        f"  observed : {f.observed}",
        f"  profile  : {f.profile_ref}",
    ]
    if f.target:
        lines.append(f"  target   : {f.target}")
    if f.kernel:
        lines.append(f"  kernel   : {f.kernel}")
    if f.ops:
        lines.append("Operation sequence that reproduces it (r0, r1: fresh report items; fd0, fd1: files "
                     "in the order of their opens, failed ones counted):")
        ops = f.ops if len(f.ops) <= 60 else f.ops[:20] + [f"... {len(f.ops) - 40} more ..."] + f.ops[-20:]
        lines += [f"    {op}" for op in ops]
    if f.sequence_path:
        lines.append(f"Reproduce with: tsm-conformance replay {f.sequence_path} {rerun_options(f.target)}".rstrip())
    return "\n".join(lines)


#: what LiveTree.describe() appends for a tree on a filesystem we do not recognise
_ANY_FS = ", --any-filesystem)"


def rerun_options(target: str) -> str:
    """The target options that reach the same tree again, from a target description (Tree.describe():
    ``emulated SPEC``, ``live|fuse|foreign ROOT``, ``... ROOT (FSTYPE, --any-filesystem)``)."""
    import shlex
    kind, _, rest = target.partition(" ")
    if kind == "emulated":
        return f"--emulate {shlex.quote(rest)}"
    if kind not in ("live", "fuse", "foreign") or not rest:
        return ""
    if rest.endswith(_ANY_FS):  # the fstype has no spaces (mountinfo), so the last " (" starts it
        return f"--root {shlex.quote(rest.rpartition(' (')[0])} --any-filesystem"
    return f"--root {shlex.quote(rest)}"
