"""Algorithm identifiers: names used by mailroute, asn1crypto names and cryptography objects."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

__all__ = [
    "CAPABILITIES",
    "CONTENT_CIPHERS",
    "DIGESTS",
    "WEAK_DIGESTS",
    "WEAK_HASHES",
    "digest_for",
    "micalg_name",
    "verification_hash",
]

# mailroute digest name -> hash class. SHA-1 and MD5 are known only to be refused by name.
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
WEAK_DIGESTS = frozenset({"md5", "sha1", "md2"})
# Weak digests a signature is still checked with, so that a forgery is reported as one and
# only a sound signature gets the policy verdict ``weak-algorithm``.
WEAK_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha1": hashes.SHA1, "md5": hashes.MD5}

# --cipher value -> (asn1crypto algorithm name, key length, authenticated)
CONTENT_CIPHERS: dict[str, tuple[str, int, bool]] = {
    "aes-256-cbc": ("aes256_cbc", 32, False),
    "aes-128-cbc": ("aes128_cbc", 16, False),
    "aes-256-gcm": ("aes256_gcm", 32, True),
    "aes-128-gcm": ("aes128_gcm", 16, True),
}

# What we advertise when signing (RFC 8551 section 2.5.2): strongest and authenticated first.
CAPABILITIES: tuple[str, ...] = (
    "aes256_gcm", "aes128_gcm", "aes256_cbc", "aes192_cbc", "aes128_cbc", "rsaes_oaep",
)


def digest_for(name: str) -> hashes.HashAlgorithm:
    """The hash object for a digest name (``sha256`` ...).

    Raises:
        KeyError: not a digest mailroute accepts.
    """
    return DIGESTS[name]()


def micalg_name(digest: str) -> str:
    """The ``micalg`` parameter value for a digest name (RFC 8551 section 3.5.3.2)."""
    return "sha-" + digest.removeprefix("sha")


def verification_hash(name: str) -> hashes.HashAlgorithm:
    """The hash object to check a signature made with digest ``name``, weak ones included.

    Raises:
        KeyError: a digest mailroute cannot compute.
    """
    return (DIGESTS.get(name) or WEAK_HASHES[name])()
