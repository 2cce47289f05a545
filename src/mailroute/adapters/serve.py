"""The SMTP gateway service (``mailroute serve``): a before-queue proxy on aiosmtpd.

Lossless by construction. The next-hop transaction is opened during the client's: MAIL
FROM is answered here, the first RCPT of each route opens (or reuses) the connection to its
next hop and sends MAIL and that RCPT there (in one write when the next hop offers
PIPELINING), every RCPT is answered with the next hop's own reply to that RCPT (a refused
MAIL is the reply to every RCPT of its route), and the final dot is answered 250 only
after the next hop answered 250 to the processed message. The policy's reject or tempfail
goes back to the client in session (RSET downstream, nothing handed on); every internal or
next-hop failure is ``451 4.x.x`` with no internal text (aiosmtpd's
``500 Error: (Exception) text`` is replaced). Nothing is ever accepted and then dropped:
the one window left is the next hop's 250 arriving and the client's connection dying before
our 250 reaches it, which makes the client retry (a duplicate, never a loss).

DATA is read in blocks (:mod:`mailroute.adapters.smtp_data`), spooled to a temporary file
above ``spool_above`` bytes and refused beyond the policy's ``max_message_size`` (also
announced as SIZE). The policy runs inline for small messages and in a thread pool for large
ones, under ``processing_timeout``. On SIGTERM the listener closes, new transactions get
``451 4.3.2``, transactions in flight get ``shutdown_grace`` seconds (less a half-second to
leave in), then every connection gets ``421 4.3.2`` and is closed (a client without our 250
retries).

XFORWARD from an authorised client (Postfix's ``smtp_send_xforward_command = yes``) sets
the client address and HELO name that the policy and the log line see; XCLIENT (a proxy in
front of us) does the same for the whole session, and its ``LOGIN`` becomes the envelope's
authenticated user. Both only from ``xforward_hosts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import secrets
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, AnyStr, cast

from mailroute.adapters.heap import pin_mmap_threshold
from mailroute.adapters.messagelog import MessageLog, record_for
from mailroute.adapters.quarantine import QuarantineStore
from mailroute.adapters.reinject import header_is_ascii
from mailroute.adapters.serve_routes import (
    ConnectionFacts,
    FixedRouter,
    NextHop,
    Route,
    Router,
)
from mailroute.adapters.service import PolicyRunner, drain, may_block, stop_on_signals
from mailroute.adapters.smtp_client import (
    NextHopClient,
    NextHopError,
    NextHopReply,
    NextHopTimeouts,
)
from mailroute.adapters.smtp_data import DataReader, ReceivedData, read_data, to_wire
from mailroute.adapters.smtp_fast import FastSMTP, SessionTemplate
from mailroute.adapters.workerpool import WorkerPool
from mailroute.adapters.xtext import decode_xtext
from mailroute.errors import MailrouteError
from mailroute.gateway.match import cert_name_matches
from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.item import Envelope
from mailroute.pipeline import Pipeline
from mailroute.records import field, record
from mailroute.results import Action, Reply
from mailroute.session import Result

if TYPE_CHECKING:
    from mailroute.adapters.metrics import Metrics

__all__ = [
    "GatewayService",
    "NextHop",
    "ServeSettings",
    "ServerTLS",
    "parse_hostport",
    "serve",
]

log = logging.getLogger("mailroute.serve")

NEXT_HOP_DOWN = "451 4.4.1 next hop not available, try again later"
NEXT_HOP_LOST = "451 4.4.2 next hop connection lost, try again later"
SHUTTING_DOWN = "451 4.3.2 service shutting down, try again later"
#: The last line a connection gets when the grace period is over (RFC 5321 4.2.2: 421 may
#: end any session when the service must shut down).
CLOSING = b"421 4.3.2 service shutting down, try again later\r\n"
HANDED_ON_BEFORE = "250 2.0.0 Ok: the next hop took this message on an earlier try"
#: How long a group handed on before another group's next hop failed is remembered: the
#: sending MTA's retries end within its queue lifetime (Postfix: 5 days).
HANDED_ON_TTL = 5 * 24 * 3600.0
#: At most this many such groups are remembered (the oldest go first).
HANDED_ON_KEYS = 10_000
TIMED_OUT = "451 4.3.0 processing took too long, try again later"
TOO_BIG = "552 5.3.4 message too big"
BAD_SENDER = "501 5.1.7 bad sender address syntax"
BAD_RECIPIENT = "501 5.1.3 bad recipient address syntax"
NO_UTF8_ADDRESSES = "553 5.6.7 the next hop does not accept non-ASCII addresses (SMTPUTF8)"
NO_UTF8_HEADER = ("554 5.6.9 the message has UTF-8 header fields and the next hop does not "
                  "offer SMTPUTF8")
#: What aiosmtpd answers to ``MAIL FROM ... SIZE=`` over the limit (no enhanced code).
_AIOSMTPD_TOO_BIG = "552 Error: message size exceeds fixed maximum message size"
#: Threads for route lookups that may block (the recipient domain's MX in DNS).
LOOKUP_THREADS = 16
_XFORWARD_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
_XCLIENT_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")


class _RequiredClientCertificates(logging.Filter):
    """aiosmtpd warns on every connection when client certificates are required, which is
    what ``--client-ca`` means: drop that warning, keep the others."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("tls_context.verify_mode")


