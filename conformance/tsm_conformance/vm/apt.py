"""apt configuration for other Debian suites (trixie, trixie-backports, sid), kept in the cache.

The host's sources are never edited: apt gets its own source list, lists and archives directory
through ``-o`` options (docs/real-kernels.md, Debian 7.x recipe).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .kernel import Progress, VmError, last_line

MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def suite_options(cache: Path, suite: str, progress: Progress, max_age: float = 86400.0) -> list[str]:
    base = cache / "apt" / suite
    (base / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    suites = [suite] if suite in ("sid", "unstable") or "-" not in suite else [suite.split("-")[0], suite]
    src = base / "sources.list"
    src.write_text("".join(f"deb [signed-by={KEYRING}] {MIRROR} {s} main\n" for s in suites))
    opts = ["-o", f"Dir::Etc::SourceList={src}", "-o", "Dir::Etc::SourceParts=-",
            "-o", f"Dir::State::Lists={base / 'lists'}", "-o", f"Dir::Cache={base}",
            "-o", f"Dir::Cache::Archives={base / 'archives'}", "-o", "APT::Get::List-Cleanup=0",
            "-o", "Acquire::Check-Valid-Until=false"]
    stamp = base / ".updated"
    if not stamp.exists() or time.time() - stamp.stat().st_mtime > max_age:
        progress(f"apt-get update ({' '.join(suites)})")
        p = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, timeout=600)
        if p.returncode:
            raise VmError(f"apt-get update for {suite} failed: {last_line(p.stderr)}")
        stamp.touch()
    return opts
