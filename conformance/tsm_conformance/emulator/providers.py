"""Emulated report providers: tsm_test plus placeholder sev_guest, tdx_guest and arm_cca_guest.

Each provider's rules (name, floor, visibility, inblob length, what the report binds) come from
docs/abi.md §5.  The report layouts other than tsm_test are placeholders with the real offsets of
the fields the checks look at; real formats come with the formats work.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import time
from dataclasses import dataclass, field

from .era import DEFAULT_ERA, Era
from .measurements import MrGroup, register
from .params import HOUR_MS, Bool, Choice, Int, Param, as_bool, to_int

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
    PARAMS: dict[str, Param] = {}  # what ``--emulate NAME:KEY=VALUE`` accepts (params.py checks it)
    #: The host (VMM, firmware) behaviours a check may change at run time through set_param
    #: (target/emulated.py EmulatedHost); none: nothing can tell this provider's host anything.
    HOST_PARAMS: tuple[str, ...] = ()

    def __init__(self, params: dict[str, str] | None = None, era: Era | None = None) -> None:
        self.params = dict(params or {})
        self.era = era or Era.parse(DEFAULT_ERA)
        self.calls = 0  # report_new call counter, provider-wide
        self.privlevel_floor = 0
        self.quirks: frozenset[str] = frozenset()

    @classmethod
    def check_params(cls, params: dict[str, str], era: Era) -> None:
        """ValueError (one line) when the parameters together describe no machine that exists or
        no kernel that would register the provider; each value alone was checked by params.py."""

    @classmethod
    def legal_params(cls, fixed: dict[str, str], era: Era) -> list[dict[str, str]]:
        """Every configuration the field has for this provider (module parameters, firmware and
        host states) at ``era``: the faithful emulator must pass its profile on each
        (tests/unit/test_quirk_matrix.py).  ``fixed`` are the configuration's own parameters."""
        return [dict(fixed)]

    # 6.11+ visibility hooks; None means "no hook" (everything visible).  The answers may depend
    # only on the class, ``params`` and ``quirks``: the kernel keeps them per configuration.
    def attr_visible(self, attr: str) -> bool | None:
        return None

    def report_new(self, desc: Desc) -> Blobs:
        raise NotImplementedError

    def anchor_pems(self) -> list[bytes]:
        """The PEM roots (certificates or public keys) that verify this provider's reports."""
        return []

    def set_param(self, name: str, value: str) -> None:
        """A run-time parameter: a module's 0644 parameter (TsmTest), a host behaviour (HOST_PARAMS);
        a provider without any refuses every name."""
        raise PermissionError(errno.EACCES, f"{name} cannot be changed at run time")

    def _need_len(self, desc: Desc, lo: int, hi: int) -> None:
        if "short-inblob-accepted" in self.quirks:
            return
        if not lo <= desc.inblob_len <= hi:
            raise OSError(errno.EINVAL, "Invalid argument")


def _int(params: dict[str, str], key: str, default: int) -> int:
    return to_int(params.get(key, str(default)))