AIOSMTPD_LOG = logging.getLogger("mail.log")
AIOSMTPD_LOG.addFilter(_RequiredClientCertificates())


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT``.

    Raises:
        ValueError: no host or a port outside 1-65535 (0 allowed: any free port).
    """
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"must be HOST:PORT, not {text!r}")
    return host, int(port)


@record(frozen=True)
class ServerTLS:
    """STARTTLS offered to clients.

    Attributes:
        context: the server context (certificate loaded; ``verify_mode`` CERT_REQUIRED
            when client certificates are required).
        required: refuse every command before STARTTLS (``530``).
        client_names: when not empty, the client certificate must carry one of these
            names (subjectAltName DNS or CN; ``*.example.net`` matches one label); a
            wrong or missing name makes every later command ``554``.
    """

    context: ssl.SSLContext
    required: bool = False
    client_names: tuple[str, ...] = ()


@record(frozen=True, kw_only=True)
class ServeSettings:
    """Timeouts and limits of the SMTP service (seconds, bytes).

    Attributes:
        hostname: our name in the greeting, and the EHLO name towards the next hop.
        next_hop: where accepted mail goes (unless ``router`` says otherwise).
        router: the route per recipient (topology mode); ``None``: ``next_hop``.
        timeouts: towards the next hop.
        client_timeout: longest wait for the client's next command.
        processing_timeout: longest run of the policy on one message before 451.
        shutdown_grace: how long transactions in flight may finish after SIGTERM.
        workers: threads that run the policy for large messages.
        inline_size: messages up to this size run on the event loop itself.
        spool_above: DATA beyond this many bytes goes to a temporary file.
        spool_dir: where (default: the system's temporary directory).
        tls: STARTTLS for clients, or ``None``.
        tls_to_next_hop: the client TLS context towards next hops (``--next-hop-tls``).
        xforward_hosts: client networks whose XFORWARD is believed.
    """

    hostname: str = "mailroute.localdomain"
    next_hop: NextHop | None = None
    router: Router | None = None
    timeouts: NextHopTimeouts = field(default_factory=NextHopTimeouts)
    client_timeout: float = 300.0
    processing_timeout: float = 240.0
    shutdown_grace: float = 5.0
    workers: int = field(default_factory=lambda: min(8, (os.cpu_count() or 1) + 1))
    inline_size: int = 64 * 1024
    spool_above: int = 1024 * 1024
    spool_dir: Path | None = None
    tls: ServerTLS | None = None
    tls_to_next_hop: ssl.SSLContext | None = None
    xforward_hosts: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


class GatewayService:
    """The listening service: settings, the policy, the pool, the open sessions."""

    def __init__(self, pipeline: Pipeline, settings: ServeSettings, *,
                 message_log: MessageLog | None = None, metrics: Metrics | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.message_log = message_log or MessageLog()
        self.metrics = metrics
        self.runner = PolicyRunner(settings.workers, settings.inline_size, "serve",
                                   inline=not may_block(pipeline))
        # Route lookups (DNS) wait rather than compute, and must not queue behind policy
        # runs; daemon threads, so a hanging lookup does not hold up the exit after SIGTERM.
        self.lookups = WorkerPool(LOOKUP_THREADS, "serve-dns")
        self.reader = DataReader(limit=pipeline.limits.max_message_size,
                                 spool_above=settings.spool_above, spool_dir=settings.spool_dir)
        self.pool = LinkPool()
        #: Groups a next hop took while the client was told to try again (see deliver).
        self.handed_on = InMemoryProcessedStore(HANDED_ON_KEYS)
        self.quarantine = (QuarantineStore(pipeline.quarantine_dir)
                           if pipeline.quarantine_dir is not None else None)
        self.xforward_nets = tuple(ipaddress.ip_network(n) for n in settings.xforward_hosts)
        if settings.router is not None:
            self.router: Router = settings.router
        elif settings.next_hop is not None:
            self.router = FixedRouter(settings.next_hop)
        else:
            raise ValueError("ServeSettings needs next_hop or router")
        self.stopping = False
        self.sessions: set[GatewaySMTP] = set()
        self._server: asyncio.AbstractServer | None = None
        self._template: SessionTemplate | None = None

    @property
    def busy(self) -> bool:
        """True while any session is inside a transaction."""
        return any(s.in_transaction for s in self.sessions)

    def factory(self) -> GatewaySMTP:
        """A protocol for one client connection."""
        if self._template is None:   # built in the event loop, once
            tls = self.settings.tls
            self._template = SessionTemplate(
                GatewaySMTP, Hooks(), data_size_limit=self.pipeline.limits.max_message_size,
                enable_SMTPUTF8=True, hostname=self.settings.hostname, ident="mailroute",
                timeout=self.settings.client_timeout, tls_context=tls.context if tls else None,
                require_starttls=bool(tls and tls.required))
        return GatewaySMTP(self, self._template)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port``; returns the port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.factory, host, port, reuse_address=True)
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        """Stop accepting, let transactions in flight finish, close everything."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        await drain(lambda: self.busy, self.settings.shutdown_grace)
        for session in list(self.sessions):
            session.close_all()
        self.pool.close()
        await asyncio.sleep(0.05)   # the closed transports release their sockets
        self.runner.shutdown()
        self.lookups.shutdown(wait=False, cancel_futures=True)

    def trusts_xforward(self, peer: str | None) -> bool:
        """True when ``peer`` may send XFORWARD."""
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in self.xforward_nets)


