"""Helpers of the S/MIME regression tests: CBC messages taken apart and put back together
with chosen IVs and ciphertext blocks, as a padding-oracle attacker would."""

from __future__ import annotations

from asn1crypto import algos, cms
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mailroute.smime import base64_lines, encrypt
from tests.smime.pki import Pki, PrivateKey

BLOCK = 16
HEAD = (b"From: alice@example.org\r\nTo: gateway@example.net\r\nSubject: pin\r\n"
        b"MIME-Version: 1.0\r\n")
ENTITY = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
          b"Hello Bob, the new door code is below; please keep it to yourself.\r\n"
          b"Code: 1234\r\nRegards, Alice\r\n")


def enveloped(pki: Pki, entity: bytes = ENTITY, cipher: str = "aes-256-cbc") -> bytes:
    """DER ContentInfo: ``entity`` encrypted to alice with ``cipher`` and RSA v1.5."""
    return b"".join(encrypt([entity], [pki.alice.cert], cipher=cipher).chunks)


def message(der: bytes) -> bytes:
    """``der`` as an ``application/pkcs7-mime`` message from alice."""
    kind = b"authEnveloped-data" if b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x01\x17" in der[
        :40] else b"enveloped-data"
    return (HEAD + b"Content-Type: application/pkcs7-mime; smime-type=" + kind
            + b'; name="smime.p7m"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + base64_lines(iter([der])))


def content_key(der: bytes, key: PrivateKey) -> bytes:
    """The content-encryption key, unwrapped with the recipient's key (the test knows it)."""
    assert isinstance(key, rsa.RSAPrivateKey)
    info = cms.ContentInfo.load(der)
    wrapped = info["content"]["recipient_infos"][0].chosen["encrypted_key"].native
    return key.decrypt(wrapped, padding.PKCS1v15())


def iv_and_blocks(der: bytes) -> tuple[bytes, list[bytes]]:
    """The IV and the ciphertext blocks of a CBC EnvelopedData."""
    content = cms.ContentInfo.load(der)["content"]["encrypted_content_info"]
    iv = content["content_encryption_algorithm"]["parameters"].native
    data = content["encrypted_content"].native
    return iv, [data[i:i + BLOCK] for i in range(0, len(data), BLOCK)]


def rebuilt(der: bytes, iv: bytes, blocks: list[bytes]) -> bytes:
    """``der`` with another IV and other ciphertext blocks (the recipient infos kept)."""
    info = cms.ContentInfo.load(der)
    enveloped_data = info["content"]
    old = enveloped_data["encrypted_content_info"]
    enveloped_data["encrypted_content_info"] = cms.EncryptedContentInfo({
        "content_type": old["content_type"].native,
        "content_encryption_algorithm": algos.EncryptionAlgorithm(
            {"algorithm": old["content_encryption_algorithm"]["algorithm"].native,
             "parameters": iv}),
        "encrypted_content": b"".join(blocks)})
    der_out: bytes = cms.ContentInfo({"content_type": "enveloped_data",
                                      "content": enveloped_data}).dump(force=True)
    return der_out


def padding_valid(key: bytes, iv: bytes, blocks: list[bytes]) -> bool:
    """Whether the CBC plaintext ends in valid PKCS#7 padding (checked independently)."""
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    plain = decryptor.update(b"".join(blocks)) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    try:
        unpadder.update(plain)
        unpadder.finalize()
    except ValueError:
        return False
    return True


def block_decrypt(key: bytes, block: bytes) -> bytes:
    """One raw AES block decryption, D_k(block)."""
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - one block
    return decryptor.update(block) + decryptor.finalize()


def xor(*values: bytes) -> bytes:
    """Byte-wise XOR of equal-length values."""
    out = bytearray(len(values[0]))
    for value in values:
        for i, byte in enumerate(value):
            out[i] ^= byte
    return bytes(out)
