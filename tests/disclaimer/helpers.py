"""Running the filter and reading results with an independent parser (the stdlib's)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from mailroute import Filter, Pipeline, Result
from mailroute.item import Envelope

RENDERED_TEXT = "-- \nVertraulich / Confidential. mailroute-disclaimer-v1\n{greeting}\n"
MARKER = "Vertraulich / Confidential. mailroute-disclaimer-v1"


def run(step: Filter, data: bytes, envelope: Envelope | None = None) -> Result:
    """One-filter pipeline over ``data``; asserts it was accepted."""
    result = Pipeline(filters=(step,)).process(data, envelope)
    assert result.action == "accept", result.reply
    assert result.data is not None
    return result


def stdlib(data: bytes) -> EmailMessage:
    """``data`` parsed by the standard library."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def is_body(part: EmailMessage) -> bool:
    """A text/plain or text/html leaf that is not an attachment (stdlib's view)."""
    return (part.get_content_type() in ("text/plain", "text/html")
            and part.get_content_disposition() != "attachment"
            and part.get_filename() is None)


def body_texts(data: bytes) -> list[tuple[str, str]]:
    """``(content type, decoded text with LF line breaks)`` of every body, in order."""
    out = []
    for part in stdlib(data).walk():
        if not part.is_multipart() and is_body(part):
            text = part.get_content()
            assert isinstance(text, str)
            out.append((part.get_content_type(), text.replace("\r\n", "\n")))
    return out