class LinkPool:
    """Idle next-hop connections, per route, shared by the sessions: a client that sends
    one message per connection (Postfix's smtp client does) does not cost a new next-hop
    connection, greeting and EHLO per message."""

    def __init__(self, per_route: int = 32, max_idle: float = 60.0) -> None:
        self.per_route = per_route
        self.max_idle = max_idle
        self._idle: dict[Route, list[tuple[float, NextHopClient]]] = {}

    def take(self, route: Route) -> NextHopClient | None:
        """An idle connection for ``route``, if one is fresh enough."""
        idle = self._idle.get(route, [])
        now = time.monotonic()
        while idle:
            since, client = idle.pop()
            if now - since < self.max_idle and not client.closed:
                return client
            client.abort()
        return None

    def give(self, route: Route, client: NextHopClient) -> None:
        """Keep ``client`` (between transactions) for the next session."""
        idle = self._idle.setdefault(route, [])
        if len(idle) >= self.per_route:
            client.abort()
            return
        idle.append((time.monotonic(), client))

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for _, client in idle:
                client.abort()
        self._idle = {}


class Hooks:
    """aiosmtpd's handler: every hook hands over to the session (one per connection)."""

    async def handle_EHLO(self, server: GatewaySMTP, session: Any, envelope: Any,
                          hostname: str, responses: list[str]) -> list[str]:
        """Our extensions: PIPELINING and XFORWARD added, AUTH removed (we offer none)."""
        session.host_name = hostname
        server.helo = hostname
        kept = [r for r in responses[:-1] if not r.startswith("250-AUTH")]
        kept.append("250-PIPELINING")
        if server.service.trusts_xforward(server.peer_address):
            kept.append("250-XFORWARD " + " ".join(_XFORWARD_ATTRS))
            kept.append("250-XCLIENT " + " ".join(_XCLIENT_ATTRS))
        kept.append("250 ENHANCEDSTATUSCODES")
        return ["\r\n".join(kept)]  # aiosmtpd sends each item on its own: one write

    async def handle_HELO(self, server: GatewaySMTP, session: Any, envelope: Any,
                          hostname: str) -> str:
        """Remember the HELO name."""
        session.host_name = hostname
        server.helo = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server: GatewaySMTP, session: Any, envelope: Any,
                          address: str, options: list[str]) -> str:
        """Open the next-hop transaction; its answer is ours."""
        return await server.mail(envelope, address, options)

    async def handle_RCPT(self, server: GatewaySMTP, session: Any, envelope: Any,
                          address: str, options: list[str]) -> str:
        """The next hop's answer to this recipient."""
        return await server.rcpt(envelope, address)

    async def handle_RSET(self, server: GatewaySMTP, session: Any,
                          envelope: Any) -> str:
        """End the next-hop transaction too."""
        await server.end_transaction()
        server.xforward = {}
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server: GatewaySMTP, session: Any,
                          envelope: Any) -> str:
        """Close the next-hop connection politely."""
        await server.quit_next_hop()
        return "221 2.0.0 Bye"

    def handle_STARTTLS(self, server: GatewaySMTP, session: Any,
                        envelope: Any) -> bool:
        """Check the client certificate's name when names are required."""
        return server.tls_established(session.ssl or {})

    async def handle_exception(self, error: Exception) -> str:
        """Never show internal text; the client retries. A client that went away (the
        end of its stream in the middle of a command or of DATA) is no internal error."""
        reference = secrets.token_hex(6)
        if isinstance(error, (asyncio.IncompleteReadError, ConnectionError)):
            log.info("client went away, reference %s: %s", reference, error)
        else:
            log.error("session failed, reference %s", reference, exc_info=error)
        return f"451 4.3.0 internal error, reference {reference}"


