"""Verification of a parsed TDX quote (ECDSA quote v4/v5 with QE report certification data).

Steps, in order (sources: Intel "TDX DCAP Quoting Library API" A.3/A.4; the QE report binding as
Intel's QuoteVerification checks it, SGXDataCenterAttestationPrimitives QuoteVerification):

* ``header.tee_type``: the quote says it is a TDX quote (tee_type 0x81).
* ``quote.signature``: the attestation key (P-256 point x||y) signs header+body with
  ECDSA-P256-SHA256; the signature is raw r||s.
* ``qe_report.binding``: QE report report_data[:32] == SHA-256(attestation_key || qe_auth_data)
  and report_data[32:] is zero.  This ties the attestation key to the QE.
* ``qe_report.signature``: the PCK leaf certificate's key signs the 384-byte QE report.
* ``pck.chain``: each certificate of the PCK chain is issued (name and signature) by the next,
  and the last one (the root CA, which Intel's chain always includes) is self-signed.
* ``anchor``: the chain's last certificate is (or is signed by) a trust anchor.

The first three are self-consistency and may pass without anchors.  The PCK steps rest on an
unanchored chain without anchors: they are then ``unsupported`` when they check out and ``fail``
when they do not (a broken signature is broken whoever is trusted).  Not checked: certificate
validity periods, CRLs, TCB levels and QE identity (they need Intel PCS collateral).

Never raises on bad input: an exception inside a step makes that step fail with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..formats.tdx import (CERT_TYPE_PCK_CHAIN, CERT_TYPE_QE_REPORT, TEE_TYPE_TDX, CertificationData,
                           SgxReportBody, TdxQuote)
from .base import Status, TrustAnchors, Verification


class _StepFailed(Exception):
    """A step's check did not hold (the message is the step detail)."""


def verify_quote(quote: TdxQuote, anchors: TrustAnchors) -> Verification:
    v = Verification()
    _run(v, "header.tee_type", lambda: _tee_type(quote))
    _run(v, "quote.signature", lambda: _quote_signature(quote))
    _run(v, "qe_report.binding", lambda: _binding(quote))
    chain: list[x509.Certificate] | None = None
    chain_error = ""
    try:
        chain = _load_chain(quote)
    except Exception as e:  # the chain steps below report it
        chain_error = f"{type(e).__name__}: {e}" if not isinstance(e, _StepFailed) else str(e)
    chain_steps: tuple[tuple[str, _ChainStep], ...] = (
        ("qe_report.signature", _qe_report_signature), ("pck.chain", _pck_chain), ("anchor", _anchor))
    for name, fn in chain_steps:
        if chain is None:
            v.add(name, "fail", f"PCK chain unusable: {chain_error}")
            continue
        _run(v, name, partial(fn, quote, chain, anchors), trust=True, anchors=anchors)
    return v


#: A step over the PCK chain (loaded once, in verify_quote).
_ChainStep = Callable[[TdxQuote, list[x509.Certificate], TrustAnchors], str]


def _run(v: Verification, name: str, fn: Callable[[], str], *, trust: bool = False,
         anchors: TrustAnchors | None = None) -> None:
    status: Status
    try:
        detail = fn()
        status = "pass"
        if trust and not anchors:
            status, detail = "unsupported", f"no trust anchor given ({detail})"
    except _StepFailed as e:
        status, detail = "fail", str(e)
    except Exception as e:  # malformed keys, certificates, signatures: a failing step
        status, detail = "fail", f"{type(e).__name__}: {e}"
    v.add(name, status, detail)


def _tee_type(quote: TdxQuote) -> str:
    if quote.header.tee_type != TEE_TYPE_TDX:
        raise _StepFailed(f"tee_type {quote.header.tee_type:#x} is not TDX ({TEE_TYPE_TDX:#x})")
    return "TDX"


def _p256_key(xy: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)


def _raw_to_der(sig: bytes) -> bytes:
    if len(sig) != 64:
        raise _StepFailed(f"signature is {len(sig)} bytes, not 64 (r||s)")
    return encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


