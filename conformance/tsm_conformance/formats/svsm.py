"""SVSM attestation (the sev_guest manifestblob when service_provider=svsm), from AMD "Secure VM
Service Module for SEV-SNP Guests" (document 58019 rev. 1.00), chapter 7, cross-checked against
coconut-svsm (kernel/src/protocols/attest.rs) and google/go-sev-guest (abi/abi_svsm.go).

Two calls, chosen by the kernel from service_guid (docs/abi.md §5.1):

* SVSM_ATTEST_SERVICES (null service_guid): the manifest is the services manifest, table 12:
    00 GUID 63849ebb-3d92-4670-a1ff-58f9c94b87bb   10 total size u32   14 number of services u32
    18 per service, 24 bytes: {service GUID[16], data offset u32, data size u32}
    then the service data.  Offsets count from the start of the manifest.
  GUIDs here are in the mixed-endian (little-endian first three fields) order of Linux `guid_t`
  and UEFI, not RFC 4122 order: both implementations write `to_bytes_le`.  A service without a
  manifest of its own is listed with empty data.
* SVSM_ATTEST_SINGLE_SERVICE (service_guid set, with service_manifest_version): the manifest is
  that service's own manifest (for the vTPM, GUID c476f1eb-0123-45a5-9641-b4e7dde5bfe3, its
  manifest per §8), opaque here.  coconut-svsm accepts only manifest version 0.

In both, the SVSM requests a VMPL0 ATTESTATION_REPORT whose REPORT_DATA is
SHA-512(nonce || manifest) (58019 §7, "page 29" in coconut's citation); `report_data_binding`
computes it.  The nonce is the 64-byte inblob.

Decisions: `parse_manifest` parses only the services manifest (the single-service form has no
common layout); the total size must equal the input length (go-sev-guest and coconut agree:
the SVSM returns exactly that many bytes); entries must point after the entry table and inside
the input; a service GUID may not repeat.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from .base import ParseError, Reader

FMT = "svsm-manifest"
ENTRY_SIZE = 24
SERVICES_MANIFEST_GUID = "63849ebb-3d92-4670-a1ff-58f9c94b87bb"
VTPM_SERVICE_GUID = "c476f1eb-0123-45a5-9641-b4e7dde5bfe3"
KNOWN_SERVICES = {VTPM_SERVICE_GUID: "vtpm"}
_MANIFEST_GUID_LE = uuid.UUID(SERVICES_MANIFEST_GUID).bytes_le


@dataclass(frozen=True)
class ServiceEntry:
    guid: str
    name: str | None
    offset: int
    size: int
    data: bytes


@dataclass(frozen=True)
class ServicesManifest:
    guid: str
    size: int
    services: tuple[ServiceEntry, ...]

    def service(self, guid: str) -> ServiceEntry | None:
        return next((s for s in self.services if s.guid == guid.lower()), None)


def report_data_binding(nonce: bytes, manifest: bytes) -> bytes:
    """The REPORT_DATA an SVSM report must carry: SHA-512(nonce || manifest)."""
    return hashlib.sha512(bytes(nonce) + bytes(manifest)).digest()


def binds(report_data: bytes, nonce: bytes, manifest: bytes) -> bool:
    return bytes(report_data) == report_data_binding(nonce, manifest)


def sniff(data: bytes) -> bool:
    return len(data) >= ENTRY_SIZE and bytes(data[:16]) == _MANIFEST_GUID_LE


def parse_manifest(data: bytes) -> ServicesManifest:
    r = Reader(FMT, data)
    head = r.bytes(0, 16, "manifest GUID")
    if head != _MANIFEST_GUID_LE:
        raise ParseError(FMT, f"header GUID {uuid.UUID(bytes_le=head)} is not the services manifest "
                              f"GUID {SERVICES_MANIFEST_GUID} (a single-service manifest has no "
                              "common layout)", 0)
    size, count = r.u32(16, "total size"), r.u32(20, "number of services")
    if size != len(r.data):
        raise ParseError(FMT, f"total size field {size} but the manifest is {len(r.data)} bytes", 16)
    table_end = ENTRY_SIZE * (1 + count)
    r.need(0, table_end, f"header and {count} service entries")
    services: list[ServiceEntry] = []
    for i in range(count):
        services.append(_entry(r, ENTRY_SIZE * (1 + i), table_end, services))
    return ServicesManifest(SERVICES_MANIFEST_GUID, size, tuple(services))


def _entry(r: Reader, pos: int, table_end: int, seen: list[ServiceEntry]) -> ServiceEntry:
    guid = str(uuid.UUID(bytes_le=r.bytes(pos, 16, "service GUID")))
    off, n = r.u32(pos + 16, "data offset"), r.u32(pos + 20, "data size")
    if any(s.guid == guid for s in seen):
        raise r.error(f"service {guid} listed twice", pos)
    if n and off < table_end:
        raise r.error(f"service {guid} data offset {off:#x} is inside the entry table "
                      f"(ends {table_end:#x})", pos)
    r.need(off, n, f"service {guid} data")
    return ServiceEntry(guid, KNOWN_SERVICES.get(guid), off, n, r.data[off:off + n])
