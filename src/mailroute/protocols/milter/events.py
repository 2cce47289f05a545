"""Events: what the MTA told the filter, one frozen dataclass per command.

Fields are bytes, exactly as they came off the wire minus the NUL terminators; decoding is
the caller's business (addresses and macro values are not guaranteed to be UTF-8).
"""

from __future__ import annotations

from mailroute.protocols.milter.constants import ActionFlag, ProtocolFlag
from mailroute.records import record

__all__ = [
    "Abort",
    "BodyChunk",
    "Connect",
    "Data",
    "EndOfHeaders",
    "EndOfMessage",
    "Event",
    "Header",
    "Helo",
    "Macros",
    "MailFrom",
    "OptionNegotiation",
    "Quit",
    "QuitNewConnection",
    "RcptTo",
    "Unknown",
]


@record(frozen=True)
class OptionNegotiation:
    """``O``: the MTA's protocol version, the actions it allows, the steps it can skip."""

    version: int
    actions: ActionFlag
    protocol: ProtocolFlag


@record(frozen=True)
class Macros:
    """``D``: macro values for the command named by ``stage`` (the next one to come)."""

    stage: bytes
    values: tuple[tuple[bytes, bytes], ...]

    def as_dict(self) -> dict[bytes, bytes]:
        """The macros as a mapping (a later duplicate wins)."""
        return dict(self.values)


@record(frozen=True)
class Connect:
    """``C``: the SMTP client's host name, address family (``4``, ``6``, ``L``, ``U``),
    port and address (empty when the family is ``U``, unknown)."""

    hostname: bytes
    family: bytes
    port: int
    address: bytes


@record(frozen=True)
class Helo:
    """``H``: the HELO/EHLO argument."""

    name: bytes


@record(frozen=True)
class MailFrom:
    """``M``: the MAIL FROM address (angle brackets as sent) and its ESMTP arguments."""

    address: bytes
    args: tuple[bytes, ...] = ()


@record(frozen=True)
class RcptTo:
    """``R``: one RCPT TO address and its ESMTP arguments."""

    address: bytes
    args: tuple[bytes, ...] = ()


@record(frozen=True)
class Data:
    """``T``: the client sent DATA."""


@record(frozen=True)
class Header:
    """``L``: one header field; ``value`` keeps its leading space only when
    ``SMFIP_HDR_LEADSPC`` was negotiated, and continuation lines as the MTA sends them."""

    name: bytes
    value: bytes


@record(frozen=True)
class EndOfHeaders:
    """``N``: the header block is complete."""


@record(frozen=True)
class BodyChunk:
    """``B``: a piece of the body (CRLF line ends, at most 65,535 bytes from Postfix)."""

    data: bytes


@record(frozen=True)
class EndOfMessage:
    """``E``: the message is complete; ``data`` is a last body piece (usually empty).
    The one point where modifications may be sent; a reply is always required."""

    data: bytes = b""


@record(frozen=True)
class Abort:
    """``A``: the current message is abandoned; the connection goes on."""


@record(frozen=True)
class Quit:
    """``Q``: the MTA closes the connection."""


@record(frozen=True)
class QuitNewConnection:
    """``K``: this SMTP connection is over; the next one reuses this milter connection."""


@record(frozen=True)
class Unknown:
    """``U``: an SMTP command the MTA did not recognise."""

    command: bytes


Event = (OptionNegotiation | Macros | Connect | Helo | MailFrom | RcptTo | Data | Header
         | EndOfHeaders | BodyChunk | EndOfMessage | Abort | Quit | QuitNewConnection | Unknown)
