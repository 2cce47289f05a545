"""Keys, key records and messages the DKIM, SPF, DMARC and ARC tests share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailroute.dkim import DnsFile, SigningKey, load_signing_key
from mailroute.testing import build_message

DOMAIN = "example.net"
NOW = 1_790_000_000


@dataclass(frozen=True)
class DkimWorld:
    """Key files (RSA-2048 PKCS#8, RSA traditional, Ed25519 PKCS#8) and their DNS records."""

    folder: Path
    rsa_path: Path
    rsa_traditional_path: Path
    ed_path: Path
    rsa: SigningKey
    ed: SigningKey
    records: dict[str, str]

    def dns(self, **extra: str) -> DnsFile:
        """The key records (``rsa._domainkey.example.net``, ``ed._domainkey...``) and more."""
        records = {**self.records, **extra}
        return DnsFile({name: [value] for name, value in records.items()})

    def dns_file(self, name: str = "dns.txt", **extra: str) -> Path:
        """The records as a ``--dns-file``."""
        path = self.folder / name
        records = {**self.records, **extra}
        path.write_text("".join(f"{k} {v}\n" for k, v in records.items()), encoding="utf-8")
        return path


def _write(path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
           form: serialization.PrivateFormat) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, form,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> DkimWorld:
    """One RSA and one Ed25519 key for example.net, written as opendkim/openssl write them."""
    folder = tmp_path_factory.mktemp("dkim")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pkcs8 = serialization.PrivateFormat.PKCS8
    rsa_path = _write(folder / "rsa.pem", rsa_key, pkcs8)
    traditional = _write(folder / "rsa-trad.pem", rsa_key,
                         serialization.PrivateFormat.TraditionalOpenSSL)
    ed_path = _write(folder / "ed.pem", ed_key, pkcs8)
    rsa_signing, ed_signing = load_signing_key(rsa_path), load_signing_key(ed_path)
    records = {f"rsa._domainkey.{DOMAIN}": rsa_signing.public_record(),
               f"ed._domainkey.{DOMAIN}": ed_signing.public_record()}
    return DkimWorld(folder, rsa_path, traditional, ed_path, rsa_signing, ed_signing, records)


def message(body: str = "Hello  world.\r\n\r\nRegards,\r\nAlice \r\n") -> bytes:
    """A plain message from alice@example.net (trailing white space on purpose)."""
    return build_message(sender="Alice <alice@example.net>", body=body)


def dnsfunc(dns: DnsFile) -> Callable[..., bytes | None]:
    """dkimpy's ``dnsfunc`` (bytes name -> first TXT value) over ``dns``."""
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        found = dns(name.decode().rstrip("."))
        return found[0].encode() if found else None
    return lookup
