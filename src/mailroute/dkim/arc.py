"""ARC (RFC 8617): verify an incoming chain (dkimpy), seal after our own changes.

Sealing is our own, signed with ``cryptography`` (rsa-sha256, the only algorithm RFC 8617
defines: two PKCS#1 v1.5 signatures per seal, in C); verification stays with dkimpy, whose
RSA arithmetic is pure Python but only checks signatures (public exponent: cheap).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric import rsa

from mailroute.dkim import canon
from mailroute.dkim.keys import SigningKey
from mailroute.dkim.sign import body_of, header_list, signed_field, signed_header_data
from mailroute.dkim.verify import TxtLookup
from mailroute.errors import ConfigError, MailrouteError, SigningError
from mailroute.mime.headers import HeaderField
from mailroute.mime.message import Message
from mailroute.results import AuthResult, AuthStatus, format_auth_results

__all__ = ["ARC_FIELDS", "MAX_INSTANCE", "next_instance", "seal", "sealing_key",
           "verify_chain"]

ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
#: RFC 8617 section 4.2.1: a chain longer than this is invalid.
MAX_INSTANCE = 50
_SIGNED_ARC_FIELDS = ("arc-seal", "arc-message-signature")
_WEAK_ALGORITHM = re.compile(r"(?:^|;)\s*a\s*=\s*rsa-sha1\s*(?:;|$)", re.IGNORECASE)
_INSTANCE = re.compile(r"(?:^|;)\s*i\s*=\s*([0-9]{1,3})\s*(?:;|$)")


def _dnsfunc(lookup: TxtLookup | None) -> object:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        if lookup is None:
            return None
        found: Sequence[str] = lookup(name.decode("ascii", "replace").rstrip("."))
        return found[0].encode("utf-8") if found else None
    return dnsfunc


def verify_chain(message: Message, lookup: TxtLookup | None) -> AuthResult:
    """The ``arc`` result: ``none`` without ARC fields, else ``pass`` or ``fail`` as dkimpy
    validates the chain (``fail`` for one an earlier sealer marked ``cv=fail``)."""
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
    except (dkim.DKIMException, ValueError, LookupError, TypeError):
        # dkimpy lets binascii.Error (a ValueError) and the like out of a hostile set
        return AuthResult("arc", AuthStatus.FAIL, "malformed chain")
    # dkimpy answers None for a chain a sealer marked cv=fail ("terminated");
    # RFC 8617 section 5.2 makes that chain fail, never none
    status = AuthStatus.PASS if cv == b"pass" else AuthStatus.FAIL
    text = reason if isinstance(reason, str) else ""
    return AuthResult("arc", status, "" if status is AuthStatus.PASS else text[:80])


def sealing_key(key: SigningKey) -> rsa.RSAPrivateKey:
    """The RSA key of ``key``.

    Raises:
        ConfigError: not an RSA key (ARC seals are rsa-sha256).
    """
    if not isinstance(key.key, rsa.RSAPrivateKey):
        raise ConfigError("ARC sealing needs an RSA key (ARC defines rsa-sha256 only)")
    return key.key


def next_instance(message: Message) -> int | None:
    """The instance number of the set :func:`seal` would add, or ``None`` when no set may be
    added: the chain already has :data:`MAX_INSTANCE` sets, or an ARC field's ``i=`` is
    unreadable or beyond the limit (RFC 8617 section 4.2.1: such a chain fails, and the next
    number is unknown)."""
    highest = 0
    for field in message.headers:
        if field.lower_name in ARC_FIELDS:
            found = _INSTANCE.search(field.value)
            if found is None or not 1 <= int(found.group(1)) <= MAX_INSTANCE:
                return None
            highest = max(highest, int(found.group(1)))
    return highest + 1 if highest < MAX_INSTANCE else None


def _existing_sets(message: Message) -> dict[int, dict[str, HeaderField]]:
    """The ARC fields already present, by instance and field name, of a chain
    :func:`next_instance` accepted (so every ``i=`` is readable)."""
    sets: dict[int, dict[str, HeaderField]] = {}
    for field in message.headers:
        if field.lower_name in ARC_FIELDS:
            found = _INSTANCE.search(field.value)
            assert found is not None  # next_instance refused the chain otherwise
            sets.setdefault(int(found.group(1)), {}).setdefault(field.lower_name, field)
    return sets


def _chain_status(instance: int, results: Iterable[AuthResult]) -> str:
    """``cv=``: ``none`` for the first set, else what the incoming chain verified as."""
    if instance == 1:
        return "none"
    arc = [r for r in results if r.method == "arc"]
    return "pass" if len(arc) == 1 and arc[0].status is AuthStatus.PASS else "fail"


def seal(message: Message, key: rsa.RSAPrivateKey, *, domain: str, selector: str,
         authserv_id: str, results: Iterable[AuthResult], timestamp: int) -> Message:
    """``message`` with the next ARC set (AAR, AMS, AS) at the top; nothing else changes.

    ``results`` are this gateway's verification results (they become the AAR); the ``arc``
    result of the incoming chain decides ``cv=`` (RFC 8617 section 5.1.1).

    Raises:
        SigningError: the chain cannot be extended (:func:`next_instance`), or the key
            failed to sign.
    """
    results = tuple(results)
    instance = next_instance(message)
    if instance is None:
        raise SigningError("the ARC chain cannot be extended")
    sets = _existing_sets(message)
    cv = _chain_status(instance, results)
    aar = message.field("ARC-Authentication-Results",
                        f"i={instance}; {format_auth_results(authserv_id, results)}")
    body_hash = hashlib.sha256(canon.body(body_of(message), relaxed=True)).digest()
    names = header_list(message)
    ams = signed_field(message, "ARC-Message-Signature",
                  f"i={instance}; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s={selector};"
                  f" t={timestamp}; h={':'.join(names)};"
                  f" bh={base64.b64encode(body_hash).decode()};",
                  signed_header_data(message.headers, names, relaxed=True), key)
    chain = b""
    if cv != "fail":  # a failed chain is not vouched for: the seal covers its own set only
        for number in sorted(sets):
            for name in ("arc-authentication-results", "arc-message-signature", "arc-seal"):
                if name in sets[number]:
                    chain += canon.header(sets[number][name].raw, relaxed=True)
    chain += canon.header(aar.raw, relaxed=True) + canon.header(ams.raw, relaxed=True)
    arc_seal = signed_field(message, "ARC-Seal",
                       f"i={instance}; a=rsa-sha256; t={timestamp}; cv={cv}; d={domain};"
                       f" s={selector};", chain, key)
    return message.with_field(aar).with_field(ams).with_field(arc_seal)
