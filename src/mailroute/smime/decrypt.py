"""Decryption of CMS EnvelopedData and AuthEnvelopedData, DER or BER.

Supported: key transport with RSA PKCS#1 v1.5 or RSAES-OAEP, recipients named by issuer and
serial number or by subject key identifier; AES-128/192/256-CBC, 3DES-CBC (old mail) and
AES-GCM. Recipient infos we cannot use (key agreement, KEK, password) are skipped, not fatal.

Every failure raises the same :class:`~mailroute.errors.DecryptionError` with the same text,
and an RSA PKCS#1 v1.5 unwrap that fails continues with a random key of the right length
(RFC 3218 section 2.3), so neither the error nor the path taken tells a padding oracle
anything.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mailroute.errors import DecryptionError, MalformedMessageError
from mailroute.smime.der import GcmParameters, header, load_content_info

__all__ = ["DECRYPTION_FAILED", "Decrypted", "Identity", "decrypt"]

DECRYPTION_FAILED = "cannot decrypt the message"
_CBC = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32, "tripledes_3key": 24}
_GCM = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}
_NAMES = {"aes128_cbc": "aes-128-cbc", "aes192_cbc": "aes-192-cbc", "aes256_cbc": "aes-256-cbc",
          "tripledes_3key": "des-ede3-cbc", "aes128_gcm": "aes-128-gcm",
          "aes192_gcm": "aes-192-gcm", "aes256_gcm": "aes-256-gcm"}
_OAEP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512}


@dataclass(frozen=True, slots=True)
class Identity:
    """A certificate and the private key we hold for it."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
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
    except (DecryptionError, MalformedMessageError, ValueError, TypeError, KeyError,
            InvalidTag):
        raise DecryptionError(DECRYPTION_FAILED) from None


def _decrypt(data: bytes, identities: Sequence[Identity], max_size: int) -> Decrypted:
    info = load_content_info(data, max_size=max_size)
    kind = info["content_type"].native
    if kind == "enveloped_data":
        envelope = info["content"]
        content_info = envelope["encrypted_content_info"]
        mac, aad = None, b""
    elif kind == "authenticated_enveloped_data":
        envelope = info["content"]
        content_info = envelope["auth_encrypted_content_info"]
        mac = envelope["mac"].native
        attrs = envelope["auth_attrs"]
        aad = b"" if attrs.native is None else header(0x31, len(attrs.contents)) + attrs.contents
    else:
        raise DecryptionError(DECRYPTION_FAILED)
    algorithm = content_info["content_encryption_algorithm"]
    name = algorithm["algorithm"].native
    key_size = _CBC.get(name) or _GCM.get(name)
    if key_size is None or (name in _GCM) != (mac is not None):
        raise DecryptionError(DECRYPTION_FAILED)
    ciphertext = content_info["encrypted_content"].native or b""
    candidates = _unwrapped_keys(envelope["recipient_infos"], identities, key_size)
    if not candidates:
        raise DecryptionError(DECRYPTION_FAILED)
    for position, key in enumerate(candidates):
        try:
            if mac is not None:
                plaintext = _gcm(algorithm, key, ciphertext, mac, aad)
            else:
                plaintext = _cbc(name, algorithm["parameters"].native, key, ciphertext)
        except (ValueError, InvalidTag):
            if position == len(candidates) - 1:
                raise
            continue
        return Decrypted(plaintext, _NAMES[name], mac is not None)
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
    random_key = os.urandom(key_size)  # drawn before trying, whatever the outcome
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
            return random_key
    elif algorithm["algorithm"].native == "rsaes_pkcs1v15":
        try:
            unwrapped = key.decrypt(encrypted, padding.PKCS1v15())
        except ValueError:
            return random_key
    else:
        return random_key
    return unwrapped if len(unwrapped) == key_size else random_key


def _cbc(name: str, iv: bytes, key: bytes, ciphertext: bytes) -> bytes:
    block = 8 if name == "tripledes_3key" else 16
    if not ciphertext or len(ciphertext) % block or len(iv) != block:
        raise ValueError("bad CBC input")
    cipher_algorithm = TripleDES(key) if block == 8 else algorithms.AES(key)
    decryptor = Cipher(cipher_algorithm, modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    pad = padded[-1]
    # Check the padding without an early exit on the first wrong byte.
    good = 1 <= pad <= block
    expected = bytes((pad,)) * pad if good else b"\0"
    if not (hmac.compare_digest(padded[-len(expected):], expected) and good):
        raise ValueError("bad padding")
    return padded[:-pad]


def _gcm(algorithm: object, key: bytes, ciphertext: bytes, mac: bytes, aad: bytes) -> bytes:
    params = GcmParameters.load(algorithm["parameters"].dump())  # type: ignore[index]
    nonce = params["aes_nonce"].native
    if len(mac) != params["aes_icv_len"].native or not 12 <= len(mac) <= 16:
        raise ValueError("bad GCM parameters")
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, mac, min_tag_length=12)).decryptor()
    decryptor.authenticate_additional_data(aad)
    return decryptor.update(ciphertext) + decryptor.finalize()
