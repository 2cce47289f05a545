"""The one log line per message, shared by every adapter (``process``, ``pipe``, milter).

A line holds, verdict and reply first (Postfix truncates long lines it copies from a
filter, so the part that matters comes first): the verdict, the reply's enhanced status code
and text, then the MTA's queue id, the Message-ID, the envelope sender, the recipient count,
the direction, the adapter's exit code (commands only), each filter with its result, the
SASL user and client address when known, and the time taken. Two formats:

- ``text`` for syslog: ``reject 5.7.1 refused; queue_id=4XyZ1 message_id=<m@x> ...``;
  a value with a space, quote, ``=`` or ``;`` in it is written as a JSON string.
- ``json``: one JSON object per line with the same fields (``null`` where unknown).

Only these fields are ever written: no header other than Message-ID, no body, no key
material. Values from the message are cut to one line of at most 200 characters.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import re
from typing import TYPE_CHECKING

from mailroute.item import Envelope
from mailroute.logs import LOG_FORMATS, LogFormat
from mailroute.patterns import on_first_use
from mailroute.records import record
from mailroute.results import Reply
from mailroute.session import Result

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

__all__ = ["LOG_FORMATS", "MESSAGE_LOG", "LogFormat", "MessageLog", "MessageRecord",
           "format_json", "format_text", "message_id_of", "no_line", "record_for"]

#: The logger every adapter writes its message lines to.
MESSAGE_LOG = "mailroute.messages"
_MAX_VALUE = 200
# compiled when a line is written: mailroute process logs nothing by default
_MESSAGE_ID = on_first_use(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)",
                           re.IGNORECASE | re.MULTILINE)
_NEEDS_QUOTES = on_first_use(r'[\s"=;\\]')


@record(frozen=True, kw_only=True)
class MessageRecord:
    """The facts of one message's log line.

    Attributes:
        verdict: ``accept``, ``reject``, ``tempfail``, ``discard``, ``quarantine``, or an
            adapter's own (``accept-deferred`` when the hand-on failed ...).
        reply: what the client or MTA was told.
        queue_id: the MTA's queue id, if known.
        message_id: the Message-ID field's value, if any.
        sender: the envelope sender (``""`` for the null sender).
        recipients: how many envelope recipients.
        direction: ``inbound``, ``outbound``, ``internal`` or ``None``.
        filters: ``(filter name, result)`` pairs, in the order they ran.
        duration: seconds from the message's arrival at the adapter to the decision.
        sasl_user: the authenticated SASL user, if any.
        client_address: the SMTP client's address, if known.
        helo: the client's HELO name, if known (``serve``: from XFORWARD or the session).
        client_name: the client's reverse-DNS name, if known (``serve``: XFORWARD ``NAME``).
        exit_code: the command's exit status (pipe and process only).
    """

    verdict: str
    reply: Reply
    queue_id: str | None = None
    message_id: str | None = None
    sender: str = ""
    recipients: int = 0
    direction: str | None = None
    filters: tuple[tuple[str, str], ...] = ()
    duration: float = 0.0
    sasl_user: str | None = None
    client_address: str | None = None
    helo: str | None = None
    client_name: str | None = None
    exit_code: int | None = None


def record_for(result: Result | None, envelope: Envelope, *, data: bytes = b"",
               verdict: str | None = None, reply: Reply | None = None,
               queue_id: str | None = None, sasl_user: str | None = None,
               duration: float = 0.0, exit_code: int | None = None,
               client_name: str | None = None) -> MessageRecord:
    """The record of one message from what the session decided and what the adapter knows.

    ``verdict`` and ``reply`` default to the result's; give them when the adapter's own step
    decided (a failed hand-on, a message over the size limit before the session ran).
    ``data`` is the raw message, for its Message-ID when the session could not parse it.
    """
    prepared = result.prepared if result is not None else None
    direction = envelope.direction
    if prepared is not None and prepared.envelope.direction is not None:
        direction = prepared.envelope.direction
    if result is not None:
        verdict = str(result.action) if verdict is None else verdict
        reply = result.smtp_reply if reply is None else reply
    if verdict is None or reply is None:
        raise ValueError("without a result, give verdict and reply")
    return MessageRecord(
        verdict=verdict, reply=reply,
        queue_id=_clean(queue_id), message_id=message_id_of(result, data),
        sender=envelope.mail_from, recipients=len(envelope.rcpt_to),
        direction=direction.value if direction is not None else None,
        filters=result.trace if result is not None else (), duration=duration,
        sasl_user=_clean(sasl_user), client_address=_clean(envelope.client_address),
        helo=_clean(envelope.helo), client_name=_clean(client_name), exit_code=exit_code)


def message_id_of(result: Result | None, data: bytes) -> str | None:
    """The Message-ID, from the parsed message when there is one, else found in ``data``."""
    item = result.prepared if result is not None else None
    if item is not None:
        return _clean(item.message.headers.value("Message-ID"))
    if not data:  # the adapter decided without reading the message
        return None
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = _MESSAGE_ID().search(head)
    return _clean(found.group(1).decode("utf-8", "replace")) if found else None


def _clean(text: str | None) -> str | None:
    """One line, control characters gone, at most 200 characters; ``None`` when empty."""
    if not text:
        return None
    if text.isprintable():
        if " " not in text:  # one word (every other whitespace character is unprintable)
            return text[:_MAX_VALUE]
    else:  # the character walk only for the rare value that needs it
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    flat = " ".join(text.split())
    return flat[:_MAX_VALUE] or None


def _fields(record: MessageRecord) -> dict[str, object]:
    """The fields after the verdict and reply, in line order."""
    return {
        "queue_id": record.queue_id,
        "message_id": record.message_id,
        "sender": record.sender,
        "recipients": record.recipients,
        "direction": record.direction,
        "exit": record.exit_code,
        "filters": record.filters,
        "sasl_user": record.sasl_user,
        "client": record.client_address,
        "helo": record.helo,
        "client_name": record.client_name,
        "duration_ms": round(record.duration * 1000, 1),
    }


def format_text(record: MessageRecord) -> str:
    """The syslog line: ``VERDICT STATUS TEXT; key=value ...`` (unknown values as ``-``;
    ``exit``, ``sasl_user``, ``client``, ``helo`` and ``client_name`` only when known)."""
    # the keys of _fields in their order, built directly: a resident adapter writes a line
    # per message, and the table walk cost as much as the rest of a small message's answer
    keys = ["queue_id=", "message_id=", "sender=", "recipients=", "direction="]
    queue_id, message_id, direction = record.queue_id, record.message_id, record.direction
    values = ["-" if queue_id is None else queue_id, "-" if message_id is None else message_id,
              f"<{record.sender}>", str(record.recipients), "-" if direction is None else direction]
    if record.exit_code is not None:
        keys.append("exit=")
        values.append(str(record.exit_code))
    keys.append("filters=")
    filters = record.filters
    values.append(",".join([f"{name}:{outcome}" for name, outcome in filters]) if filters
                  else "-")
    for key, value in (("sasl_user=", record.sasl_user), ("client=", record.client_address),
                       ("helo=", record.helo), ("client_name=", record.client_name)):
        if value is not None:
            keys.append(key)
            values.append(value)
    keys.append("duration_ms=")
    values.append(f"{record.duration * 1000:.1f}")
    plain = "".join(values)
    # _NEEDS_QUOTES's characters: whitespace other than the space is unprintable
    if (not plain.isprintable() or " " in plain or '"' in plain or "=" in plain
            or ";" in plain or "\\" in plain):
        # quoted per value only on the rare line that needs it
        needs_quotes = _NEEDS_QUOTES().search
        values = [_quote(value) if needs_quotes(value) else value for value in values]
    head = f"{record.verdict} {record.reply.status} {_reply_text(record.reply.text)};"
    return " ".join([head, *map(operator.add, keys, values)])


@functools.lru_cache(maxsize=256)
def _reply_text(text: str) -> str:
    """The reply text as the line shows it (replies repeat: the policy's few texts)."""
    return _clean(text) or "-"


def format_json(record: MessageRecord) -> str:
    """The JSON line: one object, the same fields, ``null`` where unknown."""
    fields = _fields(record)
    fields["filters"] = [{"name": name, "result": outcome} for name, outcome in record.filters]
    document = {"verdict": record.verdict, "code": record.reply.code,
                "status": record.reply.status, "reply": record.reply.text, **fields}
    import json  # only when a line is written: mailroute process logs nothing by default

    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _quote(text: str) -> str:
    import json  # only when a line is written: mailroute process logs nothing by default

    return json.dumps(text, ensure_ascii=False)


class MessageLog:
    """Writes message records to the :data:`MESSAGE_LOG` logger in one format, or to
    ``sink``, a function that takes each line (a one-message process:
    :mod:`mailroute.adapters.linelog`).

    Adapters hold one and call :meth:`write` once per message; where the lines go (syslog,
    standard error, nowhere) is the logger's handlers' business, or the sink's.
    """

    def __init__(self, fmt: LogFormat = "text",
                 logger: logging.Logger | None = None, *,
                 sink: Callable[[str], None] | None = None) -> None:
        if fmt not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
        self.format: LogFormat = fmt
        self.sink = sink
        self._logger = logger

    @property
    def logger(self) -> logging.Logger:
        """The logger the lines go to when there is no sink."""
        if self._logger is None:
            import logging  # loaded by the adapters that log, not by every command

            self._logger = logging.getLogger(MESSAGE_LOG)
        return self._logger

    def render(self, record: MessageRecord) -> str:
        """The line for ``record`` in this log's format."""
        return format_json(record) if self.format == "json" else format_text(record)

    def write(self, record: MessageRecord) -> None:
        """Log ``record`` at INFO, or hand its line to the sink (never raises for a failure
        to write: logging handles its own, a sink falls back or drops the line)."""
        if self.sink is not None:
            if self.sink is no_line:
                return
            line = self.render(record)
            # a log line must never turn a message that was handed on into a retry
            # (logging's handlers swallow their failures too)
            with contextlib.suppress(Exception):
                self.sink(line)
            return
        logger = self.logger
        if logger.isEnabledFor(20):  # logging.INFO
            # made here, not by logger.info: its search of the stack for the caller costs
            # more than the line, and the caller is always this method
            logger.handle(logger.makeRecord(logger.name, 20, __file__, _WRITE_LINE,
                                            self.render(record), (), None, "write"))


def no_line(line: str) -> None:
    """The sink of ``--log none``: :meth:`MessageLog.write` does not even make the line."""


#: the line of :meth:`MessageLog.write`, the caller its log records name (0 where the
#: method has no code object: a build compiled with mypyc, benchmarks/mypyc_build.py)
_WRITE_LINE: int = getattr(getattr(MessageLog.write, "__code__", None), "co_firstlineno", 0)
