"""Build chroots for kernels whose headers need a newer toolchain than the host has.

Debian's trixie kernels want gcc-14 and a libc >= 2.38 for their kbuild helpers; sid's want a newer
gcc still.  A ``debootstrap --variant=minbase`` chroot of the suite that ships that compiler is made
once in the cache; the cache is bind-mounted at the same path inside it, so the relocated headers
and the build directory resolve unchanged (docs/real-kernels.md, Debian 7.x recipe: /proc must be mounted
for objtool).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .apt import MIRROR
from .kernel import KernelTree, Progress, VmError, last_line

# gcc major -> the Debian suite whose default toolchain provides it
SUITE_FOR_GCC = {14: "trixie", 15: "sid", 16: "sid"}
PACKAGES = ("make", "pahole", "libelf1t64", "libssl3t64", "zlib1g", "libc6-dev")


def kernel_gcc(tree: KernelTree) -> int | None:
    cfg = tree.headers / ".config"
    m = re.search(r'CONFIG_CC_VERSION_TEXT=".*?gcc-(\d+)', cfg.read_text(errors="replace")) if cfg.exists() else None
    if not m:
        m = re.search(r"CONFIG_GCC_VERSION=(\d+)", cfg.read_text(errors="replace")) if cfg.exists() else None
        return int(m[1]) // 10000 if m else None
    return int(m[1])


def host_has(gcc: int) -> bool:
    return shutil.which(f"x86_64-linux-gnu-gcc-{gcc}") is not None or shutil.which(f"gcc-{gcc}") is not None


def ensure_chroot(cache: Path, gcc: int, progress: Progress) -> Path:
    suite = SUITE_FOR_GCC.get(gcc)
    if suite is None:
        raise VmError(f"no known Debian suite provides gcc-{gcc}")
    root = cache / "chroot" / suite
    stamp = root / ".tsm-ready"
    if stamp.exists() and f"gcc-{gcc}" in stamp.read_text():
        return root
    if not shutil.which("debootstrap"):
        raise VmError(f"building for a gcc-{gcc} kernel needs debootstrap: apt-get install debootstrap")
    if not (root / "usr" / "bin" / "apt-get").exists():
        progress(f"debootstrap {suite} (once)")
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        _run(["debootstrap", "--variant=minbase", suite, str(root), MIRROR], 1800)
    progress(f"install gcc-{gcc} in the {suite} chroot")
    with _mounted(root, cache):
        # the archive mirror reachable here can serve Release files past their Valid-Until
        _run(["chroot", str(root), "apt-get", "-o", "Acquire::Check-Valid-Until=false", "update"], 900)
        _run(["chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
              "--no-install-recommends", f"gcc-{gcc}", *PACKAGES], 1800)
    stamp.write_text(f"gcc-{gcc}\n")
    return root


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode:
        raise VmError(f"{' '.join(cmd[:4])}... failed: {last_line(p.stderr or p.stdout)}")
    return p


@contextmanager
def _mounted(root: Path, cache: Path) -> Iterator[None]:
    """/proc and the cache (at its own path) inside the chroot, undone afterwards."""
    inside = root / str(cache).lstrip("/")
    inside.mkdir(parents=True, exist_ok=True)
    (root / "proc").mkdir(exist_ok=True)
    _run(["mount", "-t", "proc", "proc", str(root / "proc")], 60)
    try:
        _run(["mount", "--bind", str(cache), str(inside)], 60)
        try:
            yield
        finally:
            subprocess.run(["umount", str(inside)], capture_output=True)
    finally:
        subprocess.run(["umount", str(root / "proc")], capture_output=True)


def make_in_chroot(root: Path, cache: Path, tree: KernelTree, out: Path) -> subprocess.CompletedProcess[str]:
    with _mounted(root, cache):
        return subprocess.run(["chroot", str(root), "make", "-C", str(tree.headers), f"M={out}", "modules"],
                              capture_output=True, text=True, timeout=900)
