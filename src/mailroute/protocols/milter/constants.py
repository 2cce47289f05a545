"""Wire constants of the milter protocol, version 6 (Sendmail 8.14+, Postfix >= 2.6).

Every packet is a 4-byte big-endian length (covering the command byte and the data), one
command byte, then the data. Strings are NUL-terminated.
"""

from __future__ import annotations

import enum

__all__ = [
    "BODY_CHUNK_SIZE",
    "DEFAULT_MAX_PACKET",
    "PROTOCOL_VERSION",
    "ActionFlag",
    "Command",
    "ProtocolFlag",
    "Response",
    "Stage",
]

PROTOCOL_VERSION = 6
#: The largest body chunk the MTA sends and the largest SMFIR_REPLBODY chunk Postfix takes
#: (``MILTER_CHUNK_SIZE`` in libmilter and Postfix ``milter8.c``).
BODY_CHUNK_SIZE = 65535
#: The default cap on one incoming packet: a body chunk plus slack, and a header field up
#: to Postfix's ``header_size_limit`` (102400) with room to spare.
DEFAULT_MAX_PACKET = 256 * 1024


class Command(bytes, enum.Enum):
    """Commands the MTA sends to the filter."""

    OPTNEG = b"O"
    MACRO = b"D"
    CONNECT = b"C"
    HELO = b"H"
    MAIL = b"M"
    RCPT = b"R"
    DATA = b"T"
    HEADER = b"L"
    EOH = b"N"
    BODY = b"B"
    BODYEOB = b"E"
    ABORT = b"A"
    QUIT = b"Q"
    QUIT_NC = b"K"
    UNKNOWN = b"U"


class Response(bytes, enum.Enum):
    """Responses and modification actions the filter sends to the MTA."""

    OPTNEG = b"O"
    CONTINUE = b"c"
    ACCEPT = b"a"
    REJECT = b"r"
    TEMPFAIL = b"t"
    DISCARD = b"d"
    REPLYCODE = b"y"
    PROGRESS = b"p"
    SKIP = b"s"
    ADDHEADER = b"h"
    INSHEADER = b"i"
    CHGHEADER = b"m"
    REPLBODY = b"b"
    CHGFROM = b"e"
    ADDRCPT = b"+"
    ADDRCPT_PAR = b"2"
    DELRCPT = b"-"
    QUARANTINE = b"q"


class ActionFlag(enum.IntFlag):
    """``SMFIF_*``: the modifications a filter may make (negotiated)."""

    NONE = 0
    ADDHDRS = 0x01
    CHGBODY = 0x02
    ADDRCPT = 0x04
    DELRCPT = 0x08
    CHGHDRS = 0x10
    QUARANTINE = 0x20
    CHGFROM = 0x40
    ADDRCPT_PAR = 0x80
    SETSYMLIST = 0x100


class ProtocolFlag(enum.IntFlag):
    """``SMFIP_*``: steps the MTA may skip or need no reply for (negotiated)."""

    NONE = 0
    NOCONNECT = 0x1
    NOHELO = 0x2
    NOMAIL = 0x4
    NORCPT = 0x8
    NOBODY = 0x10
    NOHDRS = 0x20
    NOEOH = 0x40
    NR_HDR = 0x80
    NOUNKNOWN = 0x100
    NODATA = 0x200
    SKIP = 0x400
    RCPT_REJ = 0x800
    NR_CONN = 0x1000
    NR_HELO = 0x2000
    NR_MAIL = 0x4000
    NR_RCPT = 0x8000
    NR_DATA = 0x10000
    NR_UNKN = 0x20000
    NR_EOH = 0x40000
    NR_BODY = 0x80000
    HDR_LEADSPC = 0x100000


class Stage(enum.IntEnum):
    """The protocol stages a filter can ask macros for (``SMFIM_*``)."""

    CONNECT = 0
    HELO = 1
    ENVFROM = 2
    ENVRCPT = 3
    DATA = 4
    EOM = 5
    EOH = 6
