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
        lines.append("Operation sequence that reproduces it (r0, r1: fresh report items):")
        ops = f.ops if len(f.ops) <= 60 else f.ops[:20] + [f"... {len(f.ops) - 40} more ..."] + f.ops[-20:]
        lines += [f"    {op}" for op in ops]
    if f.sequence_path:
        where = f"--emulate {f.target.split(' ', 1)[1]}" if f.target.startswith("emulated ") else \
            f"--root {f.target.split(' ', 1)[1]}" if f.target.startswith("live ") else ""
        lines.append(f"Reproduce with: tsm-conformance replay {f.sequence_path} {where}".rstrip())
    return "\n".join(lines)
