"""DKIM signing: one ``DKIM-Signature`` field added at the top, every other byte kept.

rsa-sha256 and ed25519-sha256 (RFC 8463), relaxed/relaxed, signed with ``cryptography``
(PKCS#1 v1.5 and Ed25519 are deterministic: the same bytes dkimpy would write, in C).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, utils

from mailroute.dkim import canon
from mailroute.dkim.keys import PrivateKey, SigningKey
from mailroute.errors import AmbiguousMessageError, MalformedMessageError, SigningError
from mailroute.mime.headers import HeaderField
from mailroute.mime.message import Message

__all__ = ["OVERSIGNED", "OVERSIGNED_WHEN_PRESENT", "SIGNED_ONCE", "body_of", "header_list",
           "sign_data", "sign_message", "signed_field", "signed_header_data"]

#: Signed once more than present, so that none can be added without breaking the signature.
OVERSIGNED = ("from", "to", "cc", "subject", "date", "message-id", "content-type",
              "mime-version")
#: Oversigned only when present: ``marker-set``, which runs after the signers, gives a
#: message without a Message-ID one, and that must not break their signatures.
OVERSIGNED_WHEN_PRESENT = frozenset({"message-id"})
#: The longest b= value written as one word (RSA-4096 writes 684 characters).
_LONGEST_UNBROKEN_B = 900
#: Signed as often as present.
SIGNED_ONCE = ("reply-to", "sender", "in-reply-to", "references",
               "content-transfer-encoding", "list-id", "list-unsubscribe",
               "list-unsubscribe-post")


def body_of(message: Message) -> bytes:
    """The body bytes of ``message`` (everything after the blank line)."""
    root = message.root
    data = root.to_bytes()
    return data[len(root.headers.to_bytes()) + len(root.separator):]


def header_list(message: Message, oversigned: Iterable[str] = OVERSIGNED,
                once: Iterable[str] = SIGNED_ONCE) -> list[str]:
    """The ``h=`` list for ``message``: oversigned names one extra time."""
    names: list[str] = []
    for name in oversigned:
        present = message.headers.count(name)
        if present or name not in OVERSIGNED_WHEN_PRESENT:
            names.extend([name] * (present + 1))
    for name in once:
        names.extend([name] * message.headers.count(name))
    return names


def signed_header_data(fields: Iterable[HeaderField], names: Iterable[str],
                       relaxed: bool) -> bytes:
    """The canonical header fields ``names`` select, each instance bottom-up (RFC 6376 5.4.2)."""
    remaining: dict[str, list[HeaderField]] = {}
    for field in fields:
        remaining.setdefault(field.lower_name, []).append(field)
    parts: list[bytes] = []
    for name in names:
        stack = remaining.get(name.lower())
        if stack:
            parts.append(canon.header(stack.pop().raw, relaxed))
    return b"".join(parts)


def sign_data(key: PrivateKey, data: bytes) -> str:
    """The base64 signature of ``key`` over the SHA-256 of ``data`` (a DKIM or ARC ``b=``).

    Raises:
        SigningError: the key failed to sign.
    """
    digest = hashlib.sha256(data).digest()
    try:
        if isinstance(key, ed25519.Ed25519PrivateKey):
            signature = key.sign(digest)
        else:
            signature = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    except ValueError as exc:  # pragma: no cover - a loaded key signs
        raise SigningError("signing failed") from exc
    return base64.b64encode(signature).decode()


def signed_field(message: Message, name: str, tags: str, data: bytes,
                 key: PrivateKey) -> HeaderField:
    """Field ``name: tags b=...``, signed over ``data`` and its own form without ``b=``.

    Raises:
        SigningError: the key failed to sign.
    """
    unsigned = message.field(name, f"{tags} b=")
    data += canon.header(canon.strip_b_value(unsigned.raw), relaxed=True)[:-2]
    signature = sign_data(key, data)
    if len(signature) > _LONGEST_UNBROKEN_B:
        # one word is one line: a key over about 5,000 bits would write a line over
        # RFC 5322's 998 octets; white space inside b= is ignored (RFC 6376 3.5)
        signature = " ".join(signature[at:at + 76] for at in range(0, len(signature), 76))
    field = message.field(name, f"{tags} b={signature}")
    if canon.header(canon.strip_b_value(field.raw), True) != canon.header(unsigned.raw, True):
        raise SigningError(f"{name} folding changed the signed form")  # pragma: no cover
    return field


def sign_message(message: Message, key: SigningKey, *, domain: str, selector: str,
                 timestamp: int, expire_after: int | None = None) -> Message:
    """``message`` with a new DKIM-Signature at the top (nothing else changes).

    Raises:
        AmbiguousMessageError: the message holds parser-differential hazards (signing it
            would vouch for content another parser reads differently).
        MalformedMessageError: no From field.
        SigningError: the key failed to sign.
    """
    if any(d.ambiguous for d in message.defects):
        raise AmbiguousMessageError("refusing to DKIM-sign an ambiguous message")
    if message.headers.count("From") != 1:
        raise MalformedMessageError("a message to DKIM-sign needs exactly one From field")
    body_hash = hashlib.sha256(canon.body(body_of(message), relaxed=True)).digest()
    names = header_list(message)
    tags = [f"v=1; a={key.algorithm}; c=relaxed/relaxed; d={domain}; s={selector};",
            f"t={timestamp};"]
    if expire_after is not None:
        tags.append(f"x={timestamp + expire_after};")
    tags += [f"h={':'.join(names)};", f"bh={base64.b64encode(body_hash).decode()};"]
    data = signed_header_data(message.headers, names, relaxed=True)
    return message.with_field(signed_field(message, "DKIM-Signature", " ".join(tags), data,
                                           key.key))
