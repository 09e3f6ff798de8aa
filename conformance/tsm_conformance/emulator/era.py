"""Kernel eras: which configfs-tsm behaviour a given kernel version has (docs/abi.md §0)."""

from __future__ import annotations

from dataclasses import dataclass

KNOWN_ERAS = ("6.7", "6.11", "6.13", "6.16", "7.0")
DEFAULT_ERA = "7.0"


@dataclass(frozen=True)
class Era:
    version: tuple[int, int]

    @classmethod
    def parse(cls, text: str) -> Era:
        parts = text.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"era {text!r} is not MAJOR.MINOR (known: {', '.join(KNOWN_ERAS)})")
        v = (int(parts[0]), int(parts[1]))
        if v < (6, 7):
            raise ValueError(f"era {text}: configfs-tsm first appeared in 6.7")
        return cls(v)

    @property
    def name(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def visibility_hooks(self) -> bool:
        """6.11 (20dfee959364): one attribute table + provider is_visible hooks; before it,
        the provider picked the default or the extra config_item_type at registration."""
        return self.version >= (6, 11)

    @property
    def provider_refcount_fix(self) -> bool:
        """6.16 (fba4ceaa242d): ENXIO instead of NULL derefs / ENOTTY, EBUSY re-register."""
        return self.version >= (6, 16)

    @property
    def blob_max(self) -> int:
        """TSM_(REPORT_)OUTBLOB_MAX: 32 KiB, 16 MiB from 7.0 (9342bf3d670b)."""
        return 16 << 20 if self.version >= (7, 0) else 32 << 10

    @property
    def core_module(self) -> str:
        return "tsm_report" if self.version >= (6, 16) else "tsm"

    def release(self) -> str:
        return f"{self.name}.0-tsm-emulated"
