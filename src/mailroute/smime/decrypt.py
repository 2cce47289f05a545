"""Decryption of CMS EnvelopedData and AuthEnvelopedData, DER or BER.

Supported: key transport with RSA PKCS#1 v1.5 or RSAES-OAEP, recipients named by issuer and
serial number or by subject key identifier; AES-128/192/256-CBC, 3DES-CBC (old mail) and
AES-GCM. Recipient infos we cannot use (key agreement, KEK, password) are skipped, not fatal.

Every failure raises the same :class:`~mailroute.errors.DecryptionError` with the same text.
An RSA unwrap that fails (bad padding, wrong length, unknown algorithm) continues with a
substitute key (RFC 3218 section 2.3) derived from the encrypted key and a secret only the
private key holder has ("implicit rejection", as OpenSSL 3.2 does for PKCS#1 v1.5): the same
message always takes the same path to the same result, so neither the error nor a retry tells
a Bleichenbacher oracle anything. This does not make CBC content authenticated: whether a CBC
message decrypts still depends on its padding, and only the caller can keep that bit from the
sender (see ``mailroute.filters.smime``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mailroute.errors import DecryptionError, MalformedMessageError
from mailroute.records import record
from mailroute.smime.der import OCTET_STRING, GcmParameters, children, octets, read_tlv

__all__ = ["DECRYPTION_FAILED", "Decrypted", "Identity", "decrypt", "rejection_key"]

DECRYPTION_FAILED = "cannot decrypt the message"
_CBC = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32, "tripledes_3key": 24}
_GCM = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}
_NAMES = {"aes128_cbc": "aes-128-cbc", "aes192_cbc": "aes-192-cbc", "aes256_cbc": "aes-256-cbc",
          "tripledes_3key": "des-ede3-cbc", "aes128_gcm": "aes-128-gcm",
          "aes192_gcm": "aes-192-gcm", "aes256_gcm": "aes-256-gcm"}
_OAEP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512}


@record(frozen=True)
class Identity:
    """A certificate and the private key we hold for it."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey


@record(frozen=True)
class Decrypted:
    """The plaintext and how it was protected.

    Attributes:
        content: the decrypted bytes (a MIME entity for S/MIME).
        cipher: content cipher, e.g. ``aes-256-gcm`` or ``aes-256-cbc``.
        authenticated: True only for AEAD (GCM): CBC plaintext is malleable (EFAIL).
    """

    content: bytes
    cipher: str
    authenticated: bool


def decrypt(data: bytes, identities: Sequence[Identity], *, max_size: int) -> Decrypted:
    """Decrypt a DER/BER ``ContentInfo`` with the first identity that is a recipient.

    Raises:
        DecryptionError: always the same text, whatever went wrong.
    """
    try:
        return _decrypt(data, identities, max_size)
    except (DecryptionError, MalformedMessageError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, InvalidTag, UnsupportedAlgorithm):
        raise DecryptionError(DECRYPTION_FAILED) from None


_ENVELOPED = bytes.fromhex("2a864886f70d010703")
_AUTH_ENVELOPED = bytes.fromhex("2a864886f70d0109100117")


@record(frozen=True)
class _Envelope:
    recipient_infos: cms.RecipientInfos
    algorithm: algos.EncryptionAlgorithm
    ciphertext: list[memoryview]
    mac: bytes | None
    aad: bytes


def _envelope(data: bytes, max_size: int) -> _Envelope:
    """Locate the parts of (Auth)EnvelopedData; the ciphertext stays views into ``data``.

    asn1crypto parses only the small parts: it copies the contents of every level it parses,
    which for a 28 MB message would mean several copies of the ciphertext.
    """
    if len(data) > max_size:
        raise MalformedMessageError("CMS structure exceeds the size limit")
    outer = read_tlv(data, 0, len(data))
    kind, explicit = children(data, outer)[:2]
    content_type = data[kind.content:kind.end]
    if outer.tag != 0x30 or kind.tag != 0x06 or explicit.tag != 0xA0:
        raise MalformedMessageError("not a CMS ContentInfo")
    fields = children(data, children(data, explicit)[0])
    if fields and fields[0].tag == 0x02:
        fields = fields[1:]  # version
    if fields and fields[0].tag == 0xA0:
        fields = fields[1:]  # originatorInfo
    if len(fields) < 2 or fields[0].tag != 0x31 or fields[1].tag != 0x30:
        raise MalformedMessageError("malformed EnvelopedData")
    infos = cms.RecipientInfos.load(data[fields[0].start:fields[0].end], strict=False)
    content_info = children(data, fields[1])
    if len(content_info) < 2:
        raise MalformedMessageError("malformed EncryptedContentInfo")
    algorithm = algos.EncryptionAlgorithm.load(
        data[content_info[1].start:content_info[1].end], strict=False)
    ciphertext = (octets(data, content_info[2])
                  if len(content_info) > 2 and content_info[2].tag in (0x80, 0xA0) else [])
    if content_type == _ENVELOPED:
        return _Envelope(infos, algorithm, ciphertext, None, b"")
    if content_type != _AUTH_ENVELOPED:
        raise MalformedMessageError("not enveloped data")
    rest = fields[2:]
    aad = b""
    if rest and rest[0].tag == 0xA1:  # authAttrs: the MAC covers their SET OF encoding
        aad = b"\x31" + data[rest[0].start + 1:rest[0].end]
        rest = rest[1:]
    if not rest or rest[0].tag != OCTET_STRING:
        raise MalformedMessageError("AuthEnvelopedData without a MAC")
    return _Envelope(infos, algorithm, ciphertext, b"".join(octets(data, rest[0])), aad)