class GatewaySMTP(FastSMTP):
    """One client connection, with its connection to the next hop."""

    # DATA is read by read_data in blocks; commands are still limited by
    # command_size_limits (512 octets, RFC 5321 4.5.3.1.4).
    line_length_limit = 64 * 1024

    def __init__(self, service: GatewayService, template: SessionTemplate) -> None:
        super().__init__(template)
        self.service = service
        self.helo: str | None = None
        self.peer_address: str | None = None
        self.xforward: dict[str, str] = {}   # XFORWARD: this transaction
        self.xclient: dict[str, str] = {}    # XCLIENT: the rest of the session
        self.tls_peer_names: list[str] = []
        self.links: dict[Route, NextHopClient] = {}
        self.legs: dict[Route, Leg] = {}
        self.refused: dict[Route, str] = {}   # a route whose MAIL failed: its RCPT answer
        self.sender = ""
        self.mail_options: list[str] = []
        self.in_transaction = False
        self.delivering = False
        self.eof_pending = False
        self.arrived = 0.0   # when the current message's final dot was read (monotonic)

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register the session (the first time; STARTTLS calls this again)."""
        super().connection_made(transport)
        if self.peer_address is None:
            peer = transport.get_extra_info("peername")
            self.peer_address = str(peer[0]) if peer else None
            self.service.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        """Client gone: abort the next-hop transaction (nothing without our 250 is kept)."""
        self.service.sessions.discard(self)
        self.in_transaction = False
        self._drop_links()
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        """The client half-closed. Exim sends QUIT after the final dot and shuts its side
        down before our answer: aiosmtpd would cancel the session, and the hand-on with
        it. From DATA until the answer is sent, keep the connection open to answer."""
        if self.delivering and self.session is not None and self.session.ssl is None:
            self.eof_pending = True
            self._reader.feed_eof()
            return True
        return super().eof_received()

    async def _finish_half_closed(self) -> None:
        """After the answer to a half-closed client: a pipelined QUIT, then close."""
        rest = await self._reader.read(1024)
        if rest.lstrip().upper().startswith(b"QUIT"):
            await self.push("221 2.0.0 Bye")
        if self.transport is not None:
            self.transport.close()

    def close_all(self) -> None:
        """Shutdown: 421 to the client, then close its connection and the next hop's."""
        self._drop_links()
        if self.transport is not None:
            if not self.transport.is_closing():
                cast("asyncio.WriteTransport", self.transport).write(CLOSING)
            self.transport.close()

    def tls_established(self, info: dict[str, Any]) -> bool:
        """After STARTTLS: the verified peer name, checked against the required names."""
        tls = self.service.settings.tls
        names = _cert_names(info.get("peercert"))
        self.tls_peer_names = names
        if tls is None or not tls.client_names:
            return True
        if any(cert_name_matches(pattern, name) for pattern in tls.client_names
               for name in names):
            return True
        log.warning("client %s: certificate names %s match none of %s: refused",
                    self.peer_address, ",".join(names) or "(none)", ",".join(tls.client_names))
        return False

    # -- XFORWARD -----------------------------------------------------------------------

    async def smtp_XFORWARD(self, arg: str | None) -> None:
        """Postfix's XFORWARD: the original client's facts, for the policy and the log."""
        facts = await self._client_facts("XFORWARD", arg, _XFORWARD_ATTRS)
        if facts is not None:
            self.xforward.update(facts)
            await self.push("250 2.0.0 Ok")

    async def smtp_XCLIENT(self, arg: str | None) -> None:
        """Postfix's XCLIENT: a proxy in front of us names the original client; the session
        starts over with a new greeting (XCLIENT_README)."""
        facts = await self._client_facts("XCLIENT", arg, _XCLIENT_ATTRS)
        if facts is not None:
            self.xclient = facts
            self.xforward = {}
            self.helo = None
            await self.push(f"220 {self.hostname} ESMTP mailroute")

    async def _client_facts(self, command: str, arg: str | None,
                            allowed: tuple[str, ...]) -> dict[str, str] | None:
        """The ``NAME=value`` pairs of an XFORWARD or XCLIENT (xtext decoded, unavailable
        values left out), or ``None`` after answering why they are refused."""
        if not self.service.trusts_xforward(self.peer_address):
            await self.push(f"550 5.7.0 {command} not authorised")
            return None
        if self.in_transaction or not arg:
            await self.push(f"503 5.5.1 {command} not allowed here")
            return None
        facts: dict[str, str] = {}
        for pair in arg.split():
            name, _, value = pair.partition("=")
            if name.upper() not in allowed:
                await self.push(f"501 5.5.4 bad {command} attribute {name[:20]!r}")
                return None
            value = _xtext_decode(value)
            if value not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
                facts[name.upper()] = value
        return facts

    # -- transaction --------------------------------------------------------------------

    async def mail(self, envelope: Any, address: str, options: list[str]) -> str:
        """MAIL FROM, answered here: the next hop sees it with the first recipient routed
        to it (pipelined with that RCPT), and a refusal of it is the answer to every RCPT
        it would have carried. Refused while stopping."""
        await self.end_transaction()
        if self.service.stopping:
            return SHUTTING_DOWN
        if not address.isprintable():  # NUL or another control character: no address
            return BAD_SENDER
        # aiosmtpd's form of the null sender (a bounce) is "<>", and it must stay true in
        # aiosmtpd's envelope (an empty one is "need MAIL command" at RCPT)
        self.sender = "" if address == "<>" else address
        self.mail_options = list(options)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        self.in_transaction = True
        return "250 2.1.0 Ok"

    async def rcpt(self, envelope: Any, address: str) -> str:
        """RCPT TO: the route's next hop answers, word for word (sanitised)."""
        if not address.isprintable():
            return BAD_RECIPIENT
        router = self.service.router
        conn = self._connection()
        if router.blocking:
            route = await asyncio.get_running_loop().run_in_executor(
                self.service.lookups, router.route, self.sender, address, conn)
        else:
            route = router.route(self.sender, address, conn)
        if isinstance(route, str):
            return route
        refused = self.refused.get(route)
        if refused is not None:
            return refused
        leg = self.legs.get(route)
        if leg is None:
            opened = await self._open_leg(route, address)
            if isinstance(opened, str):
                self.refused[route] = opened   # MAIL's answer for every RCPT of the route
                return opened
            leg, reply = opened
        elif leg.broken or leg.client.closed:
            return NEXT_HOP_LOST
        elif leg.ascii_only and not address.isascii():
            return NO_UTF8_ADDRESSES
        else:
            reply = None
        if reply is None:
            try:
                reply = await leg.client.command(f"RCPT TO:<{address}>")
            except NextHopError as error:
                log.warning("next hop %s: %s", route.hop, error)
                leg.broken = True
                leg.client.abort()
                return NEXT_HOP_LOST
        if not reply.ok:
            return _relay(reply)
        envelope.rcpt_tos.append(address)
        leg.recipients.append(address)
        return _relay(reply) if reply.code == 251 else "250 2.1.5 Ok"

    def _connection(self) -> ConnectionFacts:
        """What the routes are decided on: the verified TLS names and the client address."""
        return ConnectionFacts(tuple(self.tls_peer_names), self._client_address())

    async def _open_leg(self, route: Route, recipient: str
                        ) -> tuple[Leg, NextHopReply | None] | str:
        """The transaction for ``route``, on the session's or a pooled connection or a new
        one: MAIL FROM, and with PIPELINING the first RCPT in the same write (its reply is
        returned too). A string is the reply refusing MAIL."""
        client = self.links.pop(route, None) or self.service.pool.take(route)
        reused = client is not None
        try:
            replies = await self._mail(route, client, recipient)
        except NextHopError as error:
            if not reused:
                _log_failure(route, error)
                return NEXT_HOP_DOWN
            try:  # an idle connection the next hop closed meanwhile: once more, fresh
                replies = await self._mail(route, None, recipient)
            except NextHopError as again:
                _log_failure(route, again)
                return NEXT_HOP_DOWN
        if isinstance(replies, str):
            return replies
        mail, rcpt = replies
        if not mail.ok:
            return _relay(mail)
        client = self.links[route]
        leg = self.legs[route] = Leg(route, client, ascii_only=(
            "SMTPUTF8" in _option_names(self.mail_options) and not client.has("SMTPUTF8")))
        return leg, rcpt

    async def _mail(self, route: Route, client: NextHopClient | None, recipient: str
                    ) -> tuple[NextHopReply, NextHopReply | None] | str:
        """MAIL FROM (and RCPT TO, pipelined) on ``client`` or a new connection, which is
        kept in :attr:`links` unless it failed."""
        try:
            if client is None or client.closed:
                client = await self._connect(route)
            forwarded = _mail_parameters(self.mail_options, client,
                                         ascii_envelope=(self.sender + recipient).isascii())
            if forwarded is None:
                self.links[route] = client
                return NO_UTF8_ADDRESSES
            mail = " ".join([f"MAIL FROM:<{self.sender}>", *forwarded])
            if client.has("PIPELINING"):
                mail_reply, rcpt_reply = await client.pipelined(
                    (mail, f"RCPT TO:<{recipient}>"))
                replies = (mail_reply, rcpt_reply if mail_reply.ok else None)
            else:
                replies = (await client.command(mail), None)
        except NextHopError:
            if client is not None:
                client.abort()
            raise
        self.links[route] = client
        return replies

    async def _connect(self, route: Route) -> NextHopClient:
        """A new connection to the route's next hop, or to its fallbacks in order."""
        settings = self.service.settings
        failure: NextHopError | None = None
        for hop in route.candidates():
            try:
                return await NextHopClient.open(hop.host, hop.port, helo=settings.hostname,
                                                timeouts=settings.timeouts, tls=hop.tls,
                                                tls_name=hop.tls_name)
            except NextHopError as error:
                log.warning("next hop %s: %s", hop, error)
                failure = error
        assert failure is not None
        raise _Unreachable(str(failure)) from failure

    async def end_transaction(self) -> None:
        """RSET every next-hop transaction still open."""
        for leg in self.legs.values():
            if not leg.done and not leg.broken and not leg.client.closed:
                await leg.client.rset()
        self.legs = {}
        self.refused = {}
        self.in_transaction = False

    async def quit_next_hop(self) -> None:
        """The client said QUIT: idle next-hop connections go back to the pool."""
        self._drop_links()

    def _drop_links(self) -> None:
        """Client gone: connections between transactions go to the service's pool for the
        next session; one inside a transaction is closed (the next hop discards it)."""
        for route, client in self.links.items():
            leg = self.legs.get(route)
            if (leg is not None and not leg.done) or client.closed:
                client.abort()
            else:
                self.service.pool.give(route, client)
        self.links = {}
        self.legs = {}
        self.refused = {}
        self.in_transaction = False

    async def push(self, status: AnyStr) -> None:
        """Send a reply; aiosmtpd's own refusal of ``MAIL FROM ... SIZE=`` over the limit
        goes out as ours (with its enhanced status code, as at the final dot)."""
        if status == _AIOSMTPD_TOO_BIG:
            await super().push(TOO_BIG)
        else:
            await super().push(status)

    async def smtp_DATA(self, arg: str | None) -> None:
        """DATA read in blocks (aiosmtpd's line reader replaced), then :meth:`deliver`."""
        if await self.check_helo_needed():
            return
        if self.envelope is None or not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # From here until the answer is out, a half-close keeps the connection (see
        # eof_received): it may come with the last block of data or during the RSET that
        # follows a refusal, before the answer.
        self.delivering = True
        try:
            try:
                received = await read_data(self._reader, self.service.reader)
                self.arrived = time.monotonic()
            except asyncio.IncompleteReadError:   # no final dot: nothing was accepted
                self.in_transaction = False
                if self.eof_pending and self.transport is not None:
                    self.transport.close()
                return
            try:
                status = await self.deliver(received)
            finally:
                received.discard()
                self.envelope = self._create_envelope()
                self.xforward = {}
                await self.end_transaction()
            await self.push(status)
        finally:
            self.delivering = False
        if self.eof_pending:
            await self._finish_half_closed()

    async def deliver(self, received: ReceivedData) -> str:
        """Run the policy once per next-hop transaction, then hand the results on; our
        answer to the final dot (250 only when every next hop took its part).

        Nothing is handed on unless the policy took the message for every group and every
        transaction is still open: one group's refusal or temporary failure is the answer
        for all, so the client's retry or bounce covers recipients who got nothing. A group
        a next hop took before a later one failed at its final dot is remembered
        (:attr:`GatewayService.handed_on`) and not handed on again on the retry."""
        legs = [leg for leg in self.legs.values() if leg.recipients]
        if received.too_big:
            for leg in legs:
                self._log(TOO_BIG, None, b"", self._envelope(leg))
            return TOO_BIG
        data = received.content()
        refusal = self.service.router.admit(
            self.sender, [r for leg in legs for r in leg.recipients], self._connection(), data)
        if refusal is not None:
            for leg in legs:
                self._log(refusal, None, data, self._envelope(leg))
            return refusal
        runs = [await self._run_policy(data, leg) for leg in legs]
        failures = [run.status for run in runs if run.status and not run.status.startswith("2")]
        if failures:
            answer = _combined(failures)
            for run in runs:
                self._log(run.status or answer, run.result, data, run.envelope)
            return answer
        statuses = []
        for run in runs:
            status = run.status or await self._complete(run, data)
            self._log(status, run.result, data, run.envelope)
            statuses.append(status)
        answer = _combined(statuses)
        if not answer.startswith("2"):
            for run, status in zip(runs, statuses, strict=True):
                if run.leg.done and status.startswith("2"):
                    self.service.handed_on.record(_handed_on_key(self.sender, run.leg, data),
                                                  time.time(), HANDED_ON_TTL)
        return answer

    async def _run_policy(self, data: bytes, leg: Leg) -> _Run:
        """The policy's verdict for one group; ``status`` stays empty when the result is
        still to be handed on or quarantined."""
        envelope = self._envelope(leg)
        if leg.broken or leg.client.closed:
            return _Run(leg, envelope, None, NEXT_HOP_LOST)
        service = self.service
        pipeline = service.pipeline
        try:
            result = await service.runner.run(lambda: pipeline.process(data, envelope),
                                              len(data), service.settings.processing_timeout)
        except TimeoutError:
            log.warning("policy took longer than %ss: tempfail",
                        service.settings.processing_timeout)
            return _Run(leg, envelope, None, TIMED_OUT)
        if result.action is Action.ACCEPT and result.data is not None:
            if leg.ascii_only and not header_is_ascii(result.data):
                return _Run(leg, envelope, result, NO_UTF8_HEADER)
            return _Run(leg, envelope, result, "")
        if result.action is Action.QUARANTINE:
            return _Run(leg, envelope, result, "")
        return _Run(leg, envelope, result, str(result.smtp_reply))

    async def _complete(self, run: _Run, data: bytes) -> str:
        """Quarantine the result, or hand it on unless the client's earlier try did."""
        result = run.result
        assert result is not None
        if result.action is Action.QUARANTINE:
            return self._quarantine(result, data, run.envelope)
        handed_on = self.service.handed_on
        if len(handed_on) and handed_on.count(_handed_on_key(self.sender, run.leg, data),
                                              time.time(), HANDED_ON_TTL):
            log.info("next hop %s took this message on an earlier try: not handed on again",
                     run.leg.route.hop)
            return HANDED_ON_BEFORE   # its open transaction is reset with the others
        assert result.data is not None
        return await self._hand_on(result.data, run.leg)

    async def _hand_on(self, output: bytes, leg: Leg) -> str:
        try:
            reply = await leg.client.data(to_wire(output))
        except NextHopError as error:
            log.warning("next hop %s: %s", leg.route.hop, error)
            leg.broken = True
            leg.client.abort()
            return NEXT_HOP_LOST
        leg.done = True
        if reply.code == 250:
            return f"250 2.0.0 Ok: next hop said: {reply.text}"
        return _relay(reply)

    def _quarantine(self, result: Result, data: bytes, envelope: Envelope) -> str:
        reply = result.smtp_reply
        if self.service.quarantine is None:
            return f"451 4.7.0 {reply.text} (no quarantine configured)"
        try:
            entry = self.service.quarantine.store(
                result.data or data, sender=envelope.mail_from, recipients=envelope.rcpt_to,
                reply=str(reply), queue_id=None, now=time.time())
        except MailrouteError as error:
            return f"{error.reply.code} {error.reply.status} {error.reply.text}"
        return f"250 2.7.0 {reply.text}; quarantined as {entry}"

    def _client_address(self) -> str | None:
        return self._fact("ADDR") or self.peer_address

    def _fact(self, name: str) -> str | None:
        """What XFORWARD (this transaction) or else XCLIENT (this session) said."""
        return self.xforward.get(name) or self.xclient.get(name)

    def _envelope(self, leg: Leg) -> Envelope:
        return Envelope(mail_from=self.sender, rcpt_to=tuple(leg.recipients),
                        client_address=self._client_address(),
                        helo=self._fact("HELO") or self.helo,
                        auth_user=self.xclient.get("LOGIN"),
                        tls_peer_name=self.tls_peer_names[0] if self.tls_peer_names else None,
                        direction=leg.route.direction)

    def _log(self, status: str, result: Result | None, data: bytes, envelope: Envelope) -> None:
        verdict = str(result.action) if result is not None else "tempfail"
        if result is not None and result.action is Action.ACCEPT and not status.startswith("2"):
            verdict = "accept-deferred" if status.startswith("4") else "accept-refused"
        record = record_for(result, envelope, data=data, verdict=verdict,
                            reply=_reply_of(status), client_name=self._fact("NAME"),
                            sasl_user=envelope.auth_user,
                            duration=time.monotonic() - self.arrived)
        self.service.message_log.write(record)
        if self.service.metrics is not None:
            self.service.metrics.observe(record)


