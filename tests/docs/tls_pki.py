"""Certificates for the topology tests: a test CA, the gateway's certificate (server and
client) and one for Exchange Online's endpoints (*.mail.protection.outlook.com)."""

from __future__ import annotations

import datetime
import smtplib
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.smtpclient import smtp_as

GATEWAY = "mailroute.example.net"
EXO = "example-net.mail.protection.outlook.com"


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, names: list[str],
           folder: Path, stem: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def make_pki(folder: Path) -> dict[str, Path]:
    """``ca``, ``gateway_cert``/``gateway_key`` and ``exo_cert``/``exo_key`` in ``folder``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test public CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    gateway = _issue(ca_key, ca_name, [GATEWAY], folder, GATEWAY)
    exo = _issue(ca_key, ca_name, ["mail.protection.outlook.com",
                                   "*.mail.protection.outlook.com"], folder, "exo")
    return {"ca": folder / "ca.crt", "gateway_cert": gateway[0], "gateway_key": gateway[1],
            "exo_cert": exo[0], "exo_key": exo[1]}


def exo_endpoint_context(pki: dict[str, Path]) -> ssl.SSLContext:
    """A server context for "Exchange Online's" endpoint that demands a client certificate
    from the test CA (the certificate-identified inbound connector)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_cert_chain(pki["exo_cert"], pki["exo_key"])
    return server


def gateway_client(port: int, source: str) -> smtplib.SMTP:
    """An SMTP client from ``source`` to the gateway on ``port`` whose STARTTLS checks the
    certificate against the gateway's name (the outbound connector's DomainValidation)."""
    return smtp_as(GATEWAY, port, source_address=(source, 0))
