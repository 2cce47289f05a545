"""OpenPGP over a real GnuPG: key store, status-line verdicts and PGP/MIME structures.

The filters live in :mod:`mailroute.filters.pgp`; this package holds what they share:
:class:`~mailroute.pgp.store.KeyStore` (one private, offline GnuPG home per store),
the status-line verdicts of :mod:`mailroute.pgp.status`, key lookup by address
(:mod:`mailroute.pgp.keys`) and RFC 3156 building and finding (:mod:`mailroute.pgp.rfc3156`).
Needs the ``pgp`` extra (python-gnupg) and a ``gpg`` binary.
"""

from mailroute.pgp.keys import KeyFound, KeyInfo, KeyLookup, KeyMissing, MissingReason
from mailroute.pgp.status import (
    DecryptionVerdict,
    SignatureCheck,
    SignatureStatus,
    StatusLog,
    decryption_verdict,
    signature_checks,
)
from mailroute.pgp.store import DecryptResult, KeyStore, Signed, init_home
from mailroute.pgp.verify import MessageVerification, SignatureReport, Verdict, verify_message

__all__ = [
    "DecryptResult",
    "DecryptionVerdict",
    "KeyFound",
    "KeyInfo",
    "KeyLookup",
    "KeyMissing",
    "KeyStore",
    "MessageVerification",
    "MissingReason",
    "SignatureCheck",
    "SignatureReport",
    "SignatureStatus",
    "Signed",
    "StatusLog",
    "Verdict",
    "decryption_verdict",
    "init_home",
    "signature_checks",
    "verify_message",
]
