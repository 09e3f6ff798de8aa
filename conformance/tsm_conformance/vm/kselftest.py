"""Our kselftest wrapper run through a kernel tree's own kselftest runner in the guest, and its
KTAP checked with the tree's own parser (`vm --kselftest`): what a KernelCI/LAVA job does.
PLACEHOLDER: being written (issue 16 item 5)."""

from __future__ import annotations

from pathlib import Path

GUEST_SCRIPT = Path(__file__).resolve().parents[3] / "kselftest" / "kernel-runner.sh"


def verdict(results: Path, tree: Path) -> tuple[list[str], str]:
    """(problems, log): empty problems when the runner ran our test and its KTAP parses."""
    log = results / "kselftest.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return (["not implemented yet"], text)
