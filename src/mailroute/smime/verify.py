"""Verification of CMS SignedData: every signer, with a typed verdict and a precise reason.

The signed attributes are read by :mod:`mailroute.smime.attributes` (attributes that are not
needed are skipped, so the Microsoft and RFC 8551 encryption key preferences of Outlook and
Thunderbird do not make a signer unreadable) and the signature is checked over the bytes as
received (the ``[0]`` tag turned into SET OF), then over the same attribute elements in DER
order if that fails; the result records which one matched. ``messageDigest`` is compared
with the digest of the exact content bytes the caller passes (the raw signed entity from the
MIME tree, never a re-serialisation). A SHA-1 or MD5 signature is checked like any other and
only a sound one with a valid chain is ``weak-algorithm``, so a forgery is ``bad-digest``.
The chain is checked by :class:`~mailroute.smime.trust.TrustAnchors`; ``signingTime`` is
reported as the signer's claim, validity is judged at the verification time.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Collection
from datetime import datetime

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from mailroute.errors import MalformedMessageError
from mailroute.keys.addresses import certificate_emails, normalise_address
from mailroute.records import record, replace
from mailroute.smime.algorithms import DIGESTS, WEAK_DIGESTS, WEAK_HASHES, verification_hash
from mailroute.smime.attributes import KeyPreference, SignedAttributes, parse_signed_attributes
from mailroute.smime.der import Chunk, children, load_content_info, octets, read_tlv, tlv
from mailroute.smime.trust import TrustAnchors

__all__ = ["SignerResult", "SignerStatus", "Verification", "verify"]

# What reading hostile ASN.1 and certificates can raise (asn1crypto is lazy and not strict).
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError,
               x509.InvalidVersion, UnsupportedAlgorithm)
MAX_SIGNERS = 16
MAX_CERTIFICATES = 64


class SignerStatus(enum.StrEnum):
    """The verdict for one signer."""

    VALID = "valid"
    BAD_DIGEST = "bad-digest"
    BAD_SIGNATURE = "bad-signature"
    UNTRUSTED = "untrusted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    BAD_KEY_USAGE = "bad-key-usage"
    FROM_MISMATCH = "from-mismatch"
    WEAK_ALGORITHM = "weak-algorithm"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    NO_CERTIFICATE = "no-certificate"
    MALFORMED = "malformed"


@record(frozen=True)
class SignerResult:
    """One signer's verdict.

    Attributes:
        status: the verdict; only ``valid`` is good.
        emails: the certificate's e-mail addresses (SAN rfc822Name).
        subject: the certificate subject (RFC 4514), empty when no certificate was found.
        certificate: the signer's certificate, if found.
        digest: digest algorithm name (``sha256`` ...).
        signature_algorithm: ``rsa-pkcs1v15``, ``rsa-pss``, ``ecdsa`` or ``ed25519``.
        signing_time: the signingTime attribute: a claim of the signer, not a proof.
        attrs_encoding: ``received`` or ``der``: which encoding of the signed attributes the
            signature covered (``""`` when there were none or the signature did not verify).
        key_preference: the signed encryption key preference (the certificate the signer
            wants mail encrypted to), or ``None``.
        encryption_certificate: that certificate, when the SignedData carries it.
        capabilities: the signed ``SMIMECapabilities`` (algorithm names, preferred first).
    """

    status: SignerStatus
    emails: tuple[str, ...] = ()
    subject: str = ""
    certificate: x509.Certificate | None = None
    digest: str = ""
    signature_algorithm: str = ""
    signing_time: datetime | None = None
    attrs_encoding: str = ""
    key_preference: KeyPreference | None = None
    encryption_certificate: x509.Certificate | None = None
    capabilities: tuple[str, ...] = ()

    @property
    def aes_gcm(self) -> bool:
        """True when the signed capabilities advertise AES-GCM."""
        return any(c.endswith("_gcm") for c in self.capabilities)

    @property
    def valid(self) -> bool:
        """True when the signer is valid in every respect checked."""
        return self.status is SignerStatus.VALID

    @property
    def email(self) -> str:
        """The first e-mail address of the certificate, or ``""``."""
        return self.emails[0] if self.emails else ""


@record(frozen=True)
class Verification:
    """Every signer's verdict, and the signed content.

    ``valid`` is True only when there is at least one signer and every signer is valid.
    """

    signers: tuple[SignerResult, ...]
    content: bytes

    @property
    def valid(self) -> bool:
        """All signers valid (and at least one)."""
        return bool(self.signers) and all(s.valid for s in self.signers)

    @property
    def reason(self) -> str:
        """``valid``, ``no-signers`` or the first signer's failure reason."""
        if not self.signers:
            return "no-signers"
        for signer in self.signers:
            if not signer.valid:
                return signer.status.value
        return "valid"


