"""Certificates and the private keys we hold for them, looked up by e-mail address.

:class:`CertificateStore` is the interface filters use; :class:`DirectoryCertStore` reads a
folder of PEM, DER and PKCS#12 files. A later policy-level store (harvested certificates,
trust levels, pinning) implements the same protocol: lookups by address for encryption and
signing, and every identity we hold a key for, for decryption.

Private keys, PKCS#12 bundles and passphrase files are secrets, read only through
:func:`~mailroute.keys.secretfile.read_secret_file` (mode 0600, regular file, no symbolic
link); certificates are public and read with the size cap alone.

The loaders here are also what the ``mailroute smime`` commands use for ``--cert``, ``--key``,
``--chain``, ``--trust`` and ``--recipient-cert`` files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from mailroute.errors import ConfigError
from mailroute.keys.addresses import certificate_emails, normalise_address
from mailroute.keys.secretfile import read_public_file, read_secret_file
from mailroute.records import record

__all__ = [
    "CertificateStore",
    "DirectoryCertStore",
    "PrivateKey",
    "StoredCertificate",
    "all_certificates",
    "key_belongs_to",
    "load_certificates",
    "load_private_key",
    "read_passphrase",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_PEM_MARK = b"-----BEGIN"
_CERT_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der"})
_KEY_SUFFIXES = frozenset({".key"})
_P12_SUFFIXES = frozenset({".p12", ".pfx"})


@record(frozen=True)
class StoredCertificate:
    """A certificate, its e-mail addresses and the private key when we hold it."""

    certificate: x509.Certificate
    emails: tuple[str, ...]
    key: PrivateKey | None = None
    source: str = ""


@runtime_checkable
class CertificateStore(Protocol):
    """Where S/MIME certificates and keys come from."""

    def certificates_for(self, address: str) -> tuple[StoredCertificate, ...]:
        """Certificates whose SAN rfc822Name is ``address`` (domain case-insensitive)."""
        ...

    def with_keys(self) -> tuple[StoredCertificate, ...]:
        """Every certificate we hold the private key for (decryption candidates)."""
        ...


@record(frozen=True)
class DirectoryCertStore:
    """A folder of certificate and key files, read once.

    ``*.pem``/``*.crt``/``*.cer``/``*.der`` hold certificates (PEM may hold several and a
    key), ``*.key`` private keys, ``*.p12``/``*.pfx`` PKCS#12 bundles. Keys are matched to
    certificates by public key.
    """

    entries: tuple[StoredCertificate, ...]

    @classmethod
    def load(cls, folder: Path, *, passphrase: bytes | None = None) -> DirectoryCertStore:
        """Read every file in ``folder`` (not recursive).

        Raises:
            ConfigError: the folder is unreadable, or a file cannot be parsed.
        """
        if not folder.is_dir():
            raise ConfigError("certificate store is not a directory", source=str(folder))
        certificates: list[tuple[x509.Certificate, str]] = []
        keys: list[PrivateKey] = []
        for path in sorted(folder.iterdir()):
            suffix = path.suffix.lower()
            if suffix in _P12_SUFFIXES:
                key, found = _load_pkcs12(path, passphrase)
                certificates += [(c, path.name) for c in found]
                keys += [key] if key is not None else []
            elif suffix in _CERT_SUFFIXES:
                certificates += [(c, path.name) for c in load_certificates(path)]
                if b"PRIVATE KEY-----" in _read(path):
                    keys.append(load_private_key(path, passphrase))
            elif suffix in _KEY_SUFFIXES:
                keys.append(load_private_key(path, passphrase))
        by_public = {_public_der(k): k for k in keys}
        entries = tuple(StoredCertificate(c, certificate_emails(c),
                                          by_public.get(_public_der(c)), source)
                        for c, source in certificates)
        return cls(entries)

    def certificates_for(self, address: str) -> tuple[StoredCertificate, ...]:
        """Certificates naming ``address``."""
        wanted = normalise_address(address)
        return tuple(e for e in self.entries if wanted in e.emails)

    def with_keys(self) -> tuple[StoredCertificate, ...]:
        """Certificates with their private keys."""
        return tuple(e for e in self.entries if e.key is not None)


def _public_der(item: PrivateKey | x509.Certificate) -> bytes:
    public = item.public_key()
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def key_belongs_to(key: PrivateKey, certificate: x509.Certificate) -> bool:
    """True when ``key`` is the private key of ``certificate``'s public key."""
    return _public_der(key) == _public_der(certificate)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, or the one in a DER file.

    Raises:
        ConfigError: unreadable, or no certificate in it.
    """
    data = _read(path)
    try:
        if _PEM_MARK in data:
            found = x509.load_pem_x509_certificates(data) if b"CERTIFICATE-----" in data else []
        else:
            found = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigError("cannot parse certificate", source=str(path)) from exc
    if not found:
        raise ConfigError("no certificate in file", source=str(path))
    return found


def load_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    """A PEM (PKCS#8 or traditional) or DER private key, decrypted with ``passphrase``.

    Raises:
        ConfigError: unreadable, accessible by group or others, a symbolic link or not a
            regular file, wrong passphrase, or an unsupported key type. The message never
            contains key material or the passphrase.
    """
    data = read_secret_file(path, what="private key file")
    try:
        if _PEM_MARK in data:
            key = serialization.load_pem_private_key(data, passphrase)
        else:
            key = serialization.load_der_private_key(data, passphrase)
    except (ValueError, TypeError):
        raise ConfigError("cannot load private key (wrong passphrase or format)",
                          source=str(path)) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                            ed25519.Ed25519PrivateKey)):
        raise ConfigError("unsupported private key type", source=str(path))
    return key


def _load_pkcs12(path: Path, passphrase: bytes | None
                 ) -> tuple[PrivateKey | None, list[x509.Certificate]]:
    try:
        bundle = pkcs12.load_pkcs12(read_secret_file(path, what="PKCS#12 file"), passphrase)
    except (ValueError, TypeError):
        raise ConfigError("cannot load PKCS#12 file (wrong passphrase or format)",
                          source=str(path)) from None
    certificates = [bundle.cert.certificate] if bundle.cert else []
    certificates += [c.certificate for c in bundle.additional_certs]
    key = bundle.key
    if key is not None and not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                                                ed25519.Ed25519PrivateKey)):
        key = None
    return key, certificates


def read_passphrase(path: Path | None) -> bytes | None:
    """The first line of a passphrase file (without its line break), or ``None``.

    Raises:
        ConfigError: the file fails the checks of
            :func:`~mailroute.keys.secretfile.read_secret_file`.
    """
    if path is None:
        return None
    data = read_secret_file(path, what="passphrase file")
    return data.splitlines()[0] if data.strip() else b""


def _read(path: Path) -> bytes:
    return read_public_file(path, what="certificate file")


def all_certificates(paths: Iterable[Path]) -> list[x509.Certificate]:
    """Every certificate in every file of ``paths``."""
    return [c for p in paths for c in load_certificates(p)]
