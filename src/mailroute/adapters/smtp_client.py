"""A small asyncio SMTP client for the next hop of ``mailroute serve``.

Only what a relay needs: greeting, EHLO (HELO as fallback), STARTTLS with a name to verify
and an optional client certificate, MAIL/RCPT/DATA/RSET/QUIT, every command under a
timeout. Every failure is an :class:`NextHopError` (a connection that cannot be used any
more); a refusal is a :class:`NextHopReply` with a 4xx or 5xx code, not an exception (a
421 also closes the connection: the next hop is closing it).
The message is sent as it is given: the caller hands over wire bytes (CRLF, dot-stuffed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable

from mailroute.records import record

__all__ = ["NextHopClient", "NextHopError", "NextHopReply", "NextHopTimeouts"]

MAX_REPLY_LINES = 100
MAX_REPLY_LINE = 4096


class NextHopError(Exception):
    """The next hop cannot be used: unreachable, timed out, TLS failed, protocol broken."""


@record(frozen=True)
class NextHopReply:
    """One reply of the next hop: the code and the text lines (without the code)."""

    code: int
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """A 2xx (or, after DATA, 3xx) reply."""
        return self.code < 400

    @property
    def text(self) -> str:
        """The text as one line: printable ASCII only, at most 200 characters."""
        joined = " ".join(self.lines)
        return "".join(ch if " " <= ch <= "~" else " " for ch in joined)[:200]


@record(frozen=True)
class NextHopTimeouts:
    """Seconds each step may take (the RFC 5321 section 4.5.3.2 values, shortened)."""

    connect: float = 30.0
    command: float = 60.0
    data_block: float = 180.0
    data_end: float = 300.0


class NextHopClient:
    """One SMTP connection to the next hop. Use :meth:`open`, then commands, then :meth:`close`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeouts: NextHopTimeouts) -> None:
        self.reader = reader
        self.writer = writer
        self.timeouts = timeouts
        self.extensions: dict[str, str] = {}
        self.tls = False

    @classmethod
    async def open(cls, host: str, port: int, *, helo: str, timeouts: NextHopTimeouts,
                   tls: ssl.SSLContext | None = None, tls_name: str | None = None
                   ) -> NextHopClient:
        """Connect, read the greeting, EHLO; with ``tls``, STARTTLS and EHLO again.

        Raises:
            NextHopError: not reachable, greeting not 220, TLS not offered or failed.
        """
        try:
            async with asyncio.timeout(timeouts.connect):
                reader, writer = await asyncio.open_connection(host, port, limit=64 * 1024)
        except (OSError, TimeoutError) as error:
            raise NextHopError(f"cannot connect: {_describe(error)}") from None
        client = cls(reader, writer, timeouts)
        try:
            greeting = await client.reply(timeouts.connect)
            if greeting.code != 220:
                raise NextHopError(f"greeting {greeting.code} {greeting.text}")
            await client.hello(helo)
            if tls is not None:
                await client.starttls(tls, tls_name or host, helo)
        except BaseException:
            client.abort()
            raise
        return client

    async def hello(self, helo: str) -> None:
        """EHLO, or HELO if the next hop does not speak ESMTP."""
        reply = await self.command(f"EHLO {helo}")
        if reply.code == 250:
            self.extensions = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params
            return
        reply = await self.command(f"HELO {helo}")
        if reply.code != 250:
            raise NextHopError(f"HELO refused: {reply.code} {reply.text}")
        self.extensions = {}

    async def starttls(self, context: ssl.SSLContext, name: str, helo: str) -> None:
        """Upgrade to TLS, verifying ``name`` as the context says, and EHLO again."""
        if "STARTTLS" not in self.extensions:
            raise NextHopError("next hop does not offer STARTTLS")
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            raise NextHopError(f"STARTTLS refused: {reply.code} {reply.text}")
        try:
            async with asyncio.timeout(self.timeouts.command):
                await self.writer.start_tls(context, server_hostname=name)
        except (OSError, TimeoutError, ssl.SSLError) as error:
            raise NextHopError(f"TLS handshake failed: {_describe(error)}") from None
        self.tls = True
        await self.hello(helo)

    def has(self, extension: str) -> bool:
        """True when the next hop announced ``extension`` in its EHLO reply."""
        return extension.upper() in self.extensions

    async def command(self, line: str, timeout: float | None = None) -> NextHopReply:
        """Send one command line, return its reply."""
        self.writer.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return await self.reply(timeout or self.timeouts.command)

    async def pipelined(self, lines: Iterable[str]) -> list[NextHopReply]:
        """Send several commands at once (the next hop offers PIPELINING); their replies."""
        batch = list(lines)
        self.writer.write(b"".join(line.encode("utf-8", "surrogateescape") + b"\r\n"
                                   for line in batch))
        return [await self.reply(self.timeouts.command) for _ in batch]

    async def data(self, wire: bytes) -> NextHopReply:
        """DATA, the dot-stuffed CRLF message, the final dot; the final reply.

        A 354 that does not come is returned as the reply (the transaction failed before
        the content); a failure while sending is a :class:`NextHopError`.
        """
        reply = await self.command("DATA")
        if reply.code != 354:
            return reply
        # One write (one send for a small message): the content and the final dot.
        self.writer.write(wire + (b".\r\n" if wire.endswith(b"\r\n") else b"\r\n.\r\n"))
        try:
            async with asyncio.timeout(self.timeouts.data_block):
                await self.writer.drain()
        except (OSError, TimeoutError) as error:
            raise NextHopError(f"sending the message failed: {_describe(error)}") from None
        return await self.reply(self.timeouts.data_end)

    async def reply(self, timeout: float) -> NextHopReply:
        """Read one (possibly multi-line) reply."""
        lines: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                await self.writer.drain()
                while True:
                    raw = await self.reader.readuntil(b"\n")
                    if len(raw) > MAX_REPLY_LINE or len(lines) >= MAX_REPLY_LINES:
                        raise NextHopError("reply too long")
                    text = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                    if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
                        raise NextHopError("malformed reply")
                    lines.append(text[4:])
                    if text[3:4] != "-":
                        if text.startswith("421"):
                            self.abort()   # the next hop closes the connection (RFC 5321)
                        return NextHopReply(int(text[:3]), tuple(lines))
        except TimeoutError:
            raise NextHopError(f"no reply within {timeout:g} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            raise NextHopError(f"connection lost: {_describe(error)}") from None

    async def rset(self) -> bool:
        """RSET; False when the connection is no longer usable (then it is closed)."""
        try:
            return (await self.command("RSET")).code == 250
        except NextHopError:
            self.abort()
            return False

    async def quit(self) -> None:
        """QUIT politely and close; never raises."""
        with contextlib.suppress(NextHopError, OSError):
            await self.command("QUIT", timeout=5.0)
        self.abort()

    def abort(self) -> None:
        """Drop the connection now (over TLS without waiting for the close_notify
        exchange: what is dropped needs no orderly end)."""
        with contextlib.suppress(Exception):
            self.writer.transport.abort()

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed."""
        return self.writer.is_closing()


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verification failed ({error.verify_message})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__
