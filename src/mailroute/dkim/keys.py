"""DKIM keys: private keys for signing (PEM files) and public keys from DNS key records."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailroute.errors import ConfigError
from mailroute.keys.secretfile import read_secret_file
from mailroute.records import record

__all__ = [
    "ALGORITHMS",
    "KeyRecord",
    "PublicKey",
    "SigningKey",
    "load_signing_key",
    "parse_key_record",
    "parse_signing_key",
    "parse_tags",
]

#: The signing algorithms mailroute writes and accepts (RFC 8301, RFC 8463).
ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@record(frozen=True)
class SigningKey:
    """A private key and the algorithm it signs with (``rsa-sha256`` or ``ed25519-sha256``)."""

    key: PrivateKey
    algorithm: str

    def public_record(self) -> str:
        """The DNS TXT value publishing the public half (``v=DKIM1; k=...; p=...``)."""
        public = self.key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            der = public.public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
            return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def parse_signing_key(data: bytes, *, source: str = "<key>") -> SigningKey:
    """A PEM private key: PKCS#8 or traditional RSA, or Ed25519 as PKCS#8.

    Raises:
        ConfigError: not a PEM key, encrypted, of another type, or RSA under 1024 bits.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError("not an unencrypted PEM private key", source=source) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise ConfigError("RSA key under 1024 bits (RFC 8301)", source=source)
        return SigningKey(key, "rsa-sha256")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return SigningKey(key, "ed25519-sha256")
    raise ConfigError("DKIM keys are RSA or Ed25519", source=source)


def load_signing_key(path: Path) -> SigningKey:
    """Read :func:`parse_signing_key` from ``path``.

    Raises:
        ConfigError: unreadable or unusable key file, or one that fails the secret-file
            checks of :func:`~mailroute.keys.secretfile.read_secret_file`.
    """
    return parse_signing_key(read_secret_file(path, what="DKIM key file"), source=str(path))


def parse_tags(value: str) -> dict[str, str]:
    """A DKIM tag=value list (RFC 6376 3.2); white space inside values removed.

    Raises:
        ValueError: a tag without ``=``, an invalid name, or a tag given twice.
    """
    tags: dict[str, str] = {}
    for item in value.split(";"):
        item = item.strip(" \t\r\n")
        if not item:
            continue
        name, eq, content = item.partition("=")
        name = name.strip(" \t\r\n")
        if not eq or not name.isascii() or not name.replace("_", "a").isalnum():
            raise ValueError("malformed tag list")
        if name in tags:
            raise ValueError(f"tag {name} given twice")
        tags[name] = "".join(content.split())
    return tags


@record(frozen=True)
class KeyRecord:
    """A parsed DKIM key record: the public key (``None`` when revoked) and its tags."""

    key: PublicKey | None
    key_type: str
    hash_algorithms: tuple[str, ...]
    flags: tuple[str, ...]

    @property
    def key_bits(self) -> int:
        """The RSA modulus size in bits (256 for Ed25519, 0 when revoked)."""
        if isinstance(self.key, rsa.RSAPublicKey):
            return self.key.key_size
        return 256 if self.key is not None else 0


def parse_key_record(value: str) -> KeyRecord:
    """A DKIM key record (RFC 6376 3.6.1).

    Raises:
        ValueError: not a usable DKIM1 key record.
    """
    tags = parse_tags(value)
    if tags.get("v", "DKIM1") != "DKIM1":
        raise ValueError("key record version is not DKIM1")
    services = [s.strip() for s in tags.get("s", "*").split(":")]
    if "*" not in services and "email" not in services:
        raise ValueError("key record is not for email (s=)")
    key_type = tags.get("k", "rsa")
    hashes = tuple(h for h in tags.get("h", "").split(":") if h)
    flags = tuple(f for f in tags.get("t", "").split(":") if f)
    if "p" not in tags:
        raise ValueError("key record has no p= tag")
    if not tags["p"]:
        return KeyRecord(None, key_type, hashes, flags)
    try:
        raw = base64.b64decode(tags["p"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("key record p= is not base64") from exc
    key: PublicKey
    if key_type == "rsa":
        try:
            loaded = serialization.load_der_public_key(raw)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError("key record p= is not an RSA public key") from exc
        if not isinstance(loaded, rsa.RSAPublicKey):
            raise ValueError("key record p= is not an RSA public key")
        key = loaded
    elif key_type == "ed25519":
        if len(raw) != 32:
            raise ValueError("Ed25519 key record p= is not 32 bytes")
        key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    else:
        raise ValueError(f"unknown key type {key_type[:20]!r}")
    return KeyRecord(key, key_type, hashes, flags)
