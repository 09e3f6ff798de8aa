"""Build the tsm_test provider module against a kernel's headers with the kernel's own kbuild."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from .chroot import ensure_chroot, host_has, kernel_gcc, make_in_chroot
from .kernel import KernelTree, Progress, VmError

MODULE_SRC = Path(__file__).resolve().parents[3] / "kmod" / "tsm_test"


def module_source() -> Path:
    """kmod/tsm_test in a checkout (the VM target runs from a source tree)."""
    if not (MODULE_SRC / "tsm_test.c").exists():
        raise VmError(f"module source not found at {MODULE_SRC}: run from a checkout of configfs-tsm-conformance")
    return MODULE_SRC


def build_module(tree: KernelTree, cache: Path, progress: Progress, src: Path | None = None) -> Path:
    src = src or module_source()
    h = hashlib.sha256(tree.release.encode())
    for f in sorted(src.iterdir()):
        if f.is_file() and f.suffix in ("", ".c", ".h") or f.name in ("Kbuild", "Makefile"):
            h.update(f.name.encode() + f.read_bytes())
    out = cache / "build" / tree.release / h.hexdigest()[:16]
    ko = out / "tsm_test.ko"
    if ko.exists():
        return ko
    progress(f"build tsm_test.ko for {tree.release}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in ("tsm_test.c", "Kbuild"):
        shutil.copy(src / name, out / name)
    gcc = kernel_gcc(tree)
    if gcc is not None and not host_has(gcc):
        root = ensure_chroot(cache, gcc, progress)
        progress(f"build tsm_test.ko in the gcc-{gcc} chroot")
        p = make_in_chroot(root, cache, tree, out)
    else:
        p = subprocess.run(["make", "-C", str(tree.headers), f"M={out}", "modules"], capture_output=True,
                           text=True, timeout=600)
    if p.returncode or not ko.exists():
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise VmError(f"module build failed for {tree.release}: {' | '.join(tail)}")
    return ko
