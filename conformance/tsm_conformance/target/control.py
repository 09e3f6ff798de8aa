"""Provider control: load, unload and re-parameterise the tsm_test provider under a tree.

Only a VM with the tsm_test module (ModuleControl) or the emulator (in target/emulated.py) can do
this; the provider-lifecycle checks skip as unsupported elsewhere.  ModuleControl uses the
finit_module/delete_module syscalls directly so the kernel's errno (EBUSY, EINVAL) reaches the check.
"""

from __future__ import annotations

import ctypes
import os
from typing import Protocol

SYS_FINIT_MODULE = 313  # x86_64
SYS_DELETE_MODULE = 176
O_NONBLOCK = os.O_NONBLOCK


class ProviderControl(Protocol):
    base: dict[str, str]

    def load(self, params: dict[str, str] | None = None) -> None:
        """Register tsm_test with the base parameters overridden by ``params``; OSError(errno)."""

    def unload(self) -> None: ...
    def set_param(self, name: str, value: str) -> None:
        """A runtime-writable module parameter (fail_errno, delay_ms, outblob_size, ...)."""

    def loaded(self) -> bool: ...


class HostControl(Protocol):
    """The host behind a provider (VMM, firmware), told to fail or stall: only the emulator's
    (target/emulated.py EmulatedHost); a real host cannot be told."""

    def set_param(self, name: str, value: str) -> None:
        """A host behaviour, e.g. ``quote_status=error`` (the provider's HOST_PARAMS)."""

    def restore(self) -> None:
        """Back to how the run began."""


class ModuleControl:
    def __init__(self, ko: str, base: dict[str, str], name: str = "tsm_test") -> None:
        self.ko, self.base, self.name = ko, dict(base), name
        self._libc = ctypes.CDLL(None, use_errno=True)

    def _sys(self, *args: object) -> None:
        if self._libc.syscall(*args) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

    def load(self, params: dict[str, str] | None = None) -> None:
        p = {**self.base, **(params or {})}
        text = " ".join(f"{k}={v}" for k, v in p.items()).encode()
        fd = os.open(self.ko, os.O_RDONLY)
        try:
            self._sys(ctypes.c_long(SYS_FINIT_MODULE), ctypes.c_int(fd), ctypes.c_char_p(text), ctypes.c_int(0))
        finally:
            os.close(fd)

    def unload(self) -> None:
        self._sys(ctypes.c_long(SYS_DELETE_MODULE), ctypes.c_char_p(self.name.encode()), ctypes.c_int(O_NONBLOCK))

    def set_param(self, name: str, value: str) -> None:
        with open(f"/sys/module/{self.name}/parameters/{name}", "w") as f:
            f.write(value)

    def loaded(self) -> bool:
        return os.path.isdir(f"/sys/module/{self.name}")
