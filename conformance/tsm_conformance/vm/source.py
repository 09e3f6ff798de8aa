"""Kernels from a source tree (`vm --kernel-tree DIR`, `vm --kernel-source-deb PACKAGE`).

A small guest kernel for our QEMU set-up: allnoconfig plus the shipped fragment
(data/kconfig/base.config) and one fragment per `--debug` variant, merged with the tree's own
scripts/kconfig/merge_config.sh, built out of tree (make O=) into the cache.  The build directory
is keyed by the tree's path and version, the fragments and the compiler, so a second run with the
same key is make's incremental build; the source tree is only read.  docs/vm.md, *Kernels from
source*, has the choices and the measured build times.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path
from typing import NoReturn

from .kernel import KernelTree, Progress, VmError, last_line

#: --debug NAME -> its fragment in data/kconfig (NAME.config)
DEBUG = ("kasan", "kcsan", "lockdep", "ubsan")
#: variants one kernel cannot have together, and why
EXCLUSIVE = {frozenset({"kasan", "kcsan"}): "KCSAN excludes KASAN (lib/Kconfig.kcsan: depends on !KASAN)"}
BUILD_TIMEOUT = 4 * 3600.0  # a cold KASAN build on 2 cores takes well under this
_CONFIG_LINE = re.compile(r"^(CONFIG_\w+)=(.*)$|^# (CONFIG_\w+) is not set$")


def debug_variants(text: str) -> list[str]:
    """``kasan,lockdep`` -> ["kasan", "lockdep"]; unknown or exclusive names are a VmError."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in DEBUG:
            raise VmError(f"--debug {n}: unknown (known: {', '.join(DEBUG)}; combine with commas)")
    for pair, why in EXCLUSIVE.items():
        if pair <= set(names):
            raise VmError(f"--debug {'+'.join(sorted(pair))}: {why}")
    return sorted(set(names), key=DEBUG.index)


def fragments(debug: list[str]) -> list[tuple[str, str]]:
    """(name, text) of the fragments for these variants, base first."""
    d = resources.files("tsm_conformance") / "data" / "kconfig"
    return [(f"{n}.config", (d / f"{n}.config").read_text()) for n in ["base", *debug]]


def wanted(texts: list[str]) -> dict[str, str]:
    """CONFIG_X -> the value the fragments ask for ("n" for ``# CONFIG_X is not set``); a later
    fragment wins, as in merge_config.sh."""
    out: dict[str, str] = {}
    for text in texts:
        for line in text.splitlines():
            m = _CONFIG_LINE.match(line.strip())
            if m:
                out[m[1] or m[3]] = m[2] if m[1] else "n"
    return out


def not_taken(config: str, want: dict[str, str]) -> list[str]:
    """The fragment lines the tree's Kconfig did not honour (a missing symbol, an unmet
    dependency): ``CONFIG_X=y (got n)``."""
    have = wanted([config])
    bad = []
    for sym, val in want.items():
        got = have.get(sym, "n")
        if got.strip('"') != val.strip('"'):
            bad.append(f"{sym}={val} (got {got})")
    return bad


def kconfig_symbols(tree: Path) -> set[str]:
    """Every symbol the tree's Kconfig files declare (``config X`` / ``menuconfig X``)."""
    decl = re.compile(r"^\s*(?:menu)?config\s+(\w+)", re.M)
    out: set[str] = set()
    for f in tree.rglob("Kconfig*"):
        if f.is_file():
            out.update(decl.findall(f.read_text(errors="replace")))
    return out