class _Unreachable(NextHopError):
    """No candidate of a route took the connection (each failure is logged already)."""


def _log_failure(route: Route, error: NextHopError) -> None:
    if not isinstance(error, _Unreachable):
        log.warning("next hop %s: %s", route.hop, error)


def _reply_of(status: str) -> Reply:
    """``"451 4.4.1 text"`` as a :class:`Reply` (for the log line)."""
    code, _, rest = status.partition(" ")
    enhanced, _, text = rest.partition(" ")
    return Reply(int(code) if code.isdigit() else 451, enhanced or "4.0.0", text)


@record
class Leg:
    """One next-hop transaction of a client transaction: its route, connection and the
    recipients it accepted."""

    route: Route
    client: NextHopClient
    recipients: list[str] = field(default_factory=list)
    #: The client asked for SMTPUTF8 and the next hop does not offer it: the transaction
    #: goes on without it while its addresses and the message's header are ASCII.
    ascii_only: bool = False
    broken: bool = False
    done: bool = False


@record(frozen=True)
class _Run:
    """The policy's verdict for one group: the reply, or ``""`` while its result is still
    to be handed on or quarantined."""

    leg: Leg
    envelope: Envelope
    result: Result | None
    status: str


def _handed_on_key(sender: str, leg: Leg, data: bytes) -> str:
    """What identifies one group's message when the client tries again: the same sender,
    recipients and bytes (a queueing MTA resends its queue file as it is)."""
    digest = hashlib.sha256()
    for part in (sender, *sorted(leg.recipients)):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(data)
    return digest.hexdigest()


