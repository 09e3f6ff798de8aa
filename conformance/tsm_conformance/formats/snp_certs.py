"""The SEV-SNP certificate table (the sev_guest auxblob), from the GHCB specification (AMD
document 56421, SNP extended guest request) and docs/abi.md §5.1.

The table is a run of 24-byte entries {GUID[16], offset u32, length u32}, ended by an all-zero
entry.  Offsets count from the start of the table and point at certificate data after the table.
GUIDs are in RFC 4122 byte order (how hosts write them with libuuid; go-sev-guest and virtee/sev
agree).  Known GUIDs: VCEK 63da758d-e664-4564-adc5-f4b93be8accd, VLEK
a8074bc2-a25a-483e-aae6-39c045a0b8a1, ASK 4ab7b379-bbac-4fe4-a02f-05aef327c782 (also used for the
ASVK that signs VLEKs), ARK c0b406a4-a803-4952-9743-3fb6014cd0ae.

Decisions:
  * empty input is a valid, empty table (the host sent no certificates; the kernel's auxblob is
    then 0 bytes).  A lone terminator is also an empty table.
  * no terminator before the data runs out, a terminator whose offset/length are not zero, an
    entry whose data starts inside the table or ends past the input, and a GUID that appears
    twice (which certificate would count?) are ParseErrors.
  * the data of a known GUID must be one DER X.509 certificate (ParseError otherwise).  Unknown
    GUIDs are kept and reported with name None; their data is not interpreted.
  * two entries may share bytes, and bytes after the last entry's data are allowed: neither makes
    the table ambiguous.  `data_end` says where referenced data ends, for a check to compare
    with the blob length (the kernel copies exactly [0, max(offset + length))).
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from .base import ParseError, Reader

FMT = "snp-certs"
ENTRY_SIZE = 24

KNOWN_GUIDS: dict[str, str] = {
    "63da758d-e664-4564-adc5-f4b93be8accd": "vcek",
    "a8074bc2-a25a-483e-aae6-39c045a0b8a1": "vlek",
    "4ab7b379-bbac-4fe4-a02f-05aef327c782": "ask",
    "c0b406a4-a803-4952-9743-3fb6014cd0ae": "ark",
}
GUID_OF = {name: guid for guid, name in KNOWN_GUIDS.items()}


@dataclass(frozen=True)
class CertEntry:
    guid: str
    name: str | None  # 'vcek' | 'vlek' | 'ask' | 'ark' | None for an unknown GUID
    offset: int
    length: int
    data: bytes
    subject: str | None = None  # of the parsed certificate, for display
    _certificate: x509.Certificate | None = field(default=None, repr=False, compare=False)

    @property
    def certificate(self) -> x509.Certificate | None:
        return self._certificate


@dataclass(frozen=True)
class CertTable:
    entries: tuple[CertEntry, ...] = ()
    table_len: int = 0  # bytes of entries including the terminator (0 for empty input)
    data_end: int = 0   # max(offset + length) over the entries, or table_len

    def entry(self, name: str) -> CertEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def certificate(self, name: str) -> x509.Certificate | None:
        """The parsed certificate for 'vcek', 'vlek', 'ask' or 'ark', if the table has it."""
        e = self.entry(name)
        return e.certificate if e else None


def _entries(r: Reader) -> list[tuple[int, bytes, int, int]]:
    """(entry offset, GUID bytes, offset, length) up to, not including, the terminator."""
    out: list[tuple[int, bytes, int, int]] = []
    pos = 0
    while True:
        if pos + ENTRY_SIZE > len(r.data):
            raise r.error(f"no all-zero terminator entry within {len(r.data)} bytes", pos)
        guid, off, length = r.bytes(pos, 16, "GUID"), r.u32(pos + 16, "offset"), r.u32(pos + 20, "length")
        if not any(guid):
            if off or length:
                raise r.error(f"terminator (null GUID) with offset {off:#x} length {length:#x}", pos)
            return out
        out.append((pos, guid, off, length))
        pos += ENTRY_SIZE


def _load_cert(r: Reader, name: str, data: bytes, at: int) -> x509.Certificate:
    try:
        with warnings.catch_warnings():
            # AMD's KDS issues VCEKs with serial number 0, which cryptography warns about.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(data)
        cert.public_key()  # parsing is lazy in places; force the part verification needs
        return cert
    except Exception as e:  # any failure to read the DER is malformed input
        raise r.error(f"{name} data is not a DER X.509 certificate ({e})", at) from None


def _subject(cert: x509.Certificate) -> str | None:
    try:
        return cert.subject.rfc4514_string()
    except Exception:  # an odd but parseable name must not fail the table
        return None


def parse_cert_table(data: bytes) -> CertTable:
    r = Reader(FMT, data)
    if not r.data:
        return CertTable()
    raw = _entries(r)
    table_len = (len(raw) + 1) * ENTRY_SIZE
    seen: set[str] = set()
    entries: list[CertEntry] = []
    for pos, gbytes, off, length in raw:
        guid = str(uuid.UUID(bytes=gbytes))
        if guid in seen:
            raise r.error(f"GUID {guid} appears twice", pos)
        seen.add(guid)
        if off < table_len:
            raise r.error(f"entry {guid} data offset {off:#x} is inside the table (ends {table_len:#x})", pos)
        if off + length > len(r.data):
            raise r.error(f"entry {guid} data [{off:#x}, {off + length:#x}) is past the end "
                          f"({len(r.data):#x})", pos)
        blob = r.data[off:off + length]
        name = KNOWN_GUIDS.get(guid)
        cert = _load_cert(r, name, blob, off) if name else None
        entries.append(CertEntry(guid, name, off, length, blob, _subject(cert) if cert else None, cert))
    end = max([table_len] + [e.offset + e.length for e in entries])
    return CertTable(tuple(entries), table_len, end)


def sniff(data: bytes) -> bool:
    """Cheap structural look: well-formed entries and a terminator, no certificate parsing."""
    if len(data) < ENTRY_SIZE:
        return False
    try:
        raw = _entries(Reader(FMT, data))
    except ParseError:
        return False
    table_len = (len(raw) + 1) * ENTRY_SIZE
    return bool(raw) and all(off >= table_len and off + n <= len(data) for _, _, off, n in raw)