class TsmTest(Provider):
    """The project's test provider.  Report layout (little-endian), shared with the kernel module:

    0x00 "TSMT" | 0x04 u32 layout 1 | 0x08 u32 outblob length | 0x0C u32 report_new counter
    0x10 u32 privlevel | 0x14 u32 inblob_len | 0x18 u32 service_manifest_version
    0x1C u32 flags (bit0: service_provider set) | 0x20 service_guid[16] | 0x30 reserved[16]
    0x40 inblob[64] (first inblob_len bytes, zero-padded) | 0x80 service_provider[64] (NUL-padded)
    0xC0.. padding to outblob_size + (counter % 8) * size_step: byte i = (i*31 + counter) & 0xff
    """

    name = "tsm_test"
    LAYOUT_LEN = 0xC0
    PARAMS = {  # the kernel module's parameters (kmod/tsm_test), same names, types and defaults
        "privlevel_floor": Int(0, 3), "visibility": Choice("all", "sev-like", "tdx-like"),
        "fail_errno": Int(-4095, 4095), "delay_ms": Int(0, HOUR_MS), "outblob_size": Int(0, 0xFFFFFFFF),
        "size_step": Int(0, 0xFFFFFFFF), "auxblob": Bool(), "manifestblob": Bool(),
        "refuse_below_floor": Bool("report_new fails EINVAL below privlevel_floor, as SNP firmware does"),
        "measurements": Bool("a measurement-register group (6.16+, docs/abi-measurements.md)"),
    }

    def __init__(self, params: dict[str, str] | None = None, era: Era | None = None) -> None:
        super().__init__(params, era)
        # parameter names and defaults are the kernel module's (kmod/tsm_test)
        self.privlevel_floor = _int(self.params, "privlevel_floor", 1)
        self.visibility = self.params.get("visibility", "all")
        self.extra_type = self.visibility != "tdx-like"
        self.fail_errno = _int(self.params, "fail_errno", 0)
        self.outblob_size = _int(self.params, "outblob_size", self.LAYOUT_LEN)
        self.with_auxblob = as_bool(self.params.get("auxblob", "1"))
        self.with_manifestblob = as_bool(self.params.get("manifestblob", "1"))
        self.refuse_below_floor = as_bool(self.params.get("refuse_below_floor", "0"))
        self.mr = self._measurements() if self.era.version >= (6, 16) and \
            as_bool(self.params.get("measurements", "1")) else None

    @classmethod
    def check_params(cls, params: dict[str, str], era: Era) -> None:
        if "measurements" in params and era.version < (6, 16):
            raise ValueError(f"tsm_test measurements needs 6.16+: the module has that parameter only where the "
                             f"kernel has tsm-mr, not {era.name}")

    def _measurements(self) -> MrGroup:
        """The module's group (kmod/tsm_test): two fixed registers and two RTMRs of different
        sizes and hashes, each starting as the module's do."""
        return MrGroup([register("mrconfig", 48, None, b"tsm_test mrconfig"),
                        register("mrstatic", 48, "sha384", b"tsm_test mrstatic"),
                        register("rtmr0", 48, "sha384", writable=True, live=True),
                        register("rtmr1", 32, "sha256", writable=True, live=True)], lambda: self.quirks)

    @classmethod
    def legal_params(cls, fixed: dict[str, str], era: Era) -> list[dict[str, str]]:
        """Each floor, with and without the firmware-like refusal below it (the VM tier runs the
        module at floor 0 and at floor 2 with refusal).  Visibility is not varied: each setting is
        a different attribute set, which the tsm_test profile pins to "all"."""
        return [{**fixed, "privlevel_floor": str(f), "refuse_below_floor": str(r)}
                for f in range(4) for r in (0, 1) if f or not r]

    RUNTIME = ("fail_errno", "delay_ms", "outblob_size", "size_step", "auxblob", "manifestblob")  # the 0644 ones

    def set_param(self, name: str, value: str) -> None:
        """Writing /sys/module/tsm_test/parameters/NAME (only the 0644 ones)."""
        if name not in self.RUNTIME:
            raise PermissionError(errno.EACCES, f"{name} is read-only")
        if not self.PARAMS[name].check(value):
            raise OSError(errno.EINVAL, f"{name}={value}: expected {self.PARAMS[name].describe()}")
        self.params[name] = value
        self.fail_errno = _int(self.params, "fail_errno", 0)
        self.outblob_size = _int(self.params, "outblob_size", self.LAYOUT_LEN)
        self.with_auxblob = as_bool(self.params.get("auxblob", "1"))
        self.with_manifestblob = as_bool(self.params.get("manifestblob", "1"))

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
        if self.refuse_below_floor and desc.privlevel < self.privlevel_floor \
                and "vmpl-rule-unchecked" not in self.quirks:
            raise OSError(errno.EINVAL, "Invalid argument")  # as SNP firmware's INVALID_PARAM
        self.calls += 1
        n = self.calls
        # size_step: consecutive reports differ in length (the size-then-fill race needs that to show)
        size = max(self.outblob_size, self.LAYOUT_LEN) + (n % 8) * _int(self.params, "size_step", 0)
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
        if aux is not None and self.mr is not None:  # the registers as the report sees them
            aux += b"".join(self.mr.snapshot().values())
        man = struct.pack("<4sI", b"TSMM", n) if self.with_manifestblob else None
        return Blobs(bytes(out), aux, man)


