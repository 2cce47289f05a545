"""What routing can see of a real message: :class:`MessageFacts` from a parsed message.

Routing never looks at a body's text: it needs the header fields (transport rules match
them), the Message-ID and From (the marker binds them), the size, the number of Received
fields (hop counting), and a few facts Exchange Online derives from the MIME structure
(signed, encrypted, meeting request, delivery or read report, automatic reply).
"""

from __future__ import annotations

from mailroute.errors import MailrouteError
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.mime import HeaderField, Message, parse_addresses
from mailroute.routing.hop import MessageFacts, MessageFlag

__all__ = ["message_facts"]

_SIGNED_TYPES = frozenset({"multipart/signed"})
_ENCRYPTED_TYPES = frozenset({"multipart/encrypted"})
_PKCS7 = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_ENCRYPTED_SMIME = frozenset({"enveloped-data", "authenveloped-data"})


def message_facts(message: Message, *, size: int,
                  limits: Limits = DEFAULT_LIMITS) -> MessageFacts:
    """The routing view of ``message`` (``size`` is its length in bytes).

    Header values are RFC 2047-decoded where they can be (Exchange Online matches decoded
    text); a value that cannot be decoded is kept as written.
    """
    headers = tuple((f.name, _value(f, limits)) for f in message.headers if f.name)
    from_field = message.headers.get("From")
    return MessageFacts(
        headers=headers,
        message_id=message.headers.value("Message-ID") or "",
        from_addrs=_addresses(from_field, limits),
        flags=_flags(message),
        size=size,
        received_count=message.headers.count("Received"),
    )


def _value(field: HeaderField, limits: Limits) -> str:
    try:
        return field.decoded(limits)
    except MailrouteError:
        return field.value


def _addresses(field: HeaderField | None, limits: Limits) -> tuple[str, ...]:
    if field is None:
        return ()
    try:
        return parse_addresses(field, limits)
    except MailrouteError:
        return ()


def _flags(message: Message) -> frozenset[MessageFlag]:
    flags: set[MessageFlag] = set()
    root = message.root
    smime_type = (root.content_type.param("smime-type") or "").lower()
    if root.mime_type in _SIGNED_TYPES or (root.mime_type in _PKCS7
                                           and smime_type == "signed-data"):
        flags.add(MessageFlag.SIGNED)
    if root.mime_type in _ENCRYPTED_TYPES or (root.mime_type in _PKCS7
                                              and smime_type in _ENCRYPTED_SMIME):
        flags.add(MessageFlag.ENCRYPTED)
    if root.mime_type == "multipart/report":
        report = (root.content_type.param("report-type") or "").lower()
        if report == "delivery-status":
            flags.add(MessageFlag.DSN)
        elif report == "disposition-notification":
            flags.add(MessageFlag.READ_RECEIPT)
    auto = (message.headers.value("Auto-Submitted") or "").lower()
    if auto.startswith("auto-replied"):
        flags.add(MessageFlag.OOF)
    content_class = (message.headers.value("Content-Class") or "").lower()
    if "calendarmessage" in content_class or any(
            part.mime_type == "text/calendar" and part.content_type.param("method")
            for _, part in message.walk()):
        flags.add(MessageFlag.CALENDARING)
    if message.headers.get("X-MS-Journal-Report") is not None:
        flags.add(MessageFlag.JOURNAL_REPORT)
    return frozenset(flags)
