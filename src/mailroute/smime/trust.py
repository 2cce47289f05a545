"""Certificate path validation for e-mail certificates, with ``cryptography.x509.verification``.

The default client verifier wants EKU clientAuth; S/MIME certificates carry emailProtection,
and S/MIME issuing CAs often carry only emailProtection. The policies here require
emailProtection (or anyExtendedKeyUsage) where an EKU is present and accept its absence, as
RFC 8550 section 4.4.4 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from mailroute.records import record

__all__ = ["ChainVerdict", "TrustAnchors"]

_EMAIL_EKUS = frozenset({ExtendedKeyUsageOID.EMAIL_PROTECTION,
                         ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE})


@record(frozen=True)
class ChainVerdict:
    """The outcome of path validation: ``status`` is ``valid``, ``expired``,
    ``not-yet-valid``, ``untrusted``, ``bad-key-usage`` or ``weak-algorithm`` (a sound chain
    with a certificate signed with SHA-1); ``detail`` a short safe text."""

    status: str
    detail: str = ""
    chain: tuple[x509.Certificate, ...] = ()


@record(frozen=True)
class TrustAnchors:
    """The certificates the gateway trusts for S/MIME (never the web PKI's roots).

    Attributes:
        roots: the trust anchors.
        max_chain_depth: intermediates allowed between leaf and anchor.
    """

    roots: tuple[x509.Certificate, ...]
    max_chain_depth: int = 8

    def check(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
              at: datetime) -> ChainVerdict:
        """Validate ``leaf`` for e-mail signing at time ``at``."""
        if at < leaf.not_valid_before_utc:
            return ChainVerdict("not-yet-valid", "certificate not yet valid")
        if at > leaf.not_valid_after_utc:
            return ChainVerdict("expired", "certificate expired")
        if not _may_sign(leaf):
            return ChainVerdict("bad-key-usage", "key usage does not allow signing")
        if not self.roots:
            return ChainVerdict("untrusted", "no trust anchors configured")
        ee = ExtensionPolicy.permit_all().may_be_present(
            x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _check_eku)
        ca = (ExtensionPolicy.permit_all()
              # present with cA TRUE, critical or not: RFC 5280 wants it critical, but
              # OpenSSL and NSS accept CAs that do not mark it (Thunderbird's test CA)
              .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _check_ca)
              .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _check_eku))
        verifier = (PolicyBuilder().store(Store(list(self.roots))).time(at)
                    .max_chain_depth(self.max_chain_depth)
                    .extension_policies(ca_policy=ca, ee_policy=ee)
                    .build_client_verifier())
        try:
            verified = verifier.verify(leaf, list(intermediates))
        except VerificationError as exc:
            if "expired" in str(exc) or "not valid at validation time" in str(exc):
                return self._time_fault(leaf, intermediates, at)
            if "Forbidden signature algorithm" in str(exc):
                return self._sha1_chain(leaf, intermediates, at)
            return ChainVerdict("untrusted", "no valid chain to a trust anchor")
        return ChainVerdict("valid", "", tuple(verified.chain))


    def _time_fault(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                    at: datetime) -> ChainVerdict:
        """``not-yet-valid`` or ``expired``, for the first certificate up the chain (by issuer
        name) that is not valid at ``at``."""
        pool = [*intermediates, *self.roots]
        cert = leaf
        for _ in range(self.max_chain_depth + 1):
            issuer = next((c for c in pool if c.subject == cert.issuer and c != cert), None)
            if issuer is None:
                break
            if at < issuer.not_valid_before_utc:
                return ChainVerdict("not-yet-valid", "a certificate in the chain is not valid yet")
            if at > issuer.not_valid_after_utc:
                break
            cert = issuer
        return ChainVerdict("expired", "a certificate in the chain is not valid now")

    def _sha1_chain(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                    at: datetime) -> ChainVerdict:
        """``weak-algorithm`` when the only fault is a certificate signed with SHA-1.

        cryptography's path validation refuses such certificates outright, OpenSSL accepts
        them (StartCom's and other pre-2016 S/MIME chains). This checks the chain itself:
        issuer names, signatures (with the hash the certificate names), validity at ``at``,
        ``cA`` and e-mail key purposes, at most ``max_chain_depth`` intermediates, ending at a
        trust anchor. A sound chain is reported as sound but weak, never as valid.
        """
        if not _email_purpose(leaf):
            return ChainVerdict("untrusted", "no valid chain to a trust anchor")
        pool = [c for c in intermediates if c != leaf]
        cert = leaf
        for _ in range(self.max_chain_depth + 1):
            if any(_issued(cert, anchor, at) for anchor in self.roots):
                return ChainVerdict("weak-algorithm", "a certificate in the chain uses SHA-1")
            issuer = next((c for c in pool if _issued(cert, c, at)), None)
            if issuer is None:
                break
            pool.remove(issuer)
            cert = issuer
        return ChainVerdict("untrusted", "no valid chain to a trust anchor")


def _issued(cert: x509.Certificate, issuer: x509.Certificate, at: datetime) -> bool:
    """``issuer`` is a CA valid at ``at`` whose key signed ``cert``."""
    if cert.issuer != issuer.subject or not _email_purpose(issuer):
        return False
    if not issuer.not_valid_before_utc <= at <= issuer.not_valid_after_utc:
        return False
    try:
        if not issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
        if not _may_certify(issuer):
            return False
        algorithm = cert.signature_hash_algorithm
        key = issuer.public_key()
        if algorithm is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except (x509.ExtensionNotFound, InvalidSignature, UnsupportedAlgorithm, ValueError,
            TypeError):
        return False
    return True


def _may_certify(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True


def _email_purpose(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(_EMAIL_EKUS.intersection(usage))


def _check_eku(policy: Policy, cert: x509.Certificate,
               value: x509.ExtendedKeyUsage | None) -> None:
    if value is not None and not _EMAIL_EKUS.intersection(value):
        raise ValueError("extended key usage does not allow e-mail protection")


def _check_ca(policy: Policy, cert: x509.Certificate,
              value: x509.BasicConstraints | None) -> None:
    if value is None or not value.ca:
        raise ValueError("issuer is not a CA")


def _may_sign(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.digital_signature or usage.content_commitment
