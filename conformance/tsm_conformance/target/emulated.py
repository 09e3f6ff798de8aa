"""EmulatedTree: the Tree protocol over the in-process emulator."""

from __future__ import annotations


from typing import TYPE_CHECKING

from ..emulator import Kernel, Spec, boot, parse_spec, reboot
from .base import BoundOps, Stat, Tree

if TYPE_CHECKING:
    from ..emulator.measurements import MrGroup


class EmulatedTree(BoundOps, Tree):
    kind = "emulated"
    # The operations are bound per instance in __init__ to the kernel's own methods (BoundOps).

    def __init__(self, spec: Spec | str, kernel: Kernel | None = None) -> None:
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self.kernel = kernel if kernel is not None else boot(self.spec)
        k = self.kernel
        # Bind the hot paths once: the suite's overhead per operation should be one call.
        self.mkdir, self.rmdir, self.listdir = k.mkdir, k.rmdir, k.listdir
        self.open, self.close, self.read, self.pread = k.open, k.close, k.read, k.pread
        self.write, self.pwrite, self.lseek = k.write, k.pwrite, k.lseek

        self._mr: EmulatedMr | None = None
        self.control = EmulatedControl(self) if self.spec.config == "tsm_test" else None
        self.host = EmulatedHost(self) if k.provider is not None and k.provider.HOST_PARAMS else None

    def reboot(self) -> None:
        """The tree as a new ``EmulatedTree(spec)`` would be, without parsing or booting again: the
        same kernel reset, a fresh provider registered (``emulator.reboot``).  No other thread may
        still be inside the kernel."""
        reboot(self.kernel, self.spec)

    def describe(self) -> str:
        return f"emulated {self.spec}"

    def kernel_release(self) -> str:
        return self.spec.era.release()

    def hints(self) -> dict[str, int]:
        """Facts a live tree cannot tell; checks use them only to decide applicability."""
        return {"generation_bits": self.kernel.gen_bits}

    def trust_anchor_pems(self) -> list[bytes]:
        """The emulator's roots for the registered provider's reports (the Session's default anchors)."""
        p = self.kernel.provider
        return p.anchor_pems() if p is not None else []

    def stat(self, path: str) -> Stat:
        mode, size = self.kernel.stat(path)
        return Stat(mode, size)

    def measurements(self, where: str | None = None, counter: str | None = None) -> EmulatedMr | None:
        """The registered provider's group (emulator/measurements.py); one view per group, so its
        fds last as long as the provider does."""
        p = self.kernel.provider
        group = getattr(p, "mr", None)
        if group is None:
            return None
        if self._mr is None or self._mr.files.group is not group:
            self._mr = EmulatedMr(group, self.describe())
        return self._mr


class EmulatedMr:
    """MrTree over the emulator's group (its sysfs directory: MrFiles)."""

    def __init__(self, group: MrGroup, where: str) -> None:
        from ..emulator.measurements import MrFiles
        self.files = MrFiles(group)
        self.where = where
        f = self.files
        self.listdir, self.open, self.close, self.read, self.pread = f.listdir, f.open, f.close, f.read, f.pread
        self.write, self.pwrite, self.lseek = f.write, f.pwrite, f.lseek

    def describe(self) -> str:
        return f"{self.where}: measurements"

    def refreshes(self) -> int | None:
        return self.files.group.refreshes

    def stat(self, path: str) -> Stat:
        mode, size = self.files.stat(path)
        return Stat(mode, size)


class EmulatedControl:
    """ProviderControl over the emulator: register/unregister a TsmTest like insmod/rmmod would."""

    def __init__(self, tree: EmulatedTree) -> None:
        from ..emulator.params import EMULATOR as EMULATOR_PARAMS
        self.k = tree.kernel
        self.base = {k: v for k, v in tree.spec.params.items() if k not in EMULATOR_PARAMS}

    def load(self, params: dict[str, str] | None = None) -> None:
        from ..emulator.providers import TsmTest
        self.k.register(TsmTest({**self.base, **(params or {})}, era=self.k.era))

    def unload(self) -> None:
        self.k.unregister()

    def set_param(self, name: str, value: str) -> None:
        p = self.k.provider
        if p is None:
            raise FileNotFoundError(name)
        p.set_param(name, value)

    def loaded(self) -> bool:
        return self.k.provider is not None


class EmulatedHost:
    """The emulated VMM/firmware behind a provider (e.g. a TDX quoting host that fails or stalls)."""

    def __init__(self, tree: EmulatedTree) -> None:
        self.k = tree.kernel
        self.base = dict(self.k.provider.params) if self.k.provider else {}

    def set_param(self, name: str, value: str) -> None:
        if self.k.provider is None:
            raise FileNotFoundError(name)
        self.k.provider.set_param(name, value)

    def restore(self) -> None:
        p = self.k.provider
        if p is not None:
            for name in p.HOST_PARAMS:
                p.params.pop(name, None)
            p.params.update(self.base)
