"""Reading SMTP DATA fast and bounded, and writing it back for the next hop.

aiosmtpd reads DATA one line at a time in Python (aio-libs/aiosmtpd#293: a few large
messages stall every session). :func:`read_data` reads in blocks of up to 64 KiB, finds
the end only at ``CRLF . CRLF`` (never at a bare LF: that is the SMTP smuggling
ambiguity), keeps at most ``spool_above`` bytes in memory and writes the rest of a large
message to a temporary file, and stops storing (but keeps reading) beyond ``limit``.
Dot-unstuffing is one ``bytes.replace`` over the whole message.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import IO

from mailroute.adapters.reinject import dot_stuff, wire_format
from mailroute.records import field, record

__all__ = ["DataReader", "ReceivedData", "read_data", "to_wire", "unstuff"]

_TERMINATOR = b".\r\n"


@record
class ReceivedData:
    """What a DATA phase delivered: the raw (still dot-stuffed) content, or that it was
    over the limit. ``size`` counts every byte the client sent before the final dot."""

    size: int = 0
    too_big: bool = False
    memory: bytearray = field(default_factory=bytearray)
    spool: IO[bytes] | None = None

    def content(self) -> bytes:
        """The message, dot-unstuffed (reads the spool file back, then removes it)."""
        if self.spool is None:
            return unstuff(bytes(self.memory))
        try:
            self.spool.write(self.memory)
            self.spool.seek(0)
            return unstuff(self.spool.read())
        finally:
            self.discard()

    def discard(self) -> None:
        """Forget the content (the spool file is removed)."""
        self.memory = bytearray()
        if self.spool is not None:
            self.spool.close()
            self.spool = None


@record(frozen=True)
class DataReader:
    """Settings of :func:`read_data`: the size limit, the spool threshold and directory."""

    limit: int
    spool_above: int
    spool_dir: Path | None = None


async def read_data(reader: asyncio.StreamReader, settings: DataReader) -> ReceivedData:
    """Read one DATA phase from ``reader`` (see the module text).

    Raises:
        asyncio.IncompleteReadError: the client went away before the final dot.
    """
    got = ReceivedData()
    # The CRLF that ended the DATA command line counts as the line end before a first ".".
    tail = b"\r\n"
    while True:
        try:
            chunk = await reader.readuntil(_TERMINATOR)
        except asyncio.LimitOverrunError as error:
            chunk = await reader.readexactly(max(error.consumed, 1))
            tail = _store(got, chunk, tail, settings)
            continue
        window = (tail + chunk[:-3])[-2:] if len(chunk) < 5 else chunk[-5:-3]
        if window == b"\r\n":  # CRLF . CRLF: the end
            _store(got, chunk[:-3], tail, settings)
            return got
        tail = _store(got, chunk, tail, settings)


def _store(got: ReceivedData, chunk: bytes, tail: bytes, settings: DataReader) -> bytes:
    got.size += len(chunk)
    if got.too_big or got.size > settings.limit:
        if not got.too_big:
            got.too_big = True
            got.discard()
    else:
        got.memory += chunk
        if len(got.memory) > settings.spool_above:
            if got.spool is None:
                got.spool = tempfile.TemporaryFile(dir=settings.spool_dir)  # noqa: SIM115
            got.spool.write(got.memory)
            got.memory = bytearray()
    return (tail + chunk)[-2:]


def unstuff(raw: bytes) -> bytes:
    """Remove the transparency dot of every line that starts with one (RFC 5321 4.5.2).

    A line starts after CRLF, and also after a bare LF: clients that send those (Python's
    smtplib with a bytes message) stuff the dots after them, as Postfix's smtpd unstuffs
    them, and the way out makes the LF a CRLF and stuffs again, so a dot left there would
    be sent twice. (A bare CR starts no line here, and none is stuffed after it.)
    """
    if raw.startswith(b"."):
        raw = raw[1:]
    return raw.replace(b"\n.", b"\n")


def to_wire(data: bytes) -> bytes:
    """``data`` as SMTP DATA content: every line end CRLF, leading dots doubled."""
    return dot_stuff(wire_format(data))