def _decrypt(data: bytes, identities: Sequence[Identity], max_size: int) -> Decrypted:
    envelope = _envelope(data, max_size)
    algorithm = envelope.algorithm
    name = algorithm["algorithm"].native
    key_size = _CBC.get(name) or _GCM.get(name)
    if key_size is None or (name in _GCM) != (envelope.mac is not None):
        raise DecryptionError(DECRYPTION_FAILED)
    candidates = _unwrapped_keys(envelope.recipient_infos, identities, key_size)
    if not candidates:
        raise DecryptionError(DECRYPTION_FAILED)
    for position, key in enumerate(candidates):
        try:
            if envelope.mac is not None:
                plaintext = _gcm(algorithm, key, envelope.ciphertext, envelope.mac,
                                 envelope.aad)
            else:
                plaintext = _cbc(name, algorithm["parameters"].native, key, envelope.ciphertext)
        except (ValueError, InvalidTag):
            if position == len(candidates) - 1:
                raise
            continue
        return Decrypted(plaintext, _NAMES[name], envelope.mac is not None)
    raise DecryptionError(DECRYPTION_FAILED)


def _unwrapped_keys(infos: cms.RecipientInfos, identities: Sequence[Identity],
                    key_size: int) -> list[bytes]:
    keys: list[bytes] = []
    for info in infos:
        if info.name != "ktri":
            continue  # key agreement, KEK, password: not ours to use
        ktri = info.chosen
        for identity in identities:
            if _matches(ktri["rid"], identity.certificate):
                keys.append(_unwrap(ktri, identity.key, key_size))
    return keys


def _matches(rid: cms.RecipientIdentifier, certificate: x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        cert = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
        wanted = rid.chosen
        return bool(wanted["serial_number"].native == certificate.serial_number
                    and wanted["issuer"] == cert.issuer)
    try:
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return False
    return hmac.compare_digest(rid.chosen.native, ski.value.digest)


def _unwrap(ktri: cms.KeyTransRecipientInfo, key: rsa.RSAPrivateKey, key_size: int) -> bytes:
    algorithm = ktri["key_encryption_algorithm"]
    encrypted = ktri["encrypted_key"].native
    substitute = rejection_key(key, encrypted, key_size)  # computed whatever the outcome
    if algorithm["algorithm"].native == "rsaes_oaep":
        params = algorithm["parameters"]
        digest = _OAEP_HASHES[params["hash_algorithm"]["algorithm"].native]()
        mgf_hash = _OAEP_HASHES[
            params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
        label = params["p_source_algorithm"]["parameters"].native or None
        oaep = padding.OAEP(mgf=padding.MGF1(mgf_hash), algorithm=digest, label=label)
        try:
            unwrapped = key.decrypt(encrypted, oaep)
        except ValueError:
            return substitute
    elif algorithm["algorithm"].native == "rsaes_pkcs1v15":
        try:
            unwrapped = key.decrypt(encrypted, padding.PKCS1v15())
        except ValueError:
            return substitute
    else:
        return substitute
    return unwrapped if len(unwrapped) == key_size else substitute


def rejection_key(key: rsa.RSAPrivateKey, encrypted: bytes, key_size: int) -> bytes:
    """The content key used when unwrapping ``encrypted`` fails: HMAC-SHA-256 of the
    encrypted key under a secret derived from the private exponent, cut to ``key_size``.

    Deterministic (one message, one outcome, however often it is sent) and unpredictable to
    anyone without the private key.
    """
    exponent = key.private_numbers().d
    secret = hashlib.sha256(b"mailroute implicit rejection\0"
                            + exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")).digest()
    tag = hmac.new(secret, key_size.to_bytes(2, "big") + encrypted, hashlib.sha256).digest()
    return tag[:key_size]


def _cbc(name: str, iv: bytes, key: bytes, ciphertext: list[memoryview]) -> bytes:
    block = 8 if name == "tripledes_3key" else 16
    size = sum(len(piece) for piece in ciphertext)
    if not size or size % block or len(iv) != block:
        raise ValueError("bad CBC input")
    cipher_algorithm = TripleDES(key) if block == 8 else algorithms.AES(key)
    decryptor = Cipher(cipher_algorithm, modes.CBC(iv)).decryptor()
    pieces = [decryptor.update(piece) for piece in ciphertext]
    pieces.append(decryptor.finalize())
    tail = b"".join(pieces)[-block:] if len(pieces[-2]) < block else pieces[-2][-block:]
    pad = tail[-1]
    # Check the padding without an early exit on the first wrong byte.
    good = 1 <= pad <= block
    expected = bytes((pad,)) * pad if good else b"\0"
    if not (hmac.compare_digest(tail[-len(expected):], expected) and good):
        raise ValueError("bad padding")
    return _joined_without_tail(pieces, pad)


def _joined_without_tail(pieces: list[bytes], drop: int) -> bytes:
    """``b"".join(pieces)[:-drop]`` with one copy instead of two."""
    views = [memoryview(p) for p in pieces if p]
    while drop:
        last = views.pop()
        if len(last) > drop:
            views.append(last[:len(last) - drop])
            break
        drop -= len(last)
    return b"".join(views)


def _gcm(algorithm: algos.EncryptionAlgorithm, key: bytes, ciphertext: list[memoryview],
         mac: bytes, aad: bytes) -> bytes:
    params = GcmParameters.load(algorithm["parameters"].dump())
    nonce = params["aes_nonce"].native
    if len(mac) != params["aes_icv_len"].native or not 12 <= len(mac) <= 16:
        raise ValueError("bad GCM parameters")
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, mac, min_tag_length=12)).decryptor()
    decryptor.authenticate_additional_data(aad)
    pieces = [decryptor.update(piece) for piece in ciphertext]
    pieces.append(decryptor.finalize())
    return pieces[0] if len(pieces) == 2 and not pieces[1] else b"".join(pieces)
