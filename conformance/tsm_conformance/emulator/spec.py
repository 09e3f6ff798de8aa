"""``--emulate`` SPEC: ``CONFIG[:KEY=VALUE[,KEY=VALUE...]][@ERA][+QUIRK[,QUIRK...]]``.

CONFIG is a provider configuration (``tsm_test``, ``sev_guest``, ``sev_guest-svsm``,
``tdx_guest``, ``arm_cca_guest``); KEY=VALUE are provider parameters (tsm_test: the kernel
module's privlevel_floor, visibility, fail_errno, delay_ms, outblob_size, size_step, auxblob, manifestblob;
sev_guest: vmpl, ...) or emulator parameters
(gen_bits, init_on_alloc, size_fill_fix: a configfs with the size-then-fill race fixed); what each
accepts is in params.py and the providers' ``PARAMS``.  Example: ``sev_guest@6.16+stale-outblob``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..suggest import did_you_mean
from .era import DEFAULT_ERA, Era
from .params import validate
from .providers import CONFIGS
from .quirks import check_applicable

_SPEC = re.compile(r"^(?P<config>[a-z0-9_-]+)(?::(?P<params>[^@+]*))?(?:@(?P<era>[0-9.]+))?"
                   r"(?:\+(?P<quirks>[a-z0-9,-]+))?$")


@dataclass(frozen=True)
class Spec:
    config: str
    era: Era
    quirks: tuple[str, ...] = ()
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        s = self.config
        if self.params:
            s += ":" + ",".join(f"{k}={v}" for k, v in self.params.items())
        s += f"@{self.era.name}"
        if self.quirks:
            s += "+" + ",".join(self.quirks)
        return s


def parse_spec(text: str) -> Spec:
    """Parse and validate a SPEC; ValueError with a one-line reason otherwise."""
    m = _SPEC.match(text.strip())
    if not m:
        raise ValueError(f"bad --emulate spec {text!r}: expected PROVIDER[@ERA][+QUIRK[,QUIRK...]]")
    config = m["config"]
    if config not in CONFIGS:
        raise ValueError(f"unknown emulated provider '{config}'{did_you_mean(config, CONFIGS)} "
                         f"(known: {', '.join(CONFIGS)})")
    era = Era.parse(m["era"] or DEFAULT_ERA)
    first = Era.parse(CONFIGS[config][2])
    if era.version < first.version:
        raise ValueError(f"{config} does not exist before {first.name} (asked for {era.name})")
    params: dict[str, str] = {}
    for kv in filter(None, (m["params"] or "").split(",")):
        k, eq, v = kv.partition("=")
        if not eq:
            raise ValueError(f"bad parameter {kv!r} in spec: expected KEY=VALUE")
        if k in params:
            raise ValueError(f"parameter {k} given twice in spec {text!r}")
        params[k] = v
    cls, fixed, _ = CONFIGS[config]
    validate(config, cls.PARAMS, params)
    cls.check_params({**fixed, **params}, era)
    quirks = tuple(filter(None, (m["quirks"] or "").split(",")))
    check_applicable(config, list(quirks))
    return Spec(config, era, quirks, params)
