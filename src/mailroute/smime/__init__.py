"""S/MIME over bytes: CMS signing, encryption, decryption and verification.

This package knows CMS (RFC 5652, 5083, 5084, 8551) and nothing about MIME; the MIME layer
is :mod:`mailroute.filters.smime`. ASN.1 structure is asn1crypto's, the maths
``cryptography``'s.
"""

from mailroute.smime.armor import base64_lines
from mailroute.smime.attributes import KeyPreference
from mailroute.smime.decrypt import DECRYPTION_FAILED, Decrypted, Identity, decrypt
from mailroute.smime.encrypt import Encrypted, encrypt
from mailroute.smime.sign import Signer, SigningKey, sign
from mailroute.smime.trust import ChainVerdict, TrustAnchors, certificate_emails
from mailroute.smime.verify import SignerResult, SignerStatus, Verification, verify

__all__ = [
    "DECRYPTION_FAILED",
    "ChainVerdict",
    "Decrypted",
    "Encrypted",
    "Identity",
    "KeyPreference",
    "Signer",
    "SignerResult",
    "SignerStatus",
    "SigningKey",
    "TrustAnchors",
    "Verification",
    "base64_lines",
    "certificate_emails",
    "decrypt",
    "encrypt",
    "sign",
    "verify",
]