@record(frozen=True)
class _Checked:
    status: SignerStatus
    encoding: str = ""


def verify(data: bytes, *, content: bytes | None, trust: TrustAnchors, at: datetime,
           from_addresses: Collection[str] | None = None, max_size: int) -> Verification:
    """Verify a DER/BER ContentInfo holding SignedData.

    Args:
        data: the CMS structure.
        content: the detached content (the exact raw bytes), or ``None`` for an opaque
            signature whose content is inside.
        trust: the trust anchors.
        at: the verification time.
        from_addresses: when given, a signer must have one of these addresses (compared
            case-insensitively), or its verdict is ``from-mismatch``.
        max_size: the largest CMS structure accepted.

    Raises:
        MalformedMessageError: not SignedData, content both embedded and detached, or neither.
    """
    detached, inner = _without_content(data, max_size)
    info = load_content_info(detached, max_size=max_size)
    try:
        signed = info["content"]
        econtent_type = str(signed["encap_content_info"]["content_type"].dotted)
        signer_infos = list(signed["signer_infos"])
        certificates = _certificates(signed)
    except _UNREADABLE as exc:
        raise MalformedMessageError("malformed SignedData") from exc
    if (inner is None) == (content is None):
        raise MalformedMessageError("signed content must be either embedded or detached")
    signed_content = inner if inner is not None else content
    assert signed_content is not None
    if len(signer_infos) > MAX_SIGNERS:
        raise MalformedMessageError("too many signers")
    # case-insensitive as mail clients compare (Thunderbird's certificates say Alice@...,
    # the From field parser lower-cases): a mailbox is not told apart by case in practice
    wanted = ({normalise_address(a).lower() for a in from_addresses}
              if from_addresses is not None else None)
    results = tuple(_signer(si, econtent_type, signed_content, certificates, trust, at, wanted)
                    for si in signer_infos)
    return Verification(results, signed_content)


_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")


def _without_content(data: bytes, max_size: int) -> tuple[bytes, bytes | None]:
    """The SignedData rebuilt without its embedded content, and that content.

    asn1crypto copies the contents of every level it parses; an opaque 28 MB signature would
    be copied several times. The content is cut out here (views into ``data``, joined once)
    and asn1crypto gets the small rest, every other element's bytes as received.
    """
    if len(data) > max_size:
        raise MalformedMessageError("CMS structure exceeds the size limit")
    try:
        outer = read_tlv(data, 0, len(data))
        kind, explicit = children(data, outer)[:2]
        if data[kind.start:kind.end] != _SIGNED_DATA or explicit.tag != 0xA0:
            raise MalformedMessageError("not a CMS SignedData structure")
        fields = children(data, children(data, explicit)[0])
        encap = children(data, fields[2])
        if fields[2].tag != 0x30 or encap[0].tag != 0x06:
            raise MalformedMessageError("malformed SignedData")
        content = None
        if len(encap) > 1:
            if encap[1].tag != 0xA0:
                raise MalformedMessageError("malformed SignedData")
            content = b"".join(octets(data, children(data, encap[1])[0]))
    except (IndexError, ValueError) as exc:
        raise MalformedMessageError("malformed SignedData") from exc
    pieces: list[Chunk] = [data[f.start:f.end] for f in fields]
    pieces[2] = b"".join(tlv(0x30, [data[encap[0].start:encap[0].end]]))
    rebuilt = tlv(0x30, [data[kind.start:kind.end],
                         *tlv(0xA0, tlv(0x30, pieces))])
    return b"".join(rebuilt), content