def _combined(statuses: list[str]) -> str:
    """One answer for several next-hop transactions: 250 when all took it; else the first
    temporary failure (the client retries); else the first refusal."""
    if all(s.startswith("2") for s in statuses):
        return statuses[0] if len(statuses) == 1 else \
            f"250 2.0.0 Ok: {len(statuses)} next hops accepted"
    return next((s for s in statuses if s.startswith("4")),
                next(s for s in statuses if not s.startswith("2")))


def _mail_parameters(options: Sequence[str], client: NextHopClient, *,
                     ascii_envelope: bool) -> list[str] | None:
    """The client's MAIL parameters the next hop understands; None if SMTPUTF8 is needed
    and not offered.

    A client may ask for SMTPUTF8 for mail that needs none (RFC 6531 3.4 leaves it to the
    client; some ask for it whenever it is offered): towards a next hop without it, a
    transaction whose addresses are ASCII goes on without the parameter, as Postfix
    relays such mail, and its message is checked at the final dot (:class:`Leg`).
    """
    forwarded = []
    for option in options:
        name = option.partition("=")[0].upper()
        if name == "SMTPUTF8":
            if client.has("SMTPUTF8"):
                forwarded.append("SMTPUTF8")
            elif not ascii_envelope:
                return None
        elif (name == "BODY" and client.has("8BITMIME")) or (name == "SIZE"
                                                              and client.has("SIZE")):
            forwarded.append(option)
    return forwarded


