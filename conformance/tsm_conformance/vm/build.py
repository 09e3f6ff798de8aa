"""Build the provider module against a kernel with the kernel's own kbuild: our tsm_test, or any
out-of-tree provider (`vm --provider-module PATH`: a directory with a Kbuild or Makefile, or one
.c file).  The source is copied into the cache first; the user's directory is only read."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .chroot import ensure_chroot, host_has, kernel_gcc, make_in_chroot
from .kernel import KernelTree, Progress, VmError

MODULE_SRC = Path(__file__).resolve().parents[3] / "kmod" / "tsm_test"
MAX_SOURCE = 64 * 1024 * 1024  # bytes of module source copied into the cache, at most
_BUILD_OUTPUTS = (".o", ".ko", ".mod", ".mod.c", ".cmd", ".order", ".symvers")


@dataclass(frozen=True)
class Provider:
    """The provider module the guest loads: its .ko and its module name (/sys/module/NAME)."""

    ko: Path

    @property
    def name(self) -> str:
        return self.ko.name.removesuffix(".ko").replace("-", "_")


def module_source() -> Path:
    """kmod/tsm_test in a checkout (the VM target runs from a source tree)."""
    if not (MODULE_SRC / "tsm_test.c").exists():
        raise VmError(f"module source not found at {MODULE_SRC}: run from a checkout of configfs-tsm-conformance")
    return MODULE_SRC


def _sources(src: Path) -> list[Path]:
    """The files to copy (relative to the module directory): sources, headers and kbuild files,
    never a previous build's outputs; bounded so a wrong directory cannot fill the cache."""
    if src.is_file():
        if src.suffix != ".c":
            raise VmError(f"--provider-module {src}: give a directory with a Kbuild or Makefile, or a .c file")
        return [Path(src.name)]
    if not src.is_dir():
        raise VmError(f"--provider-module {src}: no such file or directory")
    if not (src / "Kbuild").is_file() and not (src / "Makefile").is_file():
        raise VmError(f"--provider-module {src}: no Kbuild or Makefile in it (or give a single .c file)")
    files, total = [], 0
    for f in sorted(src.rglob("*")):
        if not f.is_file() or f.is_symlink() or f.name.endswith(_BUILD_OUTPUTS) or f.name.startswith("."):
            continue
        total += f.stat().st_size
        if total > MAX_SOURCE:
            raise VmError(f"--provider-module {src}: more than {MAX_SOURCE >> 20} MiB of files: not a module source")
        files.append(f.relative_to(src))
    return files


def build_module(tree: KernelTree, cache: Path, progress: Progress, src: Path | None = None) -> Provider:
    """Build (once per kernel and source content) and return the provider module."""
    src = (src or module_source()).resolve()
    files = _sources(src)
    base = src.parent if src.is_file() else src
    h = hashlib.sha256(tree.release.encode() + str(tree.headers).encode())
    for rel in files:
        h.update(str(rel).encode() + b"\0" + (base / rel).read_bytes())
    out = cache / "build" / tree.release / h.hexdigest()[:16]
    done = sorted(out.glob("*.ko")) if (out / ".built").exists() else []
    if len(done) == 1:
        return Provider(done[0])
    progress(f"build {src.name} for {tree.release}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for rel in files:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(base / rel, out / rel)
    if src.is_file():  # one .c: the module is named after it
        (out / "Kbuild").write_text(f"obj-m += {src.stem}.o\n")
    gcc = kernel_gcc(tree)
    if gcc is not None and not host_has(gcc):
        root = ensure_chroot(cache, gcc, progress)
        progress(f"build {src.name} in the gcc-{gcc} chroot")
        p = make_in_chroot(root, cache, tree, out)
    else:
        p = subprocess.run(["make", "-C", str(tree.headers), f"M={out}", "modules"], capture_output=True,
                           text=True, timeout=900)
    kos = sorted(out.glob("*.ko"))
    if p.returncode or not kos:
        lines = [ln.strip() for ln in f"{p.stdout}\n{p.stderr}".splitlines() if ln.strip()]
        # the compiler's own "error:" lines say what is wrong; make's "Error 1" lines only where
        why = [ln for ln in lines if "error:" in ln][:2] or lines[-3:]
        (out / "build.log").write_text(f"{p.stdout}\n{p.stderr}")
        raise VmError(f"module build of {src} failed for {tree.release}: {' | '.join(why)} (log {out / 'build.log'})")
    if len(kos) != 1:
        raise VmError(f"{src} builds {len(kos)} modules ({', '.join(k.name for k in kos)}): the provider must be "
                      "one module")
    (out / ".built").touch()
    return Provider(kos[0])