def _quote_signature(quote: TdxQuote) -> str:
    sd = quote.signature_data
    try:
        key = _p256_key(sd.attestation_key)
    except ValueError as e:
        raise _StepFailed(f"attestation key is not a P-256 point: {e}") from None
    _ecdsa_verify(key, sd.signature, quote.signed_bytes, "quote signature")
    return f"attestation key signs {len(quote.signed_bytes)} bytes of header and body"


def _ecdsa_verify(key: object, raw_sig: bytes, data: bytes, what: str) -> None:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise _StepFailed(f"{what}: key is {type(key).__name__}, not EC")
    try:
        key.verify(_raw_to_der(raw_sig), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise _StepFailed(f"{what} does not verify") from None


def _qe_certification(quote: TdxQuote) -> tuple[CertificationData, SgxReportBody]:
    """The certification data, which must be type 6 (QE report fields set), and its QE report."""
    cd = quote.signature_data.certification_data
    if cd.type != CERT_TYPE_QE_REPORT or cd.qe_report is None:
        raise _StepFailed(f"certification data type {cd.type} is not {CERT_TYPE_QE_REPORT} "
                          "(QE report certification data)")
    return cd, cd.qe_report


def _binding(quote: TdxQuote) -> str:
    cd, qe_report = _qe_certification(quote)
    want = hashlib.sha256(quote.signature_data.attestation_key + (cd.qe_auth_data or b"")).digest()
    got = qe_report.report_data
    if got[:32] != want:
        raise _StepFailed(f"QE report_data[:32] {got[:32].hex()} != SHA-256(attestation_key || "
                          f"qe_auth_data) {want.hex()}")
    if any(got[32:]):
        raise _StepFailed("QE report_data[32:] is not zero")
    return "QE report binds the attestation key and auth data"


def _load_chain(quote: TdxQuote) -> list[x509.Certificate]:
    cd, _ = _qe_certification(quote)
    if cd.pck_chain_type != CERT_TYPE_PCK_CHAIN:
        raise _StepFailed(f"nested certification data type {cd.pck_chain_type} is not "
                          f"{CERT_TYPE_PCK_CHAIN} (PCK certificate chain)")
    if not cd.pck_chain:
        raise _StepFailed("PCK chain has no certificates")
    return [x509.load_pem_x509_certificate(p.encode("ascii")) for p in cd.pck_chain]


def _qe_report_signature(quote: TdxQuote, chain: list[x509.Certificate], _: TrustAnchors) -> str:
    cd, qe_report = _qe_certification(quote)
    _ecdsa_verify(chain[0].public_key(), cd.qe_report_signature or b"", qe_report.raw,
                  "QE report signature")
    return f"signed by the PCK leaf {chain[0].subject.rfc4514_string()}"


def _pck_chain(_: TdxQuote, chain: list[x509.Certificate], __: TrustAnchors) -> str:
    if len(chain) < 2:
        raise _StepFailed(f"PCK chain has {len(chain)} certificate(s); need leaf and issuers")
    for i, (cert, issuer) in enumerate(zip(chain, chain[1:])):
        try:
            cert.verify_directly_issued_by(issuer)
        except Exception as e:
            raise _StepFailed(f"certificate {i} ({cert.subject.rfc4514_string()}) is not issued by "
                              f"certificate {i + 1}: {type(e).__name__}: {e}") from None
    top = chain[-1]
    try:  # Intel's chain ends at the root CA: it must be self-issued and self-signed
        top.verify_directly_issued_by(top)
    except Exception as e:
        raise _StepFailed(f"last certificate {top.subject.rfc4514_string()} is not a self-signed "
                          f"root: {type(e).__name__}: {e}") from None
    return f"{len(chain)} certificates, each issued by the next"


def _anchor(_: TdxQuote, chain: list[x509.Certificate], anchors: TrustAnchors) -> str:
    top = chain[-1]
    if not anchors:
        return f"top certificate {top.subject.rfc4514_string()}"
    if anchors.trusts_key(top.public_key()):
        return f"{top.subject.rfc4514_string()} is a trust anchor"
    for a in anchors.certificates:
        try:
            top.verify_directly_issued_by(a)
            return f"{top.subject.rfc4514_string()} is issued by anchor {a.subject.rfc4514_string()}"
        except Exception:
            continue
    raise _StepFailed(f"{top.subject.rfc4514_string()} is not a trust anchor nor issued by one")
