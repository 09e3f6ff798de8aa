"""EmulatedTree: the Tree protocol over the in-process emulator."""

from __future__ import annotations

from ..emulator import Kernel, Spec, boot, parse_spec
from .base import Stat


class EmulatedTree:
    kind = "emulated"

    def __init__(self, spec: Spec | str, kernel: Kernel | None = None) -> None:
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self.kernel = kernel if kernel is not None else boot(self.spec)
        k = self.kernel
        # Bind the hot paths once: the suite's overhead per operation should be one call.
        self.mkdir, self.rmdir, self.listdir = k.mkdir, k.rmdir, k.listdir
        self.open, self.close, self.read, self.pread = k.open, k.close, k.read, k.pread
        self.write, self.pwrite, self.lseek = k.write, k.pwrite, k.lseek

    def describe(self) -> str:
        return f"emulated {self.spec}"

    def kernel_release(self) -> str:
        return self.spec.era.release()

    def hints(self) -> dict[str, int]:
        """Facts a live tree cannot tell; checks use them only to decide applicability."""
        return {"generation_bits": self.kernel.gen_bits}

    def stat(self, path: str) -> Stat:
        mode, size = self.kernel.stat(path)
        return Stat(mode, size)
