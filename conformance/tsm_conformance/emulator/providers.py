"""Emulated report providers: tsm_test plus placeholder sev_guest, tdx_guest and arm_cca_guest.

Each provider's rules (name, floor, visibility, inblob length, what the report binds) come from
shared/abi.md §5.  The report layouts other than tsm_test are placeholders with the real offsets of
the fields the checks look at; real formats come with the formats work.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import time
import uuid
from dataclasses import dataclass, field

# Attribute order of enum tsm_attr_index / tsm_bin_attr_index (include/linux/tsm.h, 6.11+).
TEXT_ATTRS = ("generation", "provider", "privlevel", "privlevel_floor", "service_provider",
              "service_guid", "service_manifest_version")
BIN_ATTRS = ("inblob", "outblob", "auxblob", "manifestblob")
# 6.7-6.10: the provider chose one of two config_item_types at registration.
DEFAULT_TYPE = ("generation", "provider", "inblob", "outblob")
EXTRA_TYPE = DEFAULT_TYPE + ("privlevel", "privlevel_floor", "auxblob")
SERVICE_ATTRS = ("service_provider", "service_guid", "service_manifest_version", "manifestblob")


@dataclass
class Desc:
    """struct tsm_report_desc as report_new sees it."""

    privlevel: int = 0
    inblob: bytearray = field(default_factory=lambda: bytearray(64))  # never cleared (verified N1)
    inblob_len: int = 0
    service_provider: bytes | None = None
    service_guid: bytes = bytes(16)
    service_manifest_version: int = 0

    def nonce(self) -> bytes:
        return bytes(self.inblob[: self.inblob_len])


@dataclass
class Blobs:
    outblob: bytes | None
    auxblob: bytes | None = None
    manifestblob: bytes | None = None


class Provider:
    """Base: a registered tsm_report_ops."""

    name = "?"
    extra_type = True  # 6.7-6.10 config type

    def __init__(self, params: dict[str, str] | None = None) -> None:
        self.params = dict(params or {})
        self.calls = 0  # report_new call counter, provider-wide
        self.privlevel_floor = 0
        self.quirks: frozenset[str] = frozenset()

    # 6.11+ visibility hooks; None means "no hook" (everything visible)
    def attr_visible(self, attr: str) -> bool | None:
        return None

    def report_new(self, desc: Desc) -> Blobs:
        raise NotImplementedError

    def anchor_pems(self) -> list[bytes]:
        """The PEM roots (certificates or public keys) that verify this provider's reports."""
        return []

    def _tag(self, n: int) -> bytes:
        """Bytes that differ per report, standing in for a fresh signature."""
        return hashlib.sha512(f"{self.name}:{n}".encode()).digest()

    def _need_len(self, desc: Desc, lo: int, hi: int) -> None:
        if "short-inblob-accepted" in self.quirks:
            return
        if not lo <= desc.inblob_len <= hi:
            raise OSError(errno.EINVAL, "Invalid argument")


def _int(params: dict[str, str], key: str, default: int) -> int:
    return int(params.get(key, str(default)), 0)


