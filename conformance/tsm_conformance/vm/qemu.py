"""Boot a kernel under QEMU with the host root (read-only) and a results directory over 9p."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from .kernel import VmError


def qemu_command(image: Path, initrd: Path, results: Path, accel: str = "tcg", memory: str = "1G",
                 append: str = "") -> list[str]:
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise VmError("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
    return [
        qemu, "-M", "q35", "-accel", accel, "-cpu", "max", "-smp", "2", "-m", memory,
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
