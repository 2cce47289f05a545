"""CMS EnvelopedData (AES-CBC) and AuthEnvelopedData (AES-GCM, RFC 5083/5084) for S/MIME.

Built here for both: ``PKCS7EnvelopeBuilder`` has neither GCM nor RSA-OAEP. The recipient
infos are encoded with asn1crypto; the ciphertext is produced chunk by chunk while the DER is
being read, so encrypting a large entity holds the ciphertext only as far as the consumer
keeps it (see :func:`mailroute.smime.armor.base64_lines`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mailroute.errors import CryptoError
from mailroute.records import record
from mailroute.smime.algorithms import CONTENT_CIPHERS
from mailroute.smime.der import (
    CONTEXT_0,
    CONTEXT_0_PRIMITIVE,
    OCTET_STRING,
    SEQUENCE,
    Chunk,
    GcmParameters,
    chunks_length,
    header,
)

__all__ = ["Encrypted", "encrypt"]

_PIECE = 1 << 20  # plaintext bytes encrypted per step
_GCM_NONCE = 12
_GCM_TAG = 16


@record(frozen=True)
class Encrypted:
    """A DER ContentInfo being produced: its total ``length`` and a one-shot chunk iterator.

    Attributes:
        length: bytes of the whole DER encoding.
        chunks: yields the DER in order; the ciphertext is computed while it is read.
        authenticated: True for AuthEnvelopedData (GCM).
    """

    length: int
    chunks: Iterator[Chunk]
    authenticated: bool


def encrypt(content: Sequence[Chunk], recipients: Sequence[x509.Certificate], *,
            cipher: str = "aes-256-gcm", oaep: bool = False) -> Encrypted:
    """Encrypt the concatenated ``content`` to every certificate in ``recipients``.

    Args:
        cipher: ``aes-256-gcm`` (default), ``aes-128-gcm``, ``aes-256-cbc`` or ``aes-128-cbc``.
        oaep: RSAES-OAEP with SHA-256 for the key transport instead of PKCS#1 v1.5.

    Raises:
        CryptoError: no recipients, an unknown cipher or a recipient key that is not RSA.
    """
    if cipher not in CONTENT_CIPHERS:
        raise CryptoError(f"unsupported cipher {cipher!r}")
    if not recipients:
        raise CryptoError("no recipient certificates")
    name, key_size, authenticated = CONTENT_CIPHERS[cipher]
    key = os.urandom(key_size)
    infos = cms.RecipientInfos([_recipient_info(cert, key, oaep) for cert in recipients])
    size = chunks_length(content)
    if authenticated:
        iv = os.urandom(_GCM_NONCE)
        params = GcmParameters({"aes_nonce": iv, "aes_icv_len": _GCM_TAG})
        cipher_length = size
    else:
        iv = os.urandom(16)
        params = None
        cipher_length = size + 16 - size % 16
    algorithm = (_gcm_algorithm(name, params) if params is not None
                 else algos.EncryptionAlgorithm({"algorithm": name, "parameters": iv}))
    content_info_head = cms.ContentType("data").dump() + algorithm.dump()
    eci_length = (len(content_info_head) + len(header(CONTEXT_0_PRIMITIVE, cipher_length))
                  + cipher_length)
    version = cms.CMSVersion("v0").dump()
    recipients_der = infos.dump()
    tail = header(OCTET_STRING, _GCM_TAG) if authenticated else b""
    inner_length = (len(version) + len(recipients_der) + len(header(SEQUENCE, eci_length))
                    + eci_length + len(tail) + (_GCM_TAG if authenticated else 0))
    inner_header = header(SEQUENCE, inner_length)
    explicit_length = len(inner_header) + inner_length
    outer_type = cms.ContentType(
        "authenticated_enveloped_data" if authenticated else "enveloped_data").dump()
    outer_length = len(outer_type) + len(header(CONTEXT_0, explicit_length)) + explicit_length
    prefix = b"".join([
        header(SEQUENCE, outer_length), outer_type, header(CONTEXT_0, explicit_length),
        inner_header, version, recipients_der, header(SEQUENCE, eci_length),
        content_info_head, header(CONTEXT_0_PRIMITIVE, cipher_length)])
    total = len(header(SEQUENCE, outer_length)) + outer_length
    return Encrypted(total, _stream(prefix, content, key, iv, authenticated, tail),
                     authenticated)


def _gcm_algorithm(name: str, params: GcmParameters) -> algos.EncryptionAlgorithm:
    # asn1crypto has no type for GCM parameters: build the identifier from its encoding.
    body = algos.EncryptionAlgorithmId(name).dump() + params.dump()
    return algos.EncryptionAlgorithm.load(header(SEQUENCE, len(body)) + body)


def _stream(prefix: bytes, content: Sequence[Chunk], key: bytes, iv: bytes,
            authenticated: bool, tail: bytes) -> Iterator[Chunk]:
    yield prefix
    if authenticated:
        encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        for piece in _pieces(content):
            yield encryptor.update(piece)
        yield encryptor.finalize()
        yield tail + encryptor.tag
        return
    cbc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    pending = b""
    for piece in _pieces(content):
        data = pending + bytes(piece) if pending else piece
        usable = len(data) - len(data) % 16
        yield cbc.update(data[:usable])
        pending = bytes(data[usable:])
    pad = 16 - len(pending) % 16
    yield cbc.update(pending + bytes((pad,)) * pad) + cbc.finalize()


def _pieces(content: Sequence[Chunk]) -> Iterator[memoryview]:
    for chunk in content:
        view = memoryview(chunk)
        for start in range(0, len(view), _PIECE):
            yield view[start:start + _PIECE]


def _recipient_info(certificate: x509.Certificate, key: bytes, oaep: bool
                    ) -> cms.RecipientInfo:
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise CryptoError("only RSA recipient certificates are supported for encryption")
    if oaep:
        oaep_padding = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                    algorithm=hashes.SHA256(), label=None)
        encrypted_key = public.encrypt(key, oaep_padding)
        key_algorithm = cms.KeyEncryptionAlgorithm({
            "algorithm": "rsaes_oaep",
            "parameters": algos.RSAESOAEPParams({
                "hash_algorithm": {"algorithm": "sha256"},
                "mask_gen_algorithm": {"algorithm": "mgf1",
                                       "parameters": {"algorithm": "sha256"}},
            }),
        })
    else:
        encrypted_key = public.encrypt(key, padding.PKCS1v15())
        key_algorithm = cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"})
    issuer = asn1_x509.Certificate.load(
        certificate.public_bytes(serialization.Encoding.DER)).issuer
    return cms.RecipientInfo({"ktri": cms.KeyTransRecipientInfo({
        "version": "v0",
        "rid": cms.RecipientIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": issuer, "serial_number": certificate.serial_number})}),
        "key_encryption_algorithm": key_algorithm,
        "encrypted_key": encrypted_key,
    })})
