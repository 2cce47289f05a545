"""The e-mail addresses a certificate names, normalised for lookups.

Key stores index certificates by these; S/MIME verification compares a signer's addresses
with the message's From. Only ``cryptography`` (a core dependency) is needed here.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["certificate_emails", "normalise_address"]


def certificate_emails(cert: x509.Certificate) -> tuple[str, ...]:
    """The certificate's e-mail addresses: SAN rfc822Names, else the subject emailAddress.

    Domains are lower-cased; local parts are kept as written.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found = [str(v) for v in san.get_values_for_type(x509.RFC822Name)]
    except x509.ExtensionNotFound:
        found = []
    if not found:
        found = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    return tuple(normalise_address(a) for a in found)


def normalise_address(address: str) -> str:
    """``local@domain`` with the domain lower-cased and the local part kept."""
    local, at, domain = address.strip().rpartition("@")
    return f"{local}@{domain.lower()}" if at else address.strip()