def _certificates(signed: cms.SignedData) -> list[x509.Certificate]:
    """The certificates as received: their issuers signed these bytes. asn1crypto's
    re-encoding (``dump(force=True)``) is not neutral: it normalises URIs (``%3d`` becomes
    ``=`` in Actalis' CRL distribution points), and the issuer's signature no longer
    matches."""
    found: list[x509.Certificate] = []
    choices = signed["certificates"]
    if choices.native is None:
        return []
    for choice in choices:
        if len(found) >= MAX_CERTIFICATES:
            raise MalformedMessageError("too many certificates")
        if choice.name == "certificate":
            found.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    return found


def _signer(si: cms.SignerInfo, econtent_type: str, content: bytes,
            certificates: list[x509.Certificate], trust: TrustAnchors, at: datetime,
            wanted: set[str] | None) -> SignerResult:
    """One signer's verdict; anything unreadable on the way is ``malformed``."""
    try:
        return _check_signer(si, econtent_type, content, certificates, trust, at, wanted)
    except _UNREADABLE:
        return SignerResult(SignerStatus.MALFORMED)


def _check_signer(si: cms.SignerInfo, econtent_type: str, content: bytes,
                  certificates: list[x509.Certificate], trust: TrustAnchors, at: datetime,
                  wanted: set[str] | None) -> SignerResult:
    try:
        cert = _find_certificate(si["sid"], certificates)
        digest_name = str(si["digest_algorithm"]["algorithm"].native)
        raw_attrs = si["signed_attrs"]
        attrs = None if isinstance(raw_attrs, core.Void) else parse_signed_attributes(
            raw_attrs.dump())
    except (ValueError, TypeError, KeyError):
        return SignerResult(SignerStatus.MALFORMED)
    result = SignerResult(SignerStatus.NO_CERTIFICATE, digest=digest_name)
    if attrs is not None:
        result = replace(result, signing_time=attrs.signing_time,
                         key_preference=attrs.key_preference, capabilities=attrs.capabilities,
                         encryption_certificate=_preferred(attrs.key_preference, certificates))
    if cert is None:
        return result
    result = replace(result, emails=certificate_emails(cert), certificate=cert,
                     subject=cert.subject.rfc4514_string())
    if digest_name in WEAK_DIGESTS and digest_name not in WEAK_HASHES:
        return replace(result, status=SignerStatus.WEAK_ALGORITHM)
    if digest_name not in DIGESTS and digest_name not in WEAK_HASHES:
        return replace(result, status=SignerStatus.UNSUPPORTED_ALGORITHM)
    try:
        checked, algorithm = _check_signature(si, attrs, econtent_type, content, cert,
                                              digest_name)
    except (ValueError, TypeError, KeyError, UnsupportedAlgorithm):
        return replace(result, status=SignerStatus.MALFORMED)
    result = replace(result, signature_algorithm=algorithm, status=checked.status)
    if checked.status is not SignerStatus.VALID:
        return result
    result = replace(result, attrs_encoding=checked.encoding)
    verdict = trust.check(cert, [c for c in certificates if c != cert], at)
    if verdict.status != "valid":
        return replace(result, status=SignerStatus(verdict.status))
    if digest_name in WEAK_DIGESTS:
        # sound and trusted but for the digest: the policy's verdict, not a forgery
        return replace(result, status=SignerStatus.WEAK_ALGORITHM)
    if wanted is not None and not wanted.intersection(e.lower() for e in result.emails):
        return replace(result, status=SignerStatus.FROM_MISMATCH)
    return result


