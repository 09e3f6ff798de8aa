"""In-process emulator of the kernel's configfs + configfs-tsm report core (see kernel.py)."""

from __future__ import annotations

from .era import Era
from .kernel import Kernel, KernelOops
from .providers import CONFIGS, Provider
from .quirks import QUIRKS
from .params import EMULATOR as EMULATOR_PARAMS, as_bool, to_int
from .spec import Spec, parse_spec


def boot(spec: Spec | str) -> Kernel:
    """A kernel at the spec's era with the spec's provider registered."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    # parse_spec checked every value against params.py's tables
    k = Kernel(spec.era, frozenset(spec.quirks), gen_bits=to_int(spec.params.get("gen_bits", "64")),
               init_on_alloc=as_bool(spec.params.get("init_on_alloc", "1")),
               size_fill_fix=as_bool(spec.params.get("size_fill_fix", "0")),
               client_fault=spec.params.get("client_fault", "none"))
    provider = _provider(spec)
    if provider is not None:
        k.register(provider)
    return k


def reboot(kernel: Kernel, spec: Spec) -> None:
    """``kernel``, booted from ``spec``, back to the state ``boot(spec)`` leaves (Kernel.reset,
    with a fresh provider)."""
    kernel.reset(_provider(spec))


def _provider(spec: Spec) -> Provider | None:
    """A new provider as the spec configures it; None for registered=0 (the core loaded, no
    provider: mkdir ENXIO)."""
    cls, fixed, _ = CONFIGS[spec.config]
    params = {**fixed, **{k: v for k, v in spec.params.items() if k not in EMULATOR_PARAMS}}
    provider: Provider = cls(params, era=spec.era)
    return provider if as_bool(spec.params.get("registered", "1")) else None


__all__ = ["Era", "Kernel", "KernelOops", "Spec", "parse_spec", "boot", "reboot", "QUIRKS", "CONFIGS"]
