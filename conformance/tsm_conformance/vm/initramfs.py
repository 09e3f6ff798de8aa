"""The guest's initramfs: busybox, the 9p modules to reach the host root, the tsm core and the provider.

The host's /tmp stays visible (read-only) in the guest: a checkout or venv may live there.  The
guest's writable places are tmpfs /run (TMPDIR=/run/tmp) and the results share at /run/tsm-results.

Modules are decompressed here (busybox insmod cannot read .ko.xz) and loaded in dependency order
computed from each module's .modinfo ``depends=`` (no depmod, no kmod needed on the host).
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import shutil
from pathlib import Path

from .cpio import Newc
from .kernel import KernelTree, Progress, VmError

BOOT_MODULES = ("9pnet_virtio", "9p")  # plus their dependencies (netfs, 9pnet)
INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /tsm/boot.order); do insmod /tsm/$m.ko || echo "tsm-vm: insmod $m failed"; done
mkdir -p /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /newroot || echo "tsm-vm: no host root"
mount -t proc proc /newroot/proc; mount -t sysfs sys /newroot/sys; mount -t devtmpfs dev /newroot/dev
# devtmpfs lacks what udev adds: the kselftest runner writes everything to /dev/stdout
ln -s /proc/self/fd /newroot/dev/fd; for i in 0:stdin 1:stdout 2:stderr; do ln -s /proc/self/fd/${i%:*} /newroot/dev/${i#*:}; done
mount -t tmpfs run /newroot/run
mkdir -p /newroot/run/tsm-results /newroot/run/tmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /newroot/run/tsm-results || echo "tsm-vm: no results share"
mount --bind /tsm /newroot/mnt
echo "tsm-vm: guest up"
chroot /newroot /bin/sh /run/tsm-results/guest.sh
echo "tsm-vm: guest script exit status $?"
sync
echo o > /proc/sysrq-trigger
sleep 5
"""  # noqa: E501 (the guest's init script: each mount stays one line)


def _norm(name: str) -> str:
    return name.replace("-", "_")


def module_index(modules: Path) -> dict[str, Path]:
    return {_norm(p.name.split(".ko")[0]): p for p in modules.rglob("*.ko*")}


def builtin(modules: Path) -> set[str]:
    f = modules / "modules.builtin"
    if not f.exists():
        return set()
    return {_norm(Path(line.strip()).name.split(".ko")[0]) for line in f.read_text().splitlines()}


def read_ko(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        raise VmError(f"{path.name}: zstd-compressed modules are not supported yet")
    return data


def depends(ko: bytes) -> list[str]:
    i = ko.find(b"\0depends=")
    if i < 0:
        return []
    val = ko[i + 9:ko.index(b"\0", i + 9)].decode()
    return [_norm(d) for d in val.split(",") if d]


def load_order(names: list[str], index: dict[str, Path], built_in: set[str]) -> list[tuple[str, bytes]]:
    """Modules to insmod, dependencies first; built-in ones skipped."""
    out: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen or n in built_in:
            return
        seen.add(n)
        if n not in index:
            raise VmError(f"module {n} is neither in the module tree nor built in")
        data = read_ko(index[n])
        for d in depends(data):
            visit(d)
        out.append((n, data))
    for n in names:
        visit(_norm(n))
    return out


def core_module(tree: KernelTree, index: dict[str, Path], built_in: set[str]) -> str:
    """tsm (6.7-6.15) or tsm_report (6.16+); see docs/abi.md §0."""
    for n in ("tsm_report", "tsm"):
        if n in index or n in built_in:
            return n
    raise VmError(f"{tree.release}: no configfs-tsm core module (CONFIG_TSM_REPORTS)")


def build_initramfs(tree: KernelTree, provider_ko: Path, cache: Path, progress: Progress) -> tuple[Path, list[str]]:
    """The cpio.gz and the guest-side load order of configfs + core (the provider comes last,
    as /mnt/NAME.ko)."""
    busybox = shutil.which("busybox")
    if not busybox:
        raise VmError("busybox not found: apt-get install busybox-static")
    index, built_in = module_index(tree.modules), builtin(tree.modules)
    core = core_module(tree, index, built_in)
    boot = load_order(list(BOOT_MODULES), index, built_in)
    later = [m for m in load_order(["configfs", core], index, built_in) if m[0] not in {b[0] for b in boot}]
    bb = Path(busybox).read_bytes()
    pko = provider_ko.read_bytes()
    names = " ".join(n for n, _ in boot + later)
    h = hashlib.sha256(INIT.encode() + bb + pko + provider_ko.name.encode() + tree.release.encode()
                       + names.encode()).hexdigest()[:16]
    out = cache / "initramfs" / f"{tree.release}-{h}.cpio.gz"
    if not out.exists():
        progress("build initramfs")
        c = Newc()
        for d in ("bin", "dev", "proc", "sys", "tsm", "newroot"):
            c.dir(d)
        c.file("bin/busybox", bb, 0o755)
        c.file("tsm/busybox", bb, 0o755)
        c.file("init", INIT.encode(), 0o755)
        for name, data in boot + later:
            c.file(f"tsm/{name}.ko", data)
        c.file(f"tsm/{_norm(provider_ko.name.removesuffix('.ko'))}.ko", pko)
        c.file("tsm/boot.order", " ".join(n for n, _ in boot).encode() + b"\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(c.gz())
    return out, [n for n, _ in later]
