"""The notification a sender gets when his message is held (RFC 3834 auto-reply).

Sent with the null sender (no bounce of a bounce), ``Auto-Submitted: auto-replied``, from
``postmaster`` of the sender's own domain. Every value that comes from the message goes
through the header writer (:func:`mailroute.mime.headers.make_field`), which refuses line
breaks and encodes non-ASCII text, so nothing from the held message can add header fields.
An internationalised sender address is written as UTF-8 (RFC 6532): the notice then goes
with SMTPUTF8, and an encoded word in an address field is no address.
"""

from __future__ import annotations

import email.utils
import secrets

from mailroute.mime.headers import make_field

__all__ = ["held_notification"]

_MAX_SUBJECT = 200


def held_notification(*, sender: str, subject: str, recipients: tuple[str, ...],
                      reason: str, quarantine_id: str, now: float) -> bytes:
    """The notification to ``sender`` that his message to ``recipients`` was held."""
    domain = sender.rpartition("@")[2] or "localhost"
    subject = " ".join(subject.split())[:_MAX_SUBJECT]
    fields = [
        make_field("From", f"Mail gateway <postmaster@{domain}>", utf8=True),
        make_field("To", f"<{sender}>", utf8=True),
        make_field("Subject", f"Held, not delivered: {subject}" if subject
                   else "Held, not delivered"),
        make_field("Date", email.utils.formatdate(now, usegmt=True)),
        make_field("Message-ID", f"<{secrets.token_hex(12)}@{domain}>", utf8=True),
        make_field("Auto-Submitted", "auto-replied"),
        make_field("MIME-Version", "1.0"),
        make_field("Content-Type", "text/plain; charset=utf-8"),
        make_field("Content-Transfer-Encoding", "8bit"),
    ]
    body = (f"Your message was not delivered to: {', '.join(recipients)}\r\n\r\n"
            f"{' '.join(reason.split())}\r\n\r\n"
            f"It is kept on the gateway (reference {quarantine_id}). An administrator can\r\n"
            "send it on once the recipient's key is known; you need not send it again.\r\n")
    return b"".join(f.raw for f in fields) + b"\r\n" + body.encode("utf-8")
