"""CMS SignedData (RFC 5652) for S/MIME: detached or with the content inside (opaque).

The SignerInfo is built here rather than with ``PKCS7SignatureBuilder`` because S/MIME 4.0
signers should advertise AES-GCM in SMIMECapabilities, which that builder cannot; the
signature maths is ``cryptography``'s. The content is hashed chunk by chunk and, for an opaque
signature, spliced into the DER without ever being copied into an ASN.1 object.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from mailroute.errors import SigningError
from mailroute.keys.certstore import key_belongs_to
from mailroute.records import record
from mailroute.smime.algorithms import CAPABILITIES, DIGESTS, digest_for
from mailroute.smime.der import CONTEXT_0, OCTET_STRING, SEQUENCE, Chunk, tlv

__all__ = ["Signer", "SigningKey", "sign"]

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@record(frozen=True)
class Signer:
    """Who signs and how.

    Attributes:
        certificate: the signer's certificate (its public key must match ``key``).
        key: RSA, EC or Ed25519 private key.
        chain: further certificates to include (intermediates; never needed roots).
        digest: ``sha256`` (default), ``sha384``, ``sha512`` or ``sha224``; Ed25519 always
            uses SHA-512 (RFC 8419).
        pss: RSASSA-PSS instead of PKCS#1 v1.5 for RSA keys.
    """

    certificate: x509.Certificate
    key: SigningKey
    chain: tuple[x509.Certificate, ...] = ()
    digest: str = "sha256"
    pss: bool = False

    def __post_init__(self) -> None:
        if self.digest not in DIGESTS:
            raise SigningError(f"unsupported digest {self.digest!r}")
        if not isinstance(self.key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                                     ed25519.Ed25519PrivateKey)):
            raise SigningError("only RSA, EC and Ed25519 keys can sign")
        if not key_belongs_to(self.key, self.certificate):
            raise SigningError("the private key does not belong to the certificate")

    @property
    def effective_digest(self) -> str:
        """The digest actually used (SHA-512 for Ed25519)."""
        return "sha512" if isinstance(self.key, ed25519.Ed25519PrivateKey) else self.digest


def sign(content: Sequence[Chunk], signer: Signer, *, signing_time: datetime,
         detached: bool = True) -> list[Chunk]:
    """A DER ``ContentInfo`` holding SignedData over the concatenated ``content``.

    Returns the DER as chunks (join them, or stream them into base64); for an opaque
    signature (``detached=False``) the content chunks are part of the result, not copied.
    """
    digest_name = signer.effective_digest
    hasher = hashlib.new(digest_name)
    for chunk in content:
        hasher.update(chunk)
    signed_attrs = _signed_attributes(hasher.digest(), signing_time)
    to_sign = signed_attrs.dump()  # tag 0x31: the SET OF encoding the signature covers
    signature, signature_algorithm = _signature(signer, to_sign)
    # RFC 5754 section 2: SHA-2 identifiers are generated with the parameters absent
    # (asn1crypto writes NULL unless told; OpenSSL writes them absent)
    digest_algorithm = algos.DigestAlgorithm({"algorithm": digest_name, "parameters": None})
    certificates = [signer.certificate, *signer.chain]
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": _asn1_cert(signer.certificate).issuer,
            "serial_number": signer.certificate.serial_number,
        })}),
        "digest_algorithm": digest_algorithm,
        "signed_attrs": signed_attrs,
        "signature_algorithm": signature_algorithm,
        "signature": signature,
    })
    signed_data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [digest_algorithm],
        "encap_content_info": {"content_type": "data"},
        "certificates": [cms.CertificateChoices({"certificate": _asn1_cert(c)})
                         for c in certificates],
        "signer_infos": [signer_info],
    })
    encap: list[Chunk] = [cms.ContentType("data").dump()]
    if not detached:
        encap += tlv(CONTEXT_0, tlv(OCTET_STRING, list(content)))
    body = [signed_data["version"].dump(), signed_data["digest_algorithms"].dump(),
            *tlv(SEQUENCE, encap), signed_data["certificates"].dump(),
            signed_data["signer_infos"].dump()]
    inner = [cms.ContentType("signed_data").dump(), *tlv(CONTEXT_0, tlv(SEQUENCE, body))]
    return tlv(SEQUENCE, inner)


def _signed_attributes(message_digest: bytes, signing_time: datetime) -> cms.CMSAttributes:
    capabilities = cms.SMIMECapabilites([
        cms.SMIMECapabilityIdentifier({"capability_id": name}) for name in CAPABILITIES])
    return cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": signing_time})
                                                              if signing_time.year < 2050 else
                                                              cms.Time({"generalized_time":
                                                                        signing_time})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [message_digest]}),
        cms.CMSAttribute({"type": "smime_capabilities", "values": [capabilities]}),
    ])


def _signature(signer: Signer, data: bytes) -> tuple[bytes, algos.SignedDigestAlgorithm]:
    key = signer.key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data), algos.SignedDigestAlgorithm({"algorithm": "ed25519"})
    hash_algorithm = digest_for(signer.digest)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return (key.sign(data, ec.ECDSA(hash_algorithm)),
                algos.SignedDigestAlgorithm({"algorithm": f"{signer.digest}_ecdsa"}))
    if signer.pss:
        salt = hash_algorithm.digest_size
        pss = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=salt)
        params = algos.RSASSAPSSParams({
            "hash_algorithm": {"algorithm": signer.digest},
            "mask_gen_algorithm": {"algorithm": "mgf1",
                                   "parameters": {"algorithm": signer.digest}},
            "salt_length": salt,
        })
        return (key.sign(data, pss, hash_algorithm),
                algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params}))
    return (key.sign(data, padding.PKCS1v15(), hash_algorithm),
            algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}))


def _asn1_cert(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


