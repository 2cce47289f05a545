"""ARC (RFC 8617) through dkimpy: verify an incoming chain, seal after our own changes.

dkimpy's ``arc_sign`` always writes rsa-sha256 (it ignores its algorithm argument), so a
sealing key must be RSA; its RSA arithmetic is pure Python (two signatures per seal).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailroute.dkim.keys import SigningKey
from mailroute.dkim.verify import TxtLookup
from mailroute.errors import ConfigError, MailrouteError, SigningError
from mailroute.mime.headers import HeaderField
from mailroute.mime.message import Message
from mailroute.results import AuthResult, AuthStatus, format_auth_results

__all__ = ["ARC_FIELDS", "seal", "sealing_pem", "verify_chain"]

ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
_SIGNED_ARC_FIELDS = ("arc-seal", "arc-message-signature")
_WEAK_ALGORITHM = re.compile(r"(?:^|;)\s*a\s*=\s*rsa-sha1\s*(?:;|$)", re.IGNORECASE)


def _dnsfunc(lookup: TxtLookup | None) -> object:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        if lookup is None:
            return None
        found: Sequence[str] = lookup(name.decode("ascii", "replace").rstrip("."))
        return found[0].encode("utf-8") if found else None
    return dnsfunc


def verify_chain(message: Message, lookup: TxtLookup | None) -> AuthResult:
    """The ``arc`` result: ``none`` without ARC fields, else dkimpy's chain validation."""
    if not any(f.lower_name in ARC_FIELDS for f in message.headers):
        return AuthResult("arc", AuthStatus.NONE)
    if any(f.lower_name in _SIGNED_ARC_FIELDS and _WEAK_ALGORITHM.search(f.value)
           for f in message.headers):
        return AuthResult("arc", AuthStatus.FAIL, "rsa-sha1 (RFC 8301)")  # dkimpy accepts it
    import dkim  # the dkim extra

    try:
        cv, _results, reason = dkim.arc_verify(message.to_bytes(), dnsfunc=_dnsfunc(lookup))
    except MailrouteError as error:
        status = AuthStatus.TEMPERROR if error.retryable else AuthStatus.PERMERROR
        return AuthResult("arc", status, "key lookup failed")
    except (OSError, TimeoutError):
        return AuthResult("arc", AuthStatus.TEMPERROR, "key lookup failed")
    except dkim.DKIMException:
        return AuthResult("arc", AuthStatus.FAIL, "malformed chain")
    status = {b"pass": AuthStatus.PASS, b"fail": AuthStatus.FAIL}.get(cv, AuthStatus.NONE)
    text = reason if isinstance(reason, str) else ""
    return AuthResult("arc", status, "" if status is AuthStatus.PASS else text[:80])


def sealing_pem(key: SigningKey) -> bytes:
    """The key as the PKCS#1 PEM dkimpy reads.

    Raises:
        ConfigError: not an RSA key (ARC seals are rsa-sha256).
    """
    if not isinstance(key.key, rsa.RSAPrivateKey):
        raise ConfigError("ARC sealing needs an RSA key (dkimpy seals rsa-sha256 only)")
    return key.key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())


def seal(message: Message, pem: bytes, *, domain: str, selector: str, authserv_id: str,
         results: Iterable[AuthResult], timestamp: int) -> Message:
    """``message`` with the next ARC set (AAR, AMS, AS) at the top; nothing else changes.

    ``results`` are this gateway's verification results (they become the AAR); they must
    include the ``arc`` result of the incoming chain.

    Raises:
        SigningError: dkimpy refused to seal (a broken incoming chain past its limits).
    """
    import dkim  # the dkim extra

    ar_value = format_auth_results(authserv_id, results)
    data = b"Authentication-Results: " + ar_value.encode("utf-8") + message.newline
    data += message.to_bytes()
    try:
        lines = dkim.arc_sign(data, selector.encode(), domain.encode(), pem,
                              authserv_id.encode(), timestamp=timestamp,
                              linesep=message.newline)
    except dkim.DKIMException as exc:
        raise SigningError(f"ARC sealing failed: {exc.__class__.__name__}") from exc
    if not lines:
        raise SigningError("ARC sealing produced no fields")
    for raw in reversed(lines):
        name = raw.split(b":", 1)[0].decode("ascii")
        message = message.with_field(HeaderField(raw, name))
    return message