def _preferred(preference: KeyPreference | None,
               certificates: list[x509.Certificate]) -> x509.Certificate | None:
    """The certificate a key preference names, among those the SignedData carries."""
    if preference is None:
        return None
    for cert in certificates:
        if preference.serial is not None:
            if (cert.serial_number == preference.serial
                    and cert.issuer.rfc4514_string() == preference.issuer):
                return cert
            continue
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            continue
        if ski.value.digest == preference.key_identifier:
            return cert
    return None


def _find_certificate(sid: cms.SignerIdentifier,
                      certificates: list[x509.Certificate]) -> x509.Certificate | None:
    for cert in certificates:
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if wanted["serial_number"].native != cert.serial_number:
                continue
            parsed = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
            if wanted["issuer"] == parsed.issuer:
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if hmac.compare_digest(ski.value.digest, sid.chosen.native):
                return cert
    return None


_DATA = "1.2.840.113549.1.7.1"


def _check_signature(si: cms.SignerInfo, attrs: SignedAttributes | None, econtent_type: str,
                     content: bytes, cert: x509.Certificate,
                     digest_name: str) -> tuple[_Checked, str]:
    public = cert.public_key()
    algorithm = _algorithm_name(si, public)
    if attrs is None:
        if econtent_type != _DATA:
            return _Checked(SignerStatus.MALFORMED), algorithm
        ok = any(_verify_raw(public, si, form, digest_name) for form in _content_forms(content))
        return _Checked(SignerStatus.VALID if ok else SignerStatus.BAD_SIGNATURE), algorithm
    if attrs.content_type != econtent_type or attrs.message_digest is None:
        return _Checked(SignerStatus.MALFORMED), algorithm
    if not any(hmac.compare_digest(attrs.message_digest, hashlib.new(digest_name, form).digest())
               for form in _content_forms(content)):
        return _Checked(SignerStatus.BAD_DIGEST), algorithm
    if _verify_raw(public, si, attrs.received, digest_name):
        return _Checked(SignerStatus.VALID, "received"), algorithm
    if attrs.der != attrs.received and _verify_raw(public, si, attrs.der, digest_name):
        return _Checked(SignerStatus.VALID, "der"), algorithm
    return _Checked(SignerStatus.BAD_SIGNATURE), algorithm


_BARE_LF = re.compile(rb"(?<!\r)\n")


def _content_forms(content: bytes) -> tuple[bytes, ...]:
    """The content as received and, when it has bare LF line breaks, with CRLF instead.

    A signature covers the canonical CRLF form (RFC 8551 3.1.1), but a message stored or
    handed on by a local delivery agent (Postfix ``pipe(8)``, maildir, mbox) has LF line
    breaks. ``openssl cms -verify`` converts those as well; the
    conversion changes no MIME reading, so a forgery gains nothing from it.
    """
    if b"\n" not in content or not _BARE_LF.search(content):
        return (content,)
    return (content, _BARE_LF.sub(b"\r\n", content))


def _algorithm_name(si: cms.SignerInfo, public: object) -> str:
    oid_name = si["signature_algorithm"]["algorithm"].native
    if isinstance(public, rsa.RSAPublicKey):
        return "rsa-pss" if oid_name == "rsassa_pss" else "rsa-pkcs1v15"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise UnsupportedAlgorithm("unsupported signer key type")


def _verify_raw(public: object, si: cms.SignerInfo, data: bytes, digest_name: str) -> bool:
    signature = si["signature"].native
    hash_algorithm = verification_hash(digest_name)
    try:
        if isinstance(public, rsa.RSAPublicKey):
            algorithm = si["signature_algorithm"]
            if algorithm["algorithm"].native == "rsassa_pss":
                params = algorithm["parameters"]
                pss_hash = DIGESTS[params["hash_algorithm"]["algorithm"].native]()
                mgf_hash = DIGESTS[
                    params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
                pss = padding.PSS(mgf=padding.MGF1(mgf_hash),
                                  salt_length=params["salt_length"].native)
                public.verify(signature, data, pss, pss_hash)
            else:
                public.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True
