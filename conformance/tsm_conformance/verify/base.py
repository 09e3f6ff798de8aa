"""Verification results and trust anchors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ..inputs import TRUST_ANCHOR_MAX, read_bounded

Status = Literal["pass", "fail", "unsupported"]


@dataclass(frozen=True)
class Step:
    name: str  # e.g. "report.signature", "chain.ask_by_ark"
    status: Status
    detail: str = ""


@dataclass
class Verification:
    steps: list[Step] = field(default_factory=list)

    def add(self, name: str, status: Status, detail: str = "") -> Step:
        s = Step(name, status, detail)
        self.steps.append(s)
        return s

    @property
    def ok(self) -> bool:
        """No step failed (unsupported steps are not failures)."""
        return all(s.status != "fail" for s in self.steps)

    def status_of(self, name: str) -> Status | None:
        for s in self.steps:
            if s.name == name:
                return s.status
        return None


@dataclass(frozen=True)
class TrustAnchors:
    """Roots the user trusts: X.509 certificates (AMD ARK, Intel SGX root CA) and bare public keys
    (an Arm CCA platform attestation key)."""

    certificates: tuple[x509.Certificate, ...] = ()
    public_keys: tuple[PublicKeyTypes, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.certificates or self.public_keys)

    def merged(self, other: TrustAnchors) -> TrustAnchors:
        return TrustAnchors(self.certificates + other.certificates, self.public_keys + other.public_keys)

    def trusts_key(self, key: PublicKeyTypes) -> bool:
        """Is `key` one of the anchors (as a bare key or as an anchor certificate's key)?"""
        want = _spki(key)
        return any(_spki(c.public_key()) == want for c in self.certificates) or \
            any(_spki(k) == want for k in self.public_keys)


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_anchors(paths: list[Path] | tuple[Path, ...]) -> TrustAnchors:
    """PEM files holding certificates and/or public keys.  Raises ValueError naming the file (an
    ``inputs.InputError`` for one that is not a regular file or is larger than
    ``inputs.TRUST_ANCHOR_MAX``, refused before it is read whole)."""
    out = TrustAnchors()
    for p in paths:
        data = read_bounded(p, TRUST_ANCHOR_MAX, "trust anchor")
        try:
            got = anchors_from_pem([data])
        except (ValueError, UnsupportedAlgorithm) as e:
            raise ValueError(f"{p}: {' '.join(str(e).split())}") from None
        if not got:
            raise ValueError(f"{p}: no PEM CERTIFICATE or PUBLIC KEY block")
        out = out.merged(got)
    return out


def _pem_blocks(data: bytes) -> list[bytes]:
    out, cur = [], None
    for line in data.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN "):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.startswith(b"-----END "):
                out.append(b"".join(cur))
                cur = None
    return out


def anchors_from_pem(pems: list[bytes] | tuple[bytes, ...]) -> TrustAnchors:
    """Anchors from in-memory PEM blobs (the emulator's roots)."""
    certs: list[x509.Certificate] = []
    keys: list[PublicKeyTypes] = []
    for data in pems:
        for block in _pem_blocks(data):
            head = block.split(b"\n", 1)[0]
            if b"CERTIFICATE" in head:
                certs.append(x509.load_pem_x509_certificate(block))
            elif b"PUBLIC KEY" in head:
                keys.append(serialization.load_pem_public_key(block))
    return TrustAnchors(tuple(certs), tuple(keys))
