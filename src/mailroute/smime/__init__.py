"""S/MIME over bytes: CMS signing, encryption, decryption and verification.

The CMS modules (RFC 5652, 5083, 5084, 8551) know nothing about MIME; :mod:`.entity` is the
MIME side (which bytes are signed or encrypted, the entities carrying CMS), and
:mod:`mailroute.filters.smime` the filters. ASN.1 structure is asn1crypto's, the maths
``cryptography``'s.
"""

from mailroute.keys.addresses import certificate_emails
from mailroute.smime.armor import base64_lines
from mailroute.smime.attributes import KeyPreference
from mailroute.smime.decrypt import DECRYPTION_FAILED, Decrypted, Identity, decrypt
from mailroute.smime.encrypt import Encrypted, encrypt
from mailroute.smime.sign import Signer, SigningKey, sign
from mailroute.smime.trust import ChainVerdict, TrustAnchors
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