class SevGuest(Provider):
    """sev_guest (docs/providers.md, docs/abi.md §5.1): inblob exactly 64 bytes at read time; service_*
    and manifestblob only under an SVSM (vmpl != 0).  Reports are signed ATTESTATION_REPORTs
    (emulator/reports/snp.py).

    The floor and the firmware's VMPL rule: the driver talks to the firmware with VMPCK
    ``vmpck_id`` (-1, the default from 6.11: the VMPL the guest runs at; 6.7-6.10: a uint, default
    0).  The firmware refuses MSG_REPORT_REQ whose VMPL is below that key's VMPL (status
    INVALID_PARAM, which sev-guest returns as EINVAL).  From 6.11 privlevel_floor is vmpck_id
    (614dc0fb7632); before, it is a constant 0, so a guest with vmpck_id != 0 advertises a floor
    its firmware refuses.  The keys below the VMPL the guest runs at are zero in its secrets page,
    and sev-guest does not probe with an empty VMPCK: vmpck_id < vmpl is no machine.

    Parameters: vmpl (the VMPL the guest runs at; non-zero means under an SVSM), vmpck_id, certs
    (0: the host has no certificates, auxblob reads empty), signing_key (vcek | vlek),
    report_version (2 | 3 | 5: what the emulated firmware produces)."""

    name = "sev_guest"
    extra_type = True
    PARAMS = {"vmpl": Int(0, 3), "vmpck_id": Int(-1, 3), "certs": Bool(), "signing_key": Choice("vcek", "vlek"),
              "report_version": Choice("2", "3", "5")}

    def __init__(self, params: dict[str, str] | None = None, era: Era | None = None) -> None:
        super().__init__(params, era)
        self.vmpl = _int(self.params, "vmpl", 0)
        vmpck = _int(self.params, "vmpck_id", -1)
        self.vmpck_id = self.vmpl if vmpck < 0 else vmpck
        self.floor_is_vmpck = self.era.visibility_hooks  # 614dc0fb7632 came with the 6.11 SVSM series
        self.with_certs = as_bool(self.params.get("certs", "1"))
        self.signing_key = self.params.get("signing_key", "vcek")
        self.report_version = _int(self.params, "report_version", 2)

    @property
    def privlevel_floor(self) -> int:
        return self.vmpck_id if self.floor_is_vmpck and "floor-const-zero" not in self.quirks else 0

    @privlevel_floor.setter
    def privlevel_floor(self, value: int) -> None:
        pass  # fixed at probe from vmpck_id (the base class's constructor assigns a default)

    @classmethod
    def check_params(cls, params: dict[str, str], era: Era) -> None:
        vmpl, vmpck = _int(params, "vmpl", 0), _int(params, "vmpck_id", -1)
        if vmpl and not era.visibility_hooks:
            raise ValueError(f"sev_guest vmpl={vmpl} needs an SVSM-aware kernel (6.11+), not {era.name}")
        if 0 <= vmpck < vmpl:
            raise ValueError(f"sev_guest vmpck_id={vmpck} with vmpl={vmpl}: the guest's VMPCK{vmpck} is "
                             "zeroed, so sev-guest would not probe (use vmpck_id -1 or vmpl..3)")
        if "vmpck_id" in params and vmpck < 0 and not era.visibility_hooks:
            raise ValueError("sev_guest vmpck_id=-1 needs 6.11+ (before, vmpck_id is a uint, default 0)")

    @classmethod
    def legal_params(cls, fixed: dict[str, str], era: Era) -> list[dict[str, str]]:
        """Each VMPL the configuration allows, each VMPCK the guest holds there (-1 only from
        6.11), and the host's certificate states.  Before 6.11 only vmpck_id 0: other keys give a
        floor the firmware refuses (the kernel bug 614dc0fb7632 fixed; test_quirk_matrix shows
        the suite flags it)."""
        vmpls = [int(fixed["vmpl"])] if "vmpl" in fixed else [0]
        if "vmpl" in fixed and era.visibility_hooks:
            vmpls = [1, 2, 3]  # an SVSM at VMPL 0 runs the guest at any lower-privileged level
        out = []
        for vmpl in vmpls:
            ids = ([-1] if era.visibility_hooks else []) + \
                  (list(range(vmpl, 4)) if era.visibility_hooks else [0])
            out += [{**fixed, "vmpl": str(vmpl), "vmpck_id": str(i)} for i in ids]
        base = out[0]
        out += [{**base, "certs": "0"}, {**base, "signing_key": "vlek"}]
        return out

    def attr_visible(self, attr: str) -> bool | None:
        if attr in SERVICE_ATTRS:
            return self.vmpl != 0 or "service-attrs-leak" in self.quirks
        return True

    def anchor_pems(self) -> list[bytes]:
        from .reports import snp
        return [snp.anchor_pem()]

    def _report(self, vmpl: int, report_data: bytes) -> bytes:
        from .reports import snp
        return snp.build_report(report_data=report_data, vmpl=vmpl, version=self.report_version,
                                counter=self.calls, key=self.signing_key,
                                corrupt_signature="report-signature-corrupt" in self.quirks)

    def _certs(self) -> bytes:
        if not self.with_certs:
            return b""  # the host sent no certificates: the kernel copies nothing
        from .reports import snp
        table = snp.cert_table(key=self.signing_key)
        return table[:len(table) // 2] if "snp-certs-truncated" in self.quirks else table

    def report_new(self, desc: Desc) -> Blobs:
        self._need_len(desc, 64, 64)
        if desc.service_provider is not None:
            if desc.service_provider != b"svsm" and "service-provider-any" not in self.quirks:
                raise OSError(errno.EINVAL, "Invalid argument")
            self.calls += 1
            return self._svsm(desc)
        if desc.privlevel < self.vmpck_id and "vmpl-rule-unchecked" not in self.quirks:
            raise OSError(errno.EINVAL, "Invalid argument")  # firmware: INVALID_PARAM
        self.calls += 1
        vmpl = 0 if "vmpl-ignored" in self.quirks else desc.privlevel
        nonce = b"" if "nonce-ignored" in self.quirks else desc.nonce()
        return Blobs(self._report(vmpl, nonce.ljust(64, b"\0")), self._certs(), None)

    def _svsm(self, desc: Desc) -> Blobs:
        """SVSM_ATTEST_SERVICES (null GUID) or _SINGLE_SERVICE: the SVSM, at VMPL 0, asks the
        firmware for a report over SHA-512(nonce || manifest); privlevel is ignored."""
        from .reports import snp
        guid = None if desc.service_guid == bytes(16) else desc.service_guid
        try:
            manifest = snp.svsm_manifest(guid, desc.service_manifest_version)
        except ValueError:  # the SVSM refused the service or version: "other SVSM failures give EINVAL"
            raise OSError(errno.EINVAL, "Invalid argument") from None
        nonce = desc.nonce()
        bound = hashlib.sha512(nonce).digest() if "svsm-manifest-unbound" in self.quirks \
            else snp.svsm_report_data(nonce, manifest)
        return Blobs(self._report(0, bound), self._certs(), manifest)


class TdxGuest(Provider):
    """tdx_guest (docs/abi.md §5.2): default type / four attributes; inblob exactly 64 bytes; the
    outblob is a signed quote (emulator/reports/tdx.py) from the emulated host.

    Host parameters (runtime, like a VMM's behaviour): quote_ms (how long the host takes),
    signal_ms (a signal reaches the reader after this long: EINTR, and the buffer stays IN_FLIGHT
    until the host finishes, so requests meanwhile get EBUSY), quote_status (ok | error: the host
    fails the quote: a 0-byte outblob before 7.0, EIO from 7.0), quote_version (4 | 5).

    The TDX module's answer to TDG.MR.REPORT (tdreport: ok | invalid_operand | operand_busy |
    error), which tdx_mcall_get_report0() maps to an errno that the read returns: before 6.16
    INVALID_OPERAND is EINVAL and everything else EIO; from 6.16 (the RTMR-extend series,
    2748566da8b0 in tsm.git) INVALID_OPERAND is ENXIO and OPERAND_BUSY (another vCPU holds the
    operand, e.g. an RTMR extend racing the quote) a retryable EBUSY.  busy_every=N makes every
    Nth TDREPORT busy: a machine whose agent extends RTMRs while quotes are taken."""

    name = "tdx_guest"
    extra_type = False
    HOST_PARAMS = ("quote_ms", "signal_ms", "quote_status", "quote_version", "tdreport", "busy_every")
    PARAMS = {"quote_ms": Int(0, HOUR_MS), "signal_ms": Int(0, HOUR_MS), "quote_status": Choice("ok", "error"),
              "quote_version": Choice("4", "5"),
              "tdreport": Choice("ok", "invalid_operand", "operand_busy", "error"),
              "busy_every": Int(0, 1000, "every Nth TDREPORT finds its operand busy (0: never)")}

    def __init__(self, params: dict[str, str] | None = None, era: Era | None = None) -> None:
        super().__init__(params, era)
        self.status_check = self.era.version >= (7, 0)
        self.in_flight_until = 0.0
        self.tdreports = 0
        self.mr = self._measurements() if self.era.version >= (6, 16) else None

    def _measurements(self) -> MrGroup:
        """tdx-guest's group (docs/abi-measurements.md §1a): the TD's build-time registers read-only,
        the four RTMRs extendable; the values a quote carries (emulator/reports/tdx.py)."""
        from .reports.tdx import initial_registers
        init = initial_registers()
        return MrGroup([register("mrconfigid", 48, None, init["mrconfigid"]),
                        register("mrowner", 48, None, init["mrowner"]),
                        register("mrownerconfig", 48, None, init["mrownerconfig"]),
                        register("mrtd", 48, "sha384", init["mrtd"]),
                        *(register(f"rtmr{i}", 48, "sha384", init[f"rtmr{i}"], writable=True, live=True)
                          for i in range(4))], lambda: self.quirks)

    @classmethod
    def check_params(cls, params: dict[str, str], era: Era) -> None:
        if _int(params, "busy_every", 0) and era.version < (6, 16):
            raise ValueError("tdx_guest busy_every needs 6.16+: RTMRs are extended from userspace "
                             f"only since tsm-mr (6.16), not {era.name}")

    @classmethod
    def legal_params(cls, fixed: dict[str, str], era: Era) -> list[dict[str, str]]:
        out = [dict(fixed), {**fixed, "quote_version": "5"}]
        if era.version >= (6, 16):
            out.append({**fixed, "busy_every": "3"})  # an agent extending RTMRs meanwhile
        return out

    def set_param(self, name: str, value: str) -> None:
        if name not in self.HOST_PARAMS:
            raise PermissionError(errno.EACCES, f"{name} is not a host parameter")
        if not self.PARAMS[name].check(value):
            raise OSError(errno.EINVAL, f"{name}={value}: expected {self.PARAMS[name].describe()}")
        self.params[name] = value

    def _tdreport(self) -> None:
        """TDG.MR.REPORT through tdx_mcall_get_report0()'s errno mapping."""
        self.tdreports += 1
        status = self.params.get("tdreport", "ok")
        every = _int(self.params, "busy_every", 0)
        if status == "ok" and every and self.tdreports % every == 0:
            status = "operand_busy"
        if status == "ok":
            return
        new = self.era.version >= (6, 16) and "tdreport-old-errnos" not in self.quirks
        if status == "invalid_operand":
            raise OSError(errno.ENXIO if new else errno.EINVAL, "TDCALL_INVALID_OPERAND")
        if status == "operand_busy" and new:
            raise OSError(errno.EBUSY, "TDCALL_OPERAND_BUSY")
        raise OSError(errno.EIO, "TDCALL failed")

    def attr_visible(self, attr: str) -> bool | None:
        if "tdx-privlevel-visible" in self.quirks and attr == "privlevel":
            return True
        return attr in DEFAULT_TYPE

    def anchor_pems(self) -> list[bytes]:
        from .reports import tdx
        return [tdx.anchor_pem()]

    def _wait_for_host(self) -> bool:
        """The 1 s poll loop, compressed: False if the host failed or never answered."""
        now = time.monotonic()
        quote_ms, signal_ms = _int(self.params, "quote_ms", 0), _int(self.params, "signal_ms", 0)
        if signal_ms and quote_ms > signal_ms:
            time.sleep(signal_ms / 1000)
            self.in_flight_until = now + quote_ms / 1000
            raise OSError(errno.EINTR, "Interrupted system call")
        if quote_ms:
            time.sleep(quote_ms / 1000)
        return self.params.get("quote_status", "ok") == "ok"

    def report_new(self, desc: Desc) -> Blobs:
        self._need_len(desc, 64, 64)
        if time.monotonic() < self.in_flight_until and "tdx-in-flight-ignored" not in self.quirks:
            raise OSError(errno.EBUSY, "Device or resource busy")  # the host still owns the buffer
        self._tdreport()  # TDG.MR.REPORT comes before the GetQuote hypercall
        ok = self._wait_for_host()
        self.calls += 1
        if not ok:
            if self.status_check and "tdx-failed-quote-empty" not in self.quirks:
                raise OSError(errno.EIO, "Input/output error")
            return Blobs(b"")  # out_len still 0: a successful, empty outblob (docs/abi.md §5.2)
        from .reports import tdx
        nonce = b"" if "nonce-ignored" in self.quirks else desc.nonce()
        q = tdx.build_quote(report_data=nonce.ljust(64, b"\0"), counter=self.calls,
                            registers=self.mr.snapshot() if self.mr is not None else None,
                            version=_int(self.params, "quote_version", 4),
                            tee_type=0 if "tdx-wrong-tee-type" in self.quirks else 0x81,
                            corrupt_signature="report-signature-corrupt" in self.quirks)
        return Blobs(q)


class ArmCcaGuest(Provider):
    """arm_cca_guest (docs/abi.md §5.3): no hooks (all attributes); challenge 32..64 bytes, zero-padded
    to 64 by the RMM; privlevel and service_* ignored; auxblob/manifestblob empty.  The outblob is
    a CCA token (emulator/reports/cca.py); parameter token = legacy (tag 399) | cmw."""

    name = "arm_cca_guest"
    PARAMS = {"token": Choice("legacy", "cmw")}

    @classmethod
    def legal_params(cls, fixed: dict[str, str], era: Era) -> list[dict[str, str]]:
        return [dict(fixed), {**fixed, "token": "cmw"}]  # what the RMM produces

    def anchor_pems(self) -> list[bytes]:
        from .reports import cca
        return [cca.anchor_pem()]

    def report_new(self, desc: Desc) -> Blobs:
        self._need_len(desc, 32, 64)
        self.calls += 1
        from .reports import cca
        nonce = b"" if "nonce-ignored" in self.quirks else desc.nonce()
        # quirk: the padding is left as whatever the buffer held instead of zeroes
        challenge = nonce.ljust(64, b"\xa5" if "cca-challenge-unpadded" in self.quirks else b"\0")
        token = cca.build_token(challenge=challenge, counter=self.calls,
                                cmw=self.params.get("token", "legacy") == "cmw",
                                corrupt_signature="report-signature-corrupt" in self.quirks)
        return Blobs(token, token[:64] if "cca-auxblob-filled" in self.quirks else None)


#: Emulator configurations by spec name: (provider class, fixed params, first era).
CONFIGS: dict[str, tuple[type[Provider], dict[str, str], str]] = {
    "tsm_test": (TsmTest, {}, "6.7"),
    "sev_guest": (SevGuest, {}, "6.7"),
    "sev_guest-svsm": (SevGuest, {"vmpl": "2"}, "6.11"),
    "tdx_guest": (TdxGuest, {}, "6.7"),
    "arm_cca_guest": (ArmCcaGuest, {}, "6.13"),
}