def _option_names(options: Sequence[str]) -> set[str]:
    """The names of MAIL parameters (``BODY=8BITMIME`` -> ``BODY``), upper case."""
    return {option.partition("=")[0].upper() for option in options}


def _relay(reply: Any) -> str:
    """A next-hop reply as ours: its code and its text (sanitised, one line)."""
    return f"{reply.code} {reply.text}".rstrip()


def _xtext_decode(value: str) -> str:
    """RFC 1891 xtext (``+XX`` hex escapes) to text; control characters dropped."""
    return "".join(ch for ch in decode_xtext(value) if ch.isprintable())[:255]


def _cert_names(cert: Any) -> list[str]:
    """subjectAltName DNS names, then the CN, of a decoded peer certificate."""
    if not isinstance(cert, dict):
        return []
    names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    for rdn in cert.get("subject", ()):
        names.extend(value for key, value in rdn if key == "commonName")
    return names


async def serve(pipeline: Pipeline, listen: tuple[str, int], settings: ServeSettings, *,
                ready: Callable[[int], None] | None = None,
                message_log: MessageLog | None = None, metrics: Metrics | None = None) -> None:
    """Run the service until SIGTERM or SIGINT; returns after a graceful shutdown."""
    pin_mmap_threshold()  # a resident process: large messages' buffers go back when freed
    service = GatewayService(pipeline, settings, message_log=message_log, metrics=metrics)
    # aiosmtpd logs every command with its arguments at INFO: the per-message line is ours.
    AIOSMTPD_LOG.setLevel(logging.WARNING)
    stop = stop_on_signals()
    port = await service.start(*listen)
    log.info("serve listening on %s:%d, next hop %s", listen[0], port,
             settings.next_hop or "per recipient (topology)")
    if ready is not None:
        ready(port)
    await stop.wait()
    with contextlib.suppress(Exception):
        await service.stop()
