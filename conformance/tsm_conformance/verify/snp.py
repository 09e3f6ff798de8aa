"""Verification of an SEV-SNP report against its certificate table and the user's trust anchors.

Steps (AMD 56860 signature format; AMD 57230 "VCEK Certificate and KDS Interface" for the chain):
  report.signature  the report's SIGNING_KEY names the VCEK or VLEK; that certificate's P-384 key
                    must verify ECDSA-SHA384 over [0, 0x2A0) with R and S read little-endian.
  chain.vcek        the VCEK/VLEK certificate is signed by the ASK (for a VLEK, the ASVK, which the
                    table carries under the ASK GUID).
  chain.ask         the ASK is signed by the ARK (from the table, else an anchor certificate whose
                    subject is the ASK's issuer).
  anchor            the key that signed the ASK (or the ASK, or the VCEK itself) is an anchor.
Real AMD ARK/ASK certificates are RSA-4096 with RSASSA-PSS/SHA-384; the emulator's are ECDSA.
Certificate signatures are checked with whatever algorithm the certificate names.

Without anchors, "anchor" is unsupported and never passes; the chain steps still check what the
table carries (a self-consistent but untrusted chain is not a verified one).  Validity dates and
revocation are not checked.  Nothing here raises on bad input: each step turns an exception into
"fail" with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..formats.snp import ECDSA_P384_SHA384, SnpReport
from ..formats.snp_certs import CertTable
from .base import Status, TrustAnchors, Verification


def verify_report(report: SnpReport, certs: CertTable | None, anchors: TrustAnchors) -> Verification:
    v = Verification()
    leaf_name = _leaf_name(report)
    leaf = certs.certificate(leaf_name) if certs and leaf_name else None
    ask = certs.certificate("ask") if certs else None
    _step(v, "report.signature", lambda: _report_signature(report, certs, leaf_name, leaf))
    root_key: list[PublicKeyTypes] = []  # the key that verified the ASK, once it has
    _step(v, "chain.ask", lambda: _chain_ask(ask, certs, anchors, root_key))
    _step(v, "chain.vcek", lambda: _chain_leaf(leaf_name, leaf, ask))
    _step(v, "anchor", lambda: _anchor(v, anchors, leaf, ask, root_key))
    return v


Result = tuple[Status, str]


def _step(v: Verification, name: str, fn: Callable[[], Result]) -> None:
    try:
        status, detail = fn()
    except Exception as e:  # never raise on hostile input: a crash is a failed step
        status, detail = "fail", f"{type(e).__name__}: {e}"
    v.add(name, status, detail)


def _leaf_name(report: SnpReport) -> str | None:
    """The certificate the report says signed it; VCEK when SIGNING_KEY is reserved."""
    if report.signing_key == 1:
        return "vlek"
    if report.signing_key == 7:
        return None
    return "vcek"


def _report_signature(report: SnpReport, certs: CertTable | None, name: str | None,
                      leaf: x509.Certificate | None) -> Result:
    if name is None:
        return "fail", "SIGNING_KEY is 7: the firmware did not sign this report"
    if report.signature_algo != ECDSA_P384_SHA384:
        return "fail", f"signature_algo {report.signature_algo} is not 1 (ECDSA P-384 SHA-384)"
    if leaf is None:
        where = "no certificate table" if not certs or not certs.entries else "the table has none"
        return "unsupported", f"report signed by the {name.upper()}; {where}"
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        return "fail", f"{name.upper()} key is not EC P-384"
    r, s = report.signature_rs
    try:
        key.verify(encode_dss_signature(r, s), report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return "fail", f"signature does not verify with the {name.upper()} key"
    return "pass", f"ECDSA P-384 SHA-384 by the {name.upper()} ({_cn(leaf)})"


def _chain_leaf(name: str | None, leaf: x509.Certificate | None, ask: x509.Certificate | None) -> Result:
    if leaf is None or name is None:
        return "unsupported", "no VCEK/VLEK certificate"
    if ask is None:
        return "unsupported", f"no ASK certificate to check the {name.upper()} against"
    return _signed_by(leaf, ask.public_key(), f"{name.upper()} by ASK ({_cn(ask)})")


def _chain_ask(ask: x509.Certificate | None, certs: CertTable | None, anchors: TrustAnchors,
               root_key: list[PublicKeyTypes]) -> Result:
    if ask is None:
        return "unsupported", "no ASK certificate"
    ark = certs.certificate("ark") if certs else None
    if ark is None:
        ark = next((c for c in anchors.certificates if c.subject == ask.issuer), None)
        if ark is None:
            return "unsupported", "no ARK in the table or among the anchors"
    status, detail = _signed_by(ask, ark.public_key(), f"ASK by ARK ({_cn(ark)})")
    if status == "pass":
        root_key.append(ark.public_key())
    return status, detail


def _anchor(v: Verification, anchors: TrustAnchors, leaf: x509.Certificate | None,
            ask: x509.Certificate | None, root_key: list[PublicKeyTypes]) -> Result:
    if not anchors:
        return "unsupported", "no trust anchors given"
    if v.status_of("chain.vcek") == "fail" or v.status_of("chain.ask") == "fail":
        return "fail", "the certificate chain is broken"
    if root_key and anchors.trusts_key(root_key[0]):
        return _needs_links(v, ("chain.vcek",), "ARK is a trust anchor")
    if ask is not None and anchors.trusts_key(ask.public_key()):
        return _needs_links(v, ("chain.vcek",), "ASK is a trust anchor")
    if leaf is not None and anchors.trusts_key(leaf.public_key()):
        return "pass", "the VCEK/VLEK itself is a trust anchor"
    if not root_key and ask is None and leaf is None:
        return "unsupported", "no certificates to chain to an anchor"
    return "fail", "no certificate in the chain is, or is signed by, a trust anchor"


def _needs_links(v: Verification, steps: tuple[str, ...], ok: str) -> Result:
    missing = [s for s in steps if v.status_of(s) != "pass"]
    if missing:
        return "unsupported", f"{ok}, but {', '.join(missing)} did not pass"
    return "pass", ok


def _signed_by(cert: x509.Certificate, key: Any, what: str) -> Result:
    """Verify `cert`'s signature with `key`, using the algorithm the certificate names."""
    sig, tbs, h = cert.signature, cert.tbs_certificate_bytes, cert.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad = cert.signature_algorithm_parameters
            if not isinstance(pad, (padding.PSS, padding.PKCS1v15)) or h is None:
                return "fail", f"{what}: RSA key but the certificate names {cert.signature_algorithm_oid._name}"
            key.verify(sig, tbs, pad, h)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if h is None:
                return "fail", f"{what}: EC key but no hash algorithm named"
            key.verify(sig, tbs, ec.ECDSA(h))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(sig, tbs)
        else:
            return "fail", f"{what}: unsupported issuer key type {type(key).__name__}"
    except InvalidSignature:
        return "fail", f"{what}: signature does not verify"
    except (ValueError, TypeError) as e:  # key and signature algorithm do not match
        return "fail", f"{what}: {e}"
    return "pass", what


def _cn(cert: x509.Certificate) -> str:
    try:
        attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else cert.subject.rfc4514_string()
    except Exception:
        return "?"