def _tree_version(tree: Path) -> str:
    mk = tree / "Makefile"
    text = mk.read_text(errors="replace")[:4096] if mk.is_file() else ""
    parts = [re.search(rf"^{k}\s*=\s*(\S*)", text, re.M) for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")]
    if not all(parts):
        raise VmError(f"--kernel-tree {tree}: not a kernel source tree (no VERSION/PATCHLEVEL in its Makefile)")
    v, p, s = (m[1] if m else "" for m in parts)
    return f"{v}.{p}" + (f".{s}" if s and s != "0" else "")


def check_tree(tree: Path) -> str:
    """The tree's version, or a VmError naming what is wrong with it."""
    if not tree.is_dir():
        raise VmError(f"--kernel-tree {tree}: no such directory")
    version = _tree_version(tree)
    if not (tree / "scripts" / "kconfig" / "merge_config.sh").is_file() or not (tree / "arch" / "x86").is_dir():
        raise VmError(f"--kernel-tree {tree}: no scripts/kconfig/merge_config.sh or arch/x86 (an x86 kernel "
                      "source tree is needed)")
    if (tree / ".config").exists() or (tree / "include" / "config").is_dir():
        raise VmError(f"--kernel-tree {tree}: the tree was configured in place (.config); out-of-tree builds "
                      f"need a clean tree: run `make -C {tree} mrproper` or give a copy")
    return version


def _compiler() -> str:
    try:
        p = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise VmError("gcc not found: apt-get install gcc make flex bison bc libelf-dev libssl-dev") from None
    return p.stdout.splitlines()[0] if p.stdout else "gcc"


def _make(tree: Path, out: Path, args: list[str], progress: Progress, what: str) -> None:
    log = out / "build.log"
    t0 = time.monotonic()
    with log.open("a") as fh:
        fh.write(f"\n### make {' '.join(args)}\n")
        fh.flush()
        try:
            p = subprocess.run(["make", "-C", str(tree), f"O={out}", *args], stdout=fh, stderr=subprocess.STDOUT,
                               timeout=BUILD_TIMEOUT)
        except FileNotFoundError:
            raise VmError("make not found: apt-get install make gcc flex bison bc libelf-dev libssl-dev") from None
        except subprocess.TimeoutExpired:
            raise VmError(f"{what}: no result after {BUILD_TIMEOUT:.0f} s (log {log})") from None
    if p.returncode:
        _failed(what, log)
    progress(f"{what}: {time.monotonic() - t0:.0f} s")


def _failed(what: str, log: Path) -> NoReturn:
    """One line from a failed configure or build: its last lines, and the packages when the
    failure is a missing tool or header (flex, bison, bc, libelf, openssl)."""
    tail = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-3:]
    missing = any(k in ln for ln in tail for k in ("flex: not found", "bison: not found", "bc: not found",
                                                   "gelf.h", "openssl"))
    hint = " (apt-get install flex bison bc libelf-dev libssl-dev)" if missing else ""
    raise VmError(f"{what} failed{hint}: {' | '.join(tail)} (log {log})")


def build_dir(tree: Path, version: str, debug: list[str], cache: Path) -> tuple[Path, str]:
    frags = fragments(debug)
    h = hashlib.sha256()
    for part in (str(tree.resolve()), version, _compiler(), *(f"{n}\n{t}" for n, t in frags)):
        h.update(part.encode() + b"\0")
    key = h.hexdigest()[:16]
    return cache / "kbuild" / f"{version}-{'+'.join(debug) or 'base'}-{key}", key


