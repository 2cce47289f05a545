"""DKIM signing and verification, ARC, SPF and DMARC (the ``dkim`` extra).

Signing adds one ``DKIM-Signature`` field at the top and changes no other byte; the
verifier judges every signature. See docs/dkim.md for the order of filters.
"""

from mailroute.dkim.dns import DnsFile, load_dns_file, parse_dns_file
from mailroute.dkim.keys import SigningKey, load_signing_key, parse_signing_key
from mailroute.dkim.sign import sign_message
from mailroute.dkim.verify import SignatureResult, VerifyOptions, verify_message

__all__ = [
    "DnsFile",
    "SignatureResult",
    "SigningKey",
    "VerifyOptions",
    "load_dns_file",
    "load_signing_key",
    "parse_dns_file",
    "parse_signing_key",
    "sign_message",
    "verify_message",
]
