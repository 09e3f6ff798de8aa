"""Where the guest kernel comes from: Debian packages unpacked into a cache, or a given build."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Progress = Callable[[str], None]
# Debian kernel packages that carry files (the 7.x split layout included); never the generic
# `linux-base` tool package.
_KERNEL_PKG = re.compile(r"^linux-(image|binary|modules|headers|kbuild|base)-\d")


class VmError(Exception):
    """A one-line reason the VM run cannot proceed (exit 2)."""


def last_line(text: str | None) -> str:
    """A failed tool's last line of output, for a one-line VmError (apt, dpkg, tar, debootstrap)."""
    lines = (text or "").strip().splitlines()
    return lines[-1].strip() if lines else "(no output)"


@dataclass(frozen=True)
class KernelTree:
    release: str
    image: Path  # bzImage
    modules: Path  # the lib/modules/<release> directory
    headers: Path  # the kbuild directory to build external modules against
    source: Path | None = None  # the source tree it was built from (vm --kernel-tree), if any

    @property
    def version(self) -> tuple[int, int]:
        m = re.match(r"(\d+)\.(\d+)", self.release)
        return (int(m[1]), int(m[2])) if m else (0, 0)


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise VmError(f"{cmd[0]} not found: run on a Debian-like host (apt-get, dpkg)") from None
    if p.returncode:
        raise VmError(f"{' '.join(cmd[:3])}...: {last_line(p.stderr or p.stdout)}")
    return p.stdout


def _depends(pkg: str, apt: list[str]) -> list[str]:
    out = _run(["apt-cache", *apt, "show", "--no-all-versions", pkg])
    deps = []
    for line in out.splitlines():
        if line.startswith(("Depends:", "Pre-Depends:")):
            for alt in line.split(":", 1)[1].split(","):
                deps.append(alt.split("|")[0].strip().split(" ")[0])
    return deps


def resolve_packages(package: str, apt: list[str]) -> list[str]:
    """The image package and everything kernel-shaped it pulls in, plus the matching headers."""
    want, todo = [], [package]
    while todo:
        p = todo.pop()
        if p in want:
            continue
        want.append(p)
        todo += [d for d in _depends(p, apt) if _KERNEL_PKG.match(d)]
    images = [p for p in want if re.match(r"^linux-image-\d.*-(amd64|cloud-amd64|rt-amd64)$", p)]
    if images and not any(p.startswith("linux-headers-") for p in want):
        headers = "linux-headers-" + images[-1].removeprefix("linux-image-")
        if subprocess.run(["apt-cache", *apt, "show", "--no-all-versions", headers],
                          capture_output=True).returncode:
            raise VmError(f"{headers} is not in the archive (backports keep headers only for their newest "
                          "kernel): pick a kernel whose headers are published")
        todo = [headers]
        while todo:
            p = todo.pop()
            if p not in want:
                want.append(p)
                todo += [d for d in _depends(p, apt) if _KERNEL_PKG.match(d)]
    return want


def _find_tree(root: Path) -> KernelTree:
    mods = [d for base in ("lib/modules", "usr/lib/modules") for d in (root / base).glob("*") if d.is_dir()
            and (d / "kernel").is_dir()]
    if len(mods) != 1:
        raise VmError(f"{root}: expected one kernel module tree, found {len(mods)}")
    mdir = mods[0]
    rel = mdir.name
    image = next((p for p in (root / "boot" / f"vmlinuz-{rel}", mdir / "vmlinuz") if p.exists()), None)
    if image is None:
        raise VmError(f"{root}: no vmlinuz for {rel}")
    headers = root / "usr" / "src" / f"linux-headers-{rel}"
    if not headers.is_dir():
        raise VmError(f"{root}: no headers for {rel} (linux-headers-{rel})")
    return KernelTree(rel, image, mdir, headers)


def _relocate_headers(root: Path, headers: Path) -> None:
    """Debian's flavour Makefile names /usr/src/... by absolute path (the common Makefile it
    includes; from 7.x also KBUILD_OUTPUT): point those into the cache."""
    mk = headers / "Makefile"
    text = mk.read_text()
    fixed = re.sub(r"(?<![\w/])/usr/src/", f"{root}/usr/src/", text)
    if fixed != text:
        mk.write_text(fixed)


def newest_with_headers(pattern: str, apt: list[str]) -> str:
    """``linux-image-7.*-amd64`` -> the newest matching image whose headers are published (suites
    such as backports drop older kernels' headers, so a pinned name goes stale)."""
    names = _run(["apt-cache", *apt, "pkgnames", "linux-image-"]).split()
    cands = [n for n in names if fnmatch.fnmatch(n, pattern) and re.search(r"-\d", n)
             and not any(f"-{fl}-" in n and f"-{fl}-" not in pattern for fl in ("rt", "cloud", "dbg", "unsigned"))
             and not n.endswith(("-dbg", "-unsigned"))]
    key = lambda n: [int(x) for x in re.findall(r"\d+", n.removeprefix("linux-image-"))[:3]]  # noqa: E731
    for n in sorted(cands, key=key, reverse=True):
        headers = "linux-headers-" + n.removeprefix("linux-image-")
        shown = subprocess.run(["apt-cache", *apt, "show", "--no-all-versions", headers], capture_output=True)
        if shown.returncode == 0:
            return n
    raise VmError(f"no kernel matching {pattern} with published headers")


def from_deb(package: str, cache: Path, progress: Progress, apt: list[str] | None = None) -> KernelTree:
    apt = apt or []
    if any(ch in package for ch in "*?["):
        package = newest_with_headers(package, apt)
        progress(f"newest match: {package}")
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    progress(f"resolve {package}")
    pkgs = resolve_packages(package, apt)
    have = {f.name.split("_")[0]: f for f in debs.glob("*.deb")}
    missing = [p for p in pkgs if p not in have]
    if missing:
        progress(f"download {' '.join(missing)}")
        _run(["apt-get", *apt, "download", *missing], cwd=debs)
        have = {f.name.split("_")[0]: f for f in debs.glob("*.deb")}
    files = [have[p] for p in pkgs if p in have]
    key = "+".join(sorted(f.name for f in files))
    root = cache / "kernels" / re.sub(r"[^A-Za-z0-9.+_-]", "_", package)
    stamp = root / ".unpacked"
    if not stamp.exists() or stamp.read_text() != key:
        progress(f"unpack {len(files)} packages")
        # dpkg -x creates only the last path component, so the parents must exist; unpack beside
        # the final place and rename, so an interrupted unpack never looks complete.
        work = root.with_name(root.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for f in files:
            _run(["dpkg", "-x", str(f), str(work)])
        (work / ".unpacked").write_text(key)
        shutil.rmtree(root, ignore_errors=True)
        work.rename(root)
    tree = _find_tree(root)
    _relocate_headers(root, tree.headers)
    return tree


def from_paths(image: str, modules: str, headers: str) -> KernelTree:
    img, mods, hdr = Path(image), Path(modules), Path(headers)
    for p, what in ((img, "--kernel"), (mods, "--modules"), (hdr, "--headers")):
        if not p.exists():
            raise VmError(f"{what} {p} does not exist")
    if not (mods / "kernel").is_dir():
        cand = [d for d in mods.glob("lib/modules/*") if (d / "kernel").is_dir()]
        if len(cand) != 1:
            raise VmError(f"--modules {mods}: give lib/modules/<release> (or a dir holding exactly one)")
        mods = cand[0]
    return KernelTree(mods.name, img, mods, hdr)
