"""Boot a kernel under QEMU with the host root (read-only) and a results directory over 9p."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .kernel import VmError


def choose_accel(image: Path, initrd: Path, cache: Path, progress: Callable[[str], None]) -> str:
    """KVM only when it really boots a guest here: /dev/kvm can exist yet fail (on this machine
    kind QEMU aborts on an MSR or hangs with a KVM internal error, docs/real-kernels.md, This machine kind).  The
    answer is probed once per kernel image and kept in the cache; otherwise TCG."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    stamp = cache / "kvm-probe" / image.name
    if stamp.exists():
        return stamp.read_text().strip()
    progress("probe KVM (once per kernel)")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        Path(d, "guest.sh").write_text("echo tsm-vm: kvm-ok\n")
        seen: list[str] = []
        cmd = qemu_command(image, initrd, Path(d), "kvm", cpu="host")
        rc, _ = run(cmd, Path(d, "console.log"), 60, seen.append)
    accel = "kvm" if rc == 0 and any("kvm-ok" in line for line in seen) else "tcg"
    stamp.write_text(accel + "\n")
    return accel


def qemu_command(image: Path, initrd: Path, results: Path, accel: str = "tcg", memory: str = "1G", cpu: str = "max",
                 append: str = "") -> list[str]:
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise VmError("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
    return [
        qemu, "-M", "q35", "-accel", accel, "-cpu", cpu if accel == "kvm" else "max", "-smp", "2", "-m", memory,
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=root,mount_tag=hostroot",
        "-fsdev", f"local,id=res,path={results},security_model=none,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=res,mount_tag=results",
        "-kernel", str(image), "-initrd", str(initrd),
        "-append", f"console=ttyS0 quiet panic=-1 oops=panic sysrq_always_enabled=1 {append}".strip(),
    ]


def run(cmd: list[str], console: Path, timeout: float, on_line: Callable[[str], None]) -> tuple[int | None, float]:
    """Run QEMU, copy the serial console to ``console`` and pass each line to ``on_line``.

    Returns (exit status or None on timeout, seconds)."""
    t0 = time.monotonic()
    with console.open("w", encoding="utf-8", errors="replace") as log:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def pump() -> None:
            assert p.stdout is not None
            for raw in p.stdout:
                line = raw.decode("utf-8", "replace").replace("\r", "")
                log.write(line)
                on_line(line.rstrip("\n"))
        th = threading.Thread(target=pump, daemon=True)
        th.start()
        try:
            rc: int | None = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = None
        th.join(5)
    return rc, time.monotonic() - t0
