"""The one log line per message that every adapter writes (pipe, serve), in one format.

``VERDICT STATUS-LINE; queue_id=... message_id=... sender=<...> recipients=N direction=D``
followed by the adapter's own ``key=value`` facts (``exit=75`` for the pipe, the client's
address and HELO name for ``serve``). Keeping the format here lets a structured logger
replace it in one place.
"""

from __future__ import annotations

import logging
import re

from mailroute.item import Envelope
from mailroute.session import Result

__all__ = ["log_message", "message_id_of"]

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def log_message(logger: logging.Logger, verdict: str, line: str, *, envelope: Envelope,
                queue_id: str | None, result: Result | None, data: bytes,
                **facts: str | int | None) -> None:
    """Write the line for one message to ``logger`` at INFO."""
    extra = "".join(f" {key}={_one_line(str(value)) if value is not None else '-'}"
                    for key, value in facts.items())
    logger.info("%s %s; queue_id=%s message_id=%s sender=<%s> recipients=%d direction=%s%s",
                verdict, line, queue_id or "-", message_id_of(result, data), envelope.mail_from,
                len(envelope.rcpt_to), _direction(result, envelope), extra)


def message_id_of(result: Result | None, data: bytes) -> str:
    """The Message-ID on one line, from the parsed message when there is one."""
    item = result.prepared if result is not None else None
    if item is not None:
        value = item.message.headers.value("Message-ID")
        return _one_line(value) if value else "-"
    head = data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    return _one_line(found.group(1).decode("ascii", "replace")) if found else "-"


def _direction(result: Result | None, envelope: Envelope) -> str:
    item = result.prepared if result is not None else None
    direction = item.envelope.direction if item is not None else envelope.direction
    return direction.value if direction is not None else "-"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200] or "-"
