"""Actions: what the filter tells the MTA, one frozen dataclass per response.

Each action validates its fields when it is built, so an action that could not be put on
the wire never exists (h11's rule for events), and knows its packets (:meth:`packets`).
Replies (``Continue``, ``Accept``, ``Reject``, ``TempFail``, ``Discard``, ``ReplyCode``,
``Skip``) answer a command; modifications (header, body, recipient and sender changes,
``Quarantine``) are only legal before the reply to end-of-message; ``Progress`` is a
keep-alive that may precede any reply.
"""

from __future__ import annotations

import functools
import re
import struct
from typing import ClassVar

from mailroute.protocols.milter.constants import (
    BODY_CHUNK_SIZE,
    PROTOCOL_VERSION,
    ActionFlag,
    ProtocolFlag,
    Response,
)
from mailroute.protocols.milter.errors import LocalProtocolError
from mailroute.records import field, record

__all__ = [
    "Accept",
    "Action",
    "AddHeader",
    "AddRecipient",
    "ChangeFrom",
    "ChangeHeader",
    "Continue",
    "DeleteRecipient",
    "Discard",
    "InsertHeader",
    "Modification",
    "NegotiateReply",
    "Progress",
    "Quarantine",
    "Reject",
    "ReplaceBody",
    "Reply",
    "ReplyCode",
    "Skip",
    "TempFail",
    "packet",
]

_NAME = re.compile(rb"[!-9;-~]+")          # RFC 5322 field name: printable, no colon
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_FOLDED = re.compile(rb"(?:\r?\n(?![ \t])|\r(?!\n))")  # a line break not followed by WSP


_LENGTH = struct.Struct(">I").pack
# each code's byte, read from a dict: Enum.value is a property, eight times the cost
_WIRE = {code: code.value for code in Response}


def packet(code: Response, data: bytes = b"") -> bytes:
    """One packet: length, command byte, data."""
    return _LENGTH(len(data) + 1) + _WIRE[code] + data


def _check_name(name: bytes) -> None:
    if not _NAME.fullmatch(name):
        raise LocalProtocolError("header field name must be printable ASCII without colon")


def _check_value(value: bytes) -> None:
    if b"\0" in value or _FOLDED.search(value):
        raise LocalProtocolError("header value contains NUL or an unfolded line break")


def _check_text(text: bytes, what: str) -> None:
    if not text or any(c in text for c in b"\r\n\0"):
        raise LocalProtocolError(f"{what} must be non-empty without CR, LF or NUL")


@record(frozen=True)
class NegotiateReply:
    """``O``: our version, the actions we will use, the steps we skip, and the macros we
    want per stage (``{Stage.CONNECT: b"{client_addr} j"}``)."""

    actions: ActionFlag
    protocol: ProtocolFlag
    macros: tuple[tuple[int, bytes], ...] = ()
    version: int = PROTOCOL_VERSION

    def packets(self) -> list[bytes]:
        """The wire form."""
        return [_negotiation_packet(self)]


@functools.lru_cache(maxsize=32)
def _negotiation_packet(reply: NegotiateReply) -> bytes:
    """The packet of ``reply``, encoded once (a filter gives every connection the same
    answer)."""
    data = struct.pack(">III", reply.version, int(reply.actions), int(reply.protocol))
    for stage, names in reply.macros:
        if b"\0" in names:
            raise LocalProtocolError("macro names contain NUL")
        data += struct.pack(">I", stage) + names + b"\0"
    return packet(Response.OPTNEG, data)


@record(frozen=True)
class _Simple:
    def packets(self) -> list[bytes]:
        """The wire form."""
        return [_SIMPLE_PACKETS[type(self)]]


@record(frozen=True)
class Continue(_Simple):
    """``c``: go on (at end-of-message: accept)."""


@record(frozen=True)
class Accept(_Simple):
    """``a``: accept; no further callbacks for this message (or connection)."""


@record(frozen=True)
class Reject(_Simple):
    """``r``: reject with the MTA's default 5xx text."""


@record(frozen=True)
class TempFail(_Simple):
    """``t``: temporary failure with the MTA's default 4xx text."""


@record(frozen=True)
class Discard(_Simple):
    """``d``: accept and silently drop the message."""


@record(frozen=True)
class Skip(_Simple):
    """``s``: send no more body chunks (needs ``SMFIP_SKIP``)."""


@record(frozen=True)
class Progress(_Simple):
    """``p``: keep-alive; resets the MTA's timeout while slow work runs."""


_SIMPLE_CODES: dict[type[_Simple], Response] = {
    Continue: Response.CONTINUE, Accept: Response.ACCEPT, Reject: Response.REJECT,
    TempFail: Response.TEMPFAIL, Discard: Response.DISCARD, Skip: Response.SKIP,
    Progress: Response.PROGRESS,
}
_SIMPLE_PACKETS = {kind: packet(code) for kind, code in _SIMPLE_CODES.items()}