def from_source(tree: Path, cache: Path, debug: list[str], progress: Progress, jobs: int | None = None) -> KernelTree:
    """Configure (once per key), build (incrementally) and install the modules of a guest kernel."""
    tree = tree.resolve()
    version = check_tree(tree)
    out, key = build_dir(tree, version, debug, cache)
    out.mkdir(parents=True, exist_ok=True)
    frags = fragments(debug)
    stamp = out / ".tsm-configured"
    if not stamp.exists() or stamp.read_text() != key:
        progress(f"configure {version} ({'+'.join(['base', *debug])}) in {out}")
        fdir = out / "fragments"
        fdir.mkdir(exist_ok=True)
        paths = []
        for name, text in frags:
            (fdir / name).write_text(text)
            paths.append(str(fdir / name))
        # -n: allnoconfig as the base, so only what the fragments ask for is built
        with (out / "build.log").open("w") as fh:
            p = subprocess.run(["sh", str(tree / "scripts" / "kconfig" / "merge_config.sh"), "-n", "-O", str(out),
                                *paths], cwd=tree, stdout=fh, stderr=subprocess.STDOUT, timeout=600)
        if p.returncode:
            _failed(f"configuring {tree}", out / "build.log")
        bad = not_taken((out / ".config").read_text(), wanted([t for _, t in frags]))
        declared = kconfig_symbols(tree)
        gone = [b for b in bad if b.split("=")[0].removeprefix("CONFIG_") not in declared]
        if gone:  # a symbol this tree no longer (or not yet) has: PROC_SYSCTL went in 7.x, sysctl stays
            progress(f"not in {version}'s Kconfig, left out: {', '.join(b.split(' ')[0] for b in gone)}")
            bad = [b for b in bad if b not in gone]
        if bad:
            raise VmError(f"{tree} ({version}): its Kconfig did not take {len(bad)} fragment line(s): "
                          f"{', '.join(bad[:6])}")
        stamp.write_text(key)
    n = jobs or os.cpu_count() or 1
    progress(f"build {version} ({'+'.join(['base', *debug])}) with make -j{n} (incremental after the first)")
    _make(tree, out, [f"-j{n}", "bzImage", "modules"], progress, f"kernel build {version}")
    release = (out / "include" / "config" / "kernel.release").read_text().strip()
    inst = out / "_install"
    shutil.rmtree(inst, ignore_errors=True)  # no module of an older build may survive beside the new ones
    _make(tree, out, ["modules_install", f"INSTALL_MOD_PATH={inst}", "INSTALL_MOD_STRIP=1", "DEPMOD=true"],
          progress, "modules_install")
    image = out / "arch" / "x86" / "boot" / "bzImage"
    mods = inst / "lib" / "modules" / release
    if not image.is_file() or not mods.is_dir():
        raise VmError(f"the build in {out} left no bzImage or lib/modules/{release}")
    return KernelTree(release, image, mods, out, source=tree)


def unpack_source_deb(package: str, cache: Path, progress: Progress, apt: list[str] | None = None) -> Path:
    """``linux-source-6.12`` -> the unpacked source tree in the cache (downloaded once per version;
    an interrupted unpack never looks complete: it is renamed into place at the end)."""
    if not re.fullmatch(r"linux-source-[0-9][\w.+~-]*", package):
        raise VmError(f"--kernel-source-deb {package}: expected a linux-source-X.Y package name")
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob(f"{package}_*.deb"))
    if not have:
        progress(f"download {package}")
        try:
            p = subprocess.run(["apt-get", *(apt or []), "download", package], cwd=debs, capture_output=True,
                               text=True, timeout=1800)
        except FileNotFoundError:
            raise VmError("apt-get not found: --kernel-source-deb needs a Debian-like host") from None
        if p.returncode:
            raise VmError(f"apt-get download {package} failed: {last_line(p.stderr or p.stdout)}")
        have = sorted(debs.glob(f"{package}_*.deb"))
    if not have:
        raise VmError(f"apt-get download {package} left no .deb in {debs}")
    deb = have[-1]
    dest = cache / "src" / deb.name.removesuffix(".deb")
    if not (dest / ".unpacked").exists():
        progress(f"unpack {deb.name}")
        work = dest.with_name(dest.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        p = subprocess.run(["dpkg", "-x", str(deb), str(work / "deb")], capture_output=True, text=True, timeout=1800)
        if p.returncode:
            raise VmError(f"dpkg -x {deb.name} failed: {last_line(p.stderr)}")
        tars = sorted((work / "deb" / "usr" / "src").glob("linux-source-*.tar.*"))
        if len(tars) != 1:
            raise VmError(f"{deb.name}: expected one linux-source tarball in usr/src, found {len(tars)}")
        p = subprocess.run(["tar", "-C", str(work), "-xaf", str(tars[0])], capture_output=True, text=True,
                           timeout=1800)
        if p.returncode:
            raise VmError(f"unpacking {tars[0].name} failed: {last_line(p.stderr)}")
        shutil.rmtree(work / "deb")
        (work / ".unpacked").touch()
        shutil.rmtree(dest, ignore_errors=True)
        work.rename(dest)
    trees = [d for d in dest.iterdir() if d.is_dir() and (d / "Makefile").is_file()]
    if len(trees) != 1:
        raise VmError(f"{dest}: expected one kernel tree, found {len(trees)}")
    return trees[0]