class TsmTest(Provider):
    """The project's test provider.  Report layout (little-endian), shared with the kernel module:

    0x00 "TSMT" | 0x04 u32 layout 1 | 0x08 u32 outblob length | 0x0C u32 report_new counter
    0x10 u32 privlevel | 0x14 u32 inblob_len | 0x18 u32 service_manifest_version
    0x1C u32 flags (bit0: service_provider set) | 0x20 service_guid[16] | 0x30 reserved[16]
    0x40 inblob[64] (first inblob_len bytes, zero-padded) | 0x80 service_provider[64] (NUL-padded)
    0xC0.. padding to outblob_size: byte i = (i*31 + counter) & 0xff
    """

    name = "tsm_test"
    LAYOUT_LEN = 0xC0

    def __init__(self, params: dict[str, str] | None = None) -> None:
        super().__init__(params)
        # parameter names and defaults are the kernel module's (kmod/tsm_test)
        self.privlevel_floor = _int(self.params, "privlevel_floor", 1)
        self.visibility = self.params.get("visibility", "all")
        if self.visibility not in ("all", "sev-like", "tdx-like"):
            raise ValueError(f"tsm_test visibility={self.visibility}: use all, sev-like or tdx-like")
        self.extra_type = self.visibility != "tdx-like"
        self.fail_errno = _int(self.params, "fail_errno", 0)
        self.outblob_size = _int(self.params, "outblob_size", self.LAYOUT_LEN)
        self.with_auxblob = self.params.get("auxblob", "1") not in ("0", "N", "n")
        self.with_manifestblob = self.params.get("manifestblob", "1") not in ("0", "N", "n")
        unknown = set(self.params) - {"privlevel_floor", "visibility", "fail_errno", "outblob_size", "auxblob",
                                      "manifestblob", "delay_ms"}
        if unknown:
            raise ValueError(f"unknown tsm_test parameter(s): {', '.join(sorted(unknown))}")

    RUNTIME = ("fail_errno", "delay_ms", "outblob_size", "auxblob", "manifestblob")  # the 0644 params

    def set_param(self, name: str, value: str) -> None:
        """Writing /sys/module/tsm_test/parameters/NAME (only the 0644 ones)."""
        if name not in self.RUNTIME:
            raise PermissionError(errno.EACCES, f"{name} is read-only")
        self.params[name] = value
        self.fail_errno = _int(self.params, "fail_errno", 0)
        self.outblob_size = _int(self.params, "outblob_size", self.LAYOUT_LEN)
        self.with_auxblob = self.params.get("auxblob", "1") not in ("0", "N", "n")
        self.with_manifestblob = self.params.get("manifestblob", "1") not in ("0", "N", "n")

    def attr_visible(self, attr: str) -> bool | None:
        if self.visibility == "all":
            return None
        allowed = EXTRA_TYPE if self.visibility == "sev-like" else DEFAULT_TYPE
        return attr in allowed

    def report_new(self, desc: Desc) -> Blobs:
        delay = _int(self.params, "delay_ms", 0)
        if delay:  # called under tsm_rwsem held for write, like the module's msleep()
            time.sleep(delay / 1000)
        if self.fail_errno:
            raise OSError(abs(self.fail_errno), os.strerror(abs(self.fail_errno)))
        self.calls += 1
        n = self.calls
        size = max(self.outblob_size, self.LAYOUT_LEN)
        out = bytearray(size)
        privlevel = 0 if "vmpl-ignored" in self.quirks else desc.privlevel
        nonce = b"" if "nonce-ignored" in self.quirks else desc.nonce()
        sp = desc.service_provider
        struct.pack_into("<4sIIIIIII", out, 0, b"TSMT", 1, size, n, privlevel, desc.inblob_len,
                         desc.service_manifest_version, 1 if sp is not None else 0)
        out[0x20:0x30] = desc.service_guid
        out[0x40:0x40 + len(nonce)] = nonce
        if sp:
            out[0x80:0x80 + min(len(sp), 63)] = sp[:63]
        if size > self.LAYOUT_LEN:  # byte i = (i*31 + n) & 0xff has period 256: tile one period
            period = bytes((i * 31 + n) & 0xFF for i in range(256))
            out[self.LAYOUT_LEN:] = (period * (size // 256 + 1))[self.LAYOUT_LEN:size]
        aux = struct.pack("<4sI", b"TSMA", n) if self.with_auxblob else None
        man = struct.pack("<4sI", b"TSMM", n) if self.with_manifestblob else None
        return Blobs(bytes(out), aux, man)


# SEV-SNP certificate table GUIDs, RFC 4122 byte order as hosts write them (abi.md §5.1).
VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes


class SevGuest(Provider):
    """sev_guest (abi.md §5.1): floor = vmpck_id (the guest's VMPL) from 6.11, 0 before; inblob
    exactly 64 bytes at read time; service_* and manifestblob only under an SVSM (vmpl != 0)."""

    name = "sev_guest"
    extra_type = True
    REPORT_LEN = 0x4A0

    def __init__(self, params: dict[str, str] | None = None, hooks: bool = True) -> None:
        super().__init__(params)
        self.vmpl = _int(self.params, "vmpl", 0)
        self.privlevel_floor = self.vmpl if hooks else 0

    def attr_visible(self, attr: str) -> bool | None:
        if attr in SERVICE_ATTRS:
            return self.vmpl != 0 or "service-attrs-leak" in self.quirks
        return True

    def _report(self, n: int, vmpl: int, report_data: bytes) -> bytes:
        r = bytearray(self.REPORT_LEN)
        struct.pack_into("<IIQ", r, 0, 2, 0, 0x30000)
        struct.pack_into("<II", r, 0x30, vmpl, 1)
        r[0x50:0x50 + len(report_data)] = report_data
        r[0x90:0xC0] = hashlib.sha384(b"emulated launch measurement").digest()
        tag = self._tag(n)
        r[0x140:0x160] = tag[:32]  # report_id
        r[0x1A0:0x1E0] = hashlib.sha512(b"emulated chip").digest()
        r[0x2A0:0x2E0] = tag  # placeholder signature R
        return bytes(r)

    def _certs(self) -> bytes:
        cert = b"placeholder VCEK certificate"
        table = VCEK_GUID + struct.pack("<II", 48, len(cert)) + bytes(24)
        return table + cert

    def report_new(self, desc: Desc) -> Blobs:
        self._need_len(desc, 64, 64)
        if desc.service_provider is not None:
            if desc.service_provider != b"svsm" and "service-provider-any" not in self.quirks:
                raise OSError(errno.EINVAL, "Invalid argument")
            self.calls += 1
            manifest = b"SVSM-MANIFEST" + desc.service_guid + struct.pack(
                "<I", desc.service_manifest_version)
            data = hashlib.sha512(desc.nonce() + manifest).digest()
            return Blobs(self._report(self.calls, self.vmpl, data), self._certs(), manifest)
        self.calls += 1
        vmpl = 0 if "vmpl-ignored" in self.quirks else desc.privlevel
        nonce = b"" if "nonce-ignored" in self.quirks else desc.nonce()
        return Blobs(self._report(self.calls, vmpl, nonce), self._certs(), None)


class TdxGuest(Provider):
    """tdx_guest (abi.md §5.2): default type / four attributes; inblob exactly 64 bytes; the quote
    carries REPORTDATA at 0x238.  Placeholder quote v4 of the minimum size 0x3FC."""

    name = "tdx_guest"
    extra_type = False
    QUOTE_LEN = 0x3FC

    def attr_visible(self, attr: str) -> bool | None:
        if "tdx-privlevel-visible" in self.quirks and attr == "privlevel":
            return True
        return attr in DEFAULT_TYPE

    def report_new(self, desc: Desc) -> Blobs:
        self._need_len(desc, 64, 64)
        self.calls += 1
        q = bytearray(self.QUOTE_LEN)
        struct.pack_into("<HHI", q, 0, 4, 2, 0x81)
        q[0x0C:0x1C] = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
        nonce = b"" if "nonce-ignored" in self.quirks else desc.nonce()
        q[0x238:0x238 + len(nonce)] = nonce
        struct.pack_into("<I", q, 0x278, self.QUOTE_LEN - 0x27C)
        q[0x27C:0x2BC] = self._tag(self.calls)[:64]
        return Blobs(bytes(q))


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    return bytes([major << 5 | 26]) + n.to_bytes(4, "big")


def _bstr(b: bytes) -> bytes:
    return _cbor_head(2, len(b)) + b


class ArmCcaGuest(Provider):
    """arm_cca_guest (abi.md §5.3): no hooks (all attributes); challenge 32..64 bytes, zero-padded
    to 64; privlevel and service_* ignored; auxblob/manifestblob empty.  Placeholder token: CBOR
    tag 399 {44234: platform bstr, 44241: realm bstr {10: challenge}}."""

    name = "arm_cca_guest"

    def report_new(self, desc: Desc) -> Blobs:
        self._need_len(desc, 32, 64)
        self.calls += 1
        nonce = b"" if "nonce-ignored" in self.quirks else desc.nonce()
        challenge = nonce.ljust(64, b"\0")
        realm = _cbor_head(5, 2) + _cbor_head(0, 10) + _bstr(challenge) + \
            _cbor_head(0, 44) + _bstr(self._tag(self.calls))
        platform = _cbor_head(5, 1) + _cbor_head(0, 10) + _bstr(self._tag(-self.calls)[:32])
        token = bytes([0xD9, 0x01, 0x8F]) + _cbor_head(5, 2) + \
            bytes([0x19]) + (44234).to_bytes(2, "big") + _bstr(platform) + \
            bytes([0x19]) + (44241).to_bytes(2, "big") + _bstr(realm)
        return Blobs(token)


#: Emulator configurations by spec name: (provider class, fixed params, first era).
CONFIGS: dict[str, tuple[type[Provider], dict[str, str], str]] = {
    "tsm_test": (TsmTest, {}, "6.7"),
    "sev_guest": (SevGuest, {}, "6.7"),
    "sev_guest-svsm": (SevGuest, {"vmpl": "2"}, "6.11"),
    "tdx_guest": (TdxGuest, {}, "6.7"),
    "arm_cca_guest": (ArmCcaGuest, {}, "6.13"),
}
