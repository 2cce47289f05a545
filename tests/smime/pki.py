"""A throwaway PKI for the S/MIME tests: root, issuing CA, users, written as files."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Identity:
    """A certificate, its key and the files they were written to."""

    name: str
    cert: x509.Certificate
    key: PrivateKey
    cert_path: Path
    key_path: Path

    @property
    def rsa_key(self) -> rsa.RSAPrivateKey:
        """The key of an RSA identity: S/MIME decryption takes RSA keys only."""
        if not isinstance(self.key, rsa.RSAPrivateKey):
            raise TypeError(f"{self.name} has a {type(self.key).__name__}, not an RSA key")
        return self.key


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mailroute Test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key(kind: str) -> PrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def issue(folder: Path, name: str, *, issuer: Identity | None, ca: bool = False,
          email: str | None = None, kind: str = "rsa", not_before: dt.datetime | None = None,
          not_after: dt.datetime | None = None,
          eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
          dns_names: tuple[str, ...] = (),
          extensions: tuple[x509.ExtensionType, ...] = ()) -> Identity:
    """Issue a certificate (self-signed when ``issuer`` is None) and write PEM files;
    ``extensions`` are added as they are, not critical."""
    key = _key(kind)
    subject = _name(name)
    start = not_before or NOW - dt.timedelta(days=1)
    end = not_after or NOW + dt.timedelta(days=365)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        if issuer is not None:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                        critical=True)
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=kind == "rsa", data_encipherment=False,
            key_agreement=kind == "ec", key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        if email:
            alt_names.append(x509.RFC822Name(email))
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names),
                                            critical=False)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    cert_path = folder / f"{name}.crt"
    key_path = folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)  # mailroute refuses private keys readable by others
    return Identity(name, cert, key, cert_path, key_path)


@dataclass(frozen=True)
class Pki:
    """Everything the tests need: two trust anchors and several users."""

    folder: Path
    root: Identity
    issuing: Identity
    alice: Identity  # RSA, alice@example.org
    bob: Identity  # EC P-256, bob@example.net
    dave: Identity  # RSA, dave@example.org, a second RSA recipient
    expired: Identity  # RSA, old@example.org, expired yesterday
    other_root: Identity  # an unrelated CA
    chain_path: Path  # the issuing CA certificate


def build_pki(folder: Path) -> Pki:
    """Create the PKI below ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    root = issue(folder, "root", issuer=None, ca=True)
    issuing = issue(folder, "issuing", issuer=root, ca=True)
    alice = issue(folder, "alice", issuer=issuing, email="alice@example.org")
    bob = issue(folder, "bob", issuer=issuing, email="bob@example.net", kind="ec")
    dave = issue(folder, "dave", issuer=issuing, email="dave@example.org")
    expired = issue(folder, "expired", issuer=issuing, email="old@example.org",
                    not_before=NOW - dt.timedelta(days=400),
                    not_after=NOW - dt.timedelta(days=1))
    other_root = issue(folder, "other-root", issuer=None, ca=True)
    return Pki(folder, root, issuing, alice, bob, dave, expired, other_root,
               issuing.cert_path)