@record(frozen=True)
class ReplyCode:
    """``y``: reject (5xx) or tempfail (4xx) with our own text, one or more lines.

    ``%`` is doubled on the wire (Sendmail and Postfix read the text as a format)."""

    code: int
    status: str
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 400 <= self.code <= 599:
            raise LocalProtocolError("reply code must be 4xx or 5xx")
        if not _STATUS.fullmatch(self.status) or self.status[0] != str(self.code)[0]:
            raise LocalProtocolError("enhanced status must match the reply code's class")
        if not self.lines:
            raise LocalProtocolError("a reply needs at least one line of text")
        for line in self.lines:
            if any(c in line for c in "\r\n\0") or not line.isprintable():
                raise LocalProtocolError("reply text must be printable, one line per item")

    def packets(self) -> list[bytes]:
        """The wire form."""
        last = len(self.lines) - 1
        text = "\r\n".join(f"{self.code}{' ' if i == last else '-'}{self.status} "
                           f"{line.replace('%', '%%')}" for i, line in enumerate(self.lines))
        return [packet(Response.REPLYCODE, text.encode("utf-8") + b"\0")]


@record(frozen=True)
class AddHeader:
    """``h``: append a header field (``value`` with its leading space, if any)."""

    name: bytes
    value: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_value(self.value)

    def packets(self) -> list[bytes]:
        """The wire form."""
        return [packet(Response.ADDHEADER, self.name + b"\0" + self.value + b"\0")]


@record(frozen=True)
class _IndexedHeader:
    index: int
    name: bytes
    value: bytes

    _first: ClassVar[int] = 0
    _code: ClassVar[Response] = Response.INSHEADER

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_value(self.value)
        if not self._first <= self.index < 2**31:
            raise LocalProtocolError(f"header index must be {self._first} or more")

    def packets(self) -> list[bytes]:
        """The wire form."""
        data = struct.pack(">I", self.index) + self.name + b"\0" + self.value + b"\0"
        return [packet(self._code, data)]


@record(frozen=True)
class InsertHeader(_IndexedHeader):
    """``i``: insert a header field before position ``index`` (0 = topmost)."""


@record(frozen=True)
class ChangeHeader(_IndexedHeader):
    """``m``: replace occurrence ``index`` (1-based) of ``name``; an empty value deletes."""

    _first: ClassVar[int] = 1
    _code: ClassVar[Response] = Response.CHGHEADER


@record(frozen=True)
class ReplaceBody:
    """``b``: the whole new body (CRLF line ends), sent as chunks of at most 65,535 bytes."""

    body: bytes = field(repr=False)

    def packets(self) -> list[bytes]:
        """The wire form: one packet per chunk (one empty packet for an empty body)."""
        body = self.body
        if len(body) <= BODY_CHUNK_SIZE:  # one packet: most bodies
            return [packet(Response.REPLBODY, body)]
        return [packet(Response.REPLBODY, body[i:i + BODY_CHUNK_SIZE])
                for i in range(0, len(body), BODY_CHUNK_SIZE)]


@record(frozen=True)
class AddRecipient:
    """``+`` (or ``2`` with ESMTP arguments): add an envelope recipient."""

    address: bytes
    args: bytes = b""

    def __post_init__(self) -> None:
        _check_text(self.address, "recipient")
        if self.args:
            _check_text(self.args, "ESMTP arguments")

    def packets(self) -> list[bytes]:
        """The wire form."""
        if self.args:
            return [packet(Response.ADDRCPT_PAR, self.address + b"\0" + self.args + b"\0")]
        return [packet(Response.ADDRCPT, self.address + b"\0")]


@record(frozen=True)
class DeleteRecipient:
    """``-``: remove an envelope recipient."""

    address: bytes

    def __post_init__(self) -> None:
        _check_text(self.address, "recipient")

    def packets(self) -> list[bytes]:
        """The wire form."""
        return [packet(Response.DELRCPT, self.address + b"\0")]


@record(frozen=True)
class ChangeFrom:
    """``e``: change the envelope sender."""

    address: bytes
    args: bytes = b""

    def __post_init__(self) -> None:
        _check_text(self.address, "sender")
        if self.args:
            _check_text(self.args, "ESMTP arguments")

    def packets(self) -> list[bytes]:
        """The wire form."""
        data = self.address + b"\0" + (self.args + b"\0" if self.args else b"")
        return [packet(Response.CHGFROM, data)]


@record(frozen=True)
class Quarantine:
    """``q``: put the message on hold (Postfix: the hold queue) with a reason."""

    reason: bytes

    def __post_init__(self) -> None:
        _check_text(self.reason, "quarantine reason")

    def packets(self) -> list[bytes]:
        """The wire form."""
        return [packet(Response.QUARANTINE, self.reason + b"\0")]


Reply = Continue | Accept | Reject | TempFail | Discard | ReplyCode | Skip
Modification = (AddHeader | InsertHeader | ChangeHeader | ReplaceBody | AddRecipient
                | DeleteRecipient | ChangeFrom | Quarantine)
Action = NegotiateReply | Reply | Modification | Progress

#: The negotiated action flag each modification needs.
REQUIRED_FLAG: dict[type, ActionFlag] = {
    AddHeader: ActionFlag.ADDHDRS, InsertHeader: ActionFlag.ADDHDRS,
    ChangeHeader: ActionFlag.CHGHDRS, ReplaceBody: ActionFlag.CHGBODY,
    AddRecipient: ActionFlag.ADDRCPT, DeleteRecipient: ActionFlag.DELRCPT,
    ChangeFrom: ActionFlag.CHGFROM, Quarantine: ActionFlag.QUARANTINE,
}
