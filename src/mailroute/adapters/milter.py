"""The milter adapter: mailroute inside Postfix or Sendmail, on asyncio.

One task per MTA connection drives a sans-I/O
:class:`~mailroute.protocols.milter.MilterConnection`. Headers and body are collected
(bounded by the policy's ``max_message_size``); at end-of-message the gateway session runs
in a worker thread, so one large message never stalls the event loop and the other
connections, while the connection sends ``SMFIR_PROGRESS`` keep-alives. The result is
answered with header actions and one contiguous body replacement, or a reply code.

Never lose mail: every internal failure answers ``451 4.3.0``; a connection we cannot answer
is closed, and the MTA applies its ``milter_default_action`` (``tempfail`` as documented).
On SIGTERM the server stops accepting, refuses new transactions with a 4xx, lets messages
in flight finish for ``shutdown_grace`` seconds, then tempfails what is left and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import grp
import logging
import os
import secrets
import signal
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from mailroute.adapters.heap import pin_mmap_threshold
from mailroute.adapters.messagelog import MessageLog, record_for
from mailroute.adapters.milter_map import (
    INTERNAL_REPLY,
    INTERNAL_TEMPFAIL,
    TOO_MANY_RECIPIENTS_REPLY,
    MessageFacts,
    as_reply_code,
    client_address,
    result_actions,
)
from mailroute.adapters.service import drain, exit_reserve, may_block, stop_on_signals
from mailroute.adapters.workerpool import WorkerPool
from mailroute.errors import ConfigError
from mailroute.item import Envelope
from mailroute.pipeline import Pipeline
from mailroute.protocols import milter as pm
from mailroute.records import field, record
from mailroute.results import Reply
from mailroute.session import Result

if TYPE_CHECKING:
    from mailroute.adapters.metrics import Metrics

__all__ = ["MilterServer", "MilterSettings", "SocketSpec", "listening_socket", "parse_socket",
           "serve"]

log = logging.getLogger("mailroute.milter")

#: Actions we use; intersected with what the MTA offers.
WANTED_ACTIONS = (pm.ActionFlag.ADDHDRS | pm.ActionFlag.CHGHDRS | pm.ActionFlag.CHGBODY
                  | pm.ActionFlag.QUARANTINE | pm.ActionFlag.SETSYMLIST)
#: Every step we are shown needs no reply (we decide at end-of-message, the one reply the
#: protocol always requires); header values come with their leading space. Each reply
#: saved is a round trip the MTA does not wait for.
WANTED_PROTOCOL = (pm.ProtocolFlag.NR_CONN | pm.ProtocolFlag.NR_HELO
                   | pm.ProtocolFlag.NR_MAIL | pm.ProtocolFlag.NR_RCPT
                   | pm.ProtocolFlag.NR_DATA | pm.ProtocolFlag.NR_HDR
                   | pm.ProtocolFlag.NR_EOH | pm.ProtocolFlag.NR_BODY
                   | pm.ProtocolFlag.NR_UNKN | pm.ProtocolFlag.HDR_LEADSPC)
#: Steps we never need shown: DATA, end-of-headers and unknown commands carry nothing we use.
SKIPPED_STEPS = pm.ProtocolFlag.NODATA | pm.ProtocolFlag.NOEOH | pm.ProtocolFlag.NOUNKNOWN
#: Skipped too when the MTA takes our macro lists: what connect tells us (client address,
#: TLS facts) then comes as macros with MAIL FROM. HELO stays (once per connection, no
#: reply): its name is no macro in Postfix, and SPF needs it for bounces.
SKIPPED_WITH_MACROS = pm.ProtocolFlag.NOCONNECT
#: Skipped for a policy without filters: it changes nothing, so the message is not needed.
#: Such a policy is shown DATA instead, and accepts the message there: the MTA sends no
#: content and skips the end-of-message exchange (with Postfix, the cleanup process's turn).
SKIPPED_WITHOUT_FILTERS = pm.ProtocolFlag.NOHDRS | pm.ProtocolFlag.NOBODY
SHOWN_WITHOUT_FILTERS = pm.ProtocolFlag.NODATA | pm.ProtocolFlag.NR_DATA
#: A macro name no MTA defines. Postfix sends each stage's macros even for the steps we skip,
#: and reads an empty list as "use main.cf's list" (its defaults cost it address
#: resolutions per recipient and a queue-id lookup per header line), so a stage we need
#: nothing from asks for this name: the MTA looks up nothing and sends an empty macro packet.
NO_MACROS = b"{mailroute_none}"
#: The macros we ask for, per stage (Postfix and Sendmail honour the list): the connection
#: facts with MAIL FROM, the queue id at end-of-message (Postfix assigns it at the first
#: accepted RCPT), nothing at the other stages.
WANTED_MACROS: tuple[tuple[int, bytes], ...] = (
    (pm.Stage.CONNECT, NO_MACROS),
    (pm.Stage.HELO, NO_MACROS),
    (pm.Stage.ENVFROM, b"{client_addr} {tls_version} {cert_subject} {cert_issuer} {verify} "
                       b"{auth_authen} {auth_type} i"),
    (pm.Stage.ENVRCPT, NO_MACROS),
    (pm.Stage.DATA, NO_MACROS),
    (pm.Stage.EOH, NO_MACROS),
    (pm.Stage.EOM, b"i"),
)
#: The same for a policy without filters, which answers at DATA: the queue id comes there.
WANTED_MACROS_WITHOUT_FILTERS: tuple[tuple[int, bytes], ...] = tuple(
    (stage, b"i" if stage == pm.Stage.DATA else NO_MACROS if stage == pm.Stage.EOM else names)
    for stage, names in WANTED_MACROS)
#: The macros of one message (the queue id, the SASL login of its MAIL FROM): forgotten when
#: it is answered or aborted, so the next message never reports the previous one's.
_MESSAGE_MACROS = (b"i", b"{auth_authen}", b"{auth_type}")
#: Pending connections the kernel queues for us (Postfix opens one per SMTP session).
LISTEN_BACKLOG = 512
SHUTTING_DOWN_REPLY = Reply(421, "4.3.2", "mail filter shutting down, try again later")
SHUTTING_DOWN = as_reply_code(SHUTTING_DOWN_REPLY)
TOO_BIG_REPLY = Reply(552, "5.3.4", "message too big")
TOO_BIG = as_reply_code(TOO_BIG_REPLY)
TOO_MANY_RECIPIENTS = as_reply_code(TOO_MANY_RECIPIENTS_REPLY)
NO_FILTERS_REPLY = Reply(250, "2.0.0", "accepted (no filters)")


class _Once:
    """Claimed by the first caller only: a message's log line is written once, by the policy
    run or by the tempfail that answered for it (a timeout, a shutdown), whichever is first."""

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token = [True]

    def claim(self) -> bool:
        try:
            self._token.pop()  # atomic: the run may end in a worker thread
        except IndexError:
            return False
        return True


class _Work(NamedTuple):
    """The policy run of one message, to go off the event loop, and what to log if it fails
    there (the pool answered the internal-failure tempfail)."""

    run: Callable[[], list[pm.Action]]
    failed: Callable[[], None]


def negotiate(offer: pm.OptionNegotiation, *, needs_message: bool = True) -> pm.NegotiateReply:
    """Our answer to the MTA's offer: the actions and skipped steps it allows, the macro
    lists when it takes them, and its own version when it is older than 6."""
    return _negotiate(offer.version, int(offer.actions), int(offer.protocol), needs_message)


@functools.lru_cache(maxsize=32)
def _negotiate(version: int, offered_actions: int, offered_protocol: int,
               needs_message: bool) -> pm.NegotiateReply:
    """:func:`negotiate`, once per distinct offer (an MTA makes the same offer on every
    connection, and opens one per SMTP session)."""
    version = min(version, pm.PROTOCOL_VERSION)
    offer = pm.OptionNegotiation(version, pm.ActionFlag(offered_actions),
                                 pm.ProtocolFlag(offered_protocol))
    actions = WANTED_ACTIONS & offer.actions
    protocol = WANTED_PROTOCOL | SKIPPED_STEPS
    macros: tuple[tuple[int, bytes], ...] = ()
    if version >= 6 and actions & pm.ActionFlag.SETSYMLIST:
        protocol |= SKIPPED_WITH_MACROS
        macros = WANTED_MACROS if needs_message else WANTED_MACROS_WITHOUT_FILTERS
    else:
        actions &= ~pm.ActionFlag.SETSYMLIST
    if not needs_message:
        protocol = (protocol | SKIPPED_WITHOUT_FILTERS) & ~SHOWN_WITHOUT_FILTERS
    return pm.NegotiateReply(actions, protocol & offer.protocol, macros, version)


@record(frozen=True)
class SocketSpec:
    """Where to listen: ``inet:PORT@HOST`` or ``unix:PATH``."""

    family: str
    host: str = ""
    port: int = 0
    path: Path | None = None


def parse_socket(text: str) -> SocketSpec:
    """Parse ``inet:PORT@HOST`` (Sendmail/OpenDKIM form; ``inet6:`` and a host in brackets
    too) or ``unix:PATH`` (``local:`` too).

    Raises:
        ValueError: anything else.
    """
    kind, _, rest = text.partition(":")
    if kind in ("unix", "local") and rest:
        return SocketSpec("unix", path=Path(rest))
    if kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if port.isdigit() and 0 < int(port) < 65536 and (kind == "inet" or ":" in host
                                                           or not host):
            default = "::1" if kind == "inet6" else "127.0.0.1"
            return SocketSpec("inet", host=host or default, port=int(port))
    raise ValueError(f"socket must be inet:PORT@HOST or unix:PATH, not {text!r}")


@record(frozen=True, kw_only=True)
class MilterSettings:
    """Timeouts and limits of the milter adapter (seconds, bytes).

    Attributes:
        idle_timeout: longest wait for the MTA's next command outside a message.
        content_timeout: longest wait for the next packet inside a message (Postfix's
            ``milter_content_timeout`` is 300 s).
        processing_timeout: longest run of the policy on one message before tempfail.
        progress_interval: how often to send a keep-alive while the policy runs.
        shutdown_grace: how long messages in flight may finish after SIGTERM.
        workers: threads that run the policy.
        hidden_above: header fields the MTA adds on top without showing them to the
            milter (Postfix's own ``Received``: 1); insert positions are shifted by it.
        max_packet: the largest packet accepted from the MTA.
        inline_size: messages up to this size run on the event loop itself (their policy
            run is shorter than the hand-off to a worker thread); larger ones in the pool,
            and every message when a filter is ``blocking`` (gpg, DNS).
    """

    idle_timeout: float = 3600.0
    content_timeout: float = 300.0
    processing_timeout: float = 240.0
    progress_interval: float = 5.0
    shutdown_grace: float = 5.0
    workers: int = field(default_factory=lambda: min(8, (os.cpu_count() or 1) + 1))
    hidden_above: int = 1
    max_packet: int = pm.DEFAULT_MAX_PACKET
    inline_size: int = 64 * 1024


_CLOSED = pm.State.CLOSED  # read per read: a global costs a tenth of the enum lookup


class _Closed(Exception):
    """The connection is over (EOF, quit, protocol error, timeout)."""


class MilterConnectionHandler(asyncio.Protocol):
    """One MTA connection: bytes to events, events to the session, results to actions.

    A protocol, not a stream pair: every packet the MTA sends is handled in the callback
    that received it, and the answers of one read go out in one write, so a message costs
    no task switches unless its policy run goes to the thread pool. Timeouts are checked by
    the server's one sweep over its connections (:meth:`MilterServer.sweep`), not by a timer
    per connection: a read only marks the connection active.
    """

    def __init__(self, server: MilterServer, *, tcp: bool = False) -> None:
        self.server = server
        self.tcp = tcp
        self.conn = pm.MilterConnection(max_packet=server.settings.max_packet,
                                        skip_empty_macros=True)
        self.facts = MessageFacts()
        self.head: list[bytes] = []
        self.body: list[bytes] = []  # joined once, with the header, at end-of-message
        self.size = 0
        self.in_message = False
        self.refused = False
        self.aborted = False
        self.lost = False
        self.working = False
        #: the MTA does not read our replies as fast as we write them: we read no more
        #: commands from it until it does (what waits to be sent stays bounded)
        self.write_paused = False
        self._work: _Work | None = None  # the policy run off the loop, while it runs
        self.needs_message = server.needs_message
        #: header values come and go with their leading white space (``SMFIP_HDR_LEADSPC``,
        #: protocol 6); an older MTA strips one space from what it shows and adds one to
        #: what it is given
        self.leading_space = True
        self.transport: asyncio.Transport | None = None
        self._closed: asyncio.Future[None] | None = None  # made when someone waits for it
        self._loop = asyncio.get_running_loop()
        #: when the sweep first found the connection silent; ``None``: active since then
        self.quiet_since: float | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register with the server (its sweep applies the timeouts)."""
        # asyncio's and uvloop's stream transports (the latter not an asyncio.Transport)
        self.transport = cast(asyncio.Transport, transport)
        if self.tcp:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.add_handler(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; work still running for it is not answered."""
        self.aborted = self.lost = True
        self.server.handlers.discard(self)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        """The transport's buffer is full: stop reading commands until it drains."""
        self.write_paused = True
        if self.transport is not None and not self.working:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        """The buffer drained: read commands again (unless the policy runs)."""
        self.write_paused = False
        if self.transport is not None and not self.working and not self.transport.is_closing():
            self.transport.resume_reading()

    def wait_closed(self) -> asyncio.Future[None]:
        """A future done once the connection is lost."""
        if self._closed is None:
            self._closed = self._loop.create_future()
            if self.lost:
                self._closed.set_result(None)
        return self._closed

    def data_received(self, data: bytes) -> None:
        """Feed the bytes; answer every command they complete."""
        self.quiet_since = None
        self.conn.receive_data(data)
        if not self.working:
            self._process()

    def eof_received(self) -> bool:
        """The MTA closed its side: what is buffered is handled, then the connection ends."""
        self.conn.receive_data(b"")
        if not self.working:
            self._process()
        return False

    # the conversation

    def _process(self) -> None:
        out: list[pm.Action] = []
        conn = self.conn
        next_event = conn.next_event
        try:
            while True:
                event = next_event()
                handler = _HANDLERS.get(type(event))
                if handler is not None:
                    answer = handler(self, event)
                    if answer is not None:
                        out += answer
                    elif conn.owed is not None:
                        out.append(_CONTINUE)
                elif event is pm.NEED_DATA:
                    break
                elif type(event) is pm.EndOfMessage:
                    self._add_body(event.data)
                    work = self._end_of_message()
                    if isinstance(work, list):
                        out += work
                        continue
                    self._write(out)
                    self._start_work(work)
                    return
                elif conn.owed is not None:  # an event that needs nothing from us
                    out.append(_CONTINUE)
            self._write(out)
            if conn.state is _CLOSED:  # the MTA said quit, or closed its side
                self.close()
        except _Closed:
            self._write(out)
            self.close()
        except pm.MilterProtocolError as error:
            log.warning("milter protocol error, closing: %s", error)
            self.server.count_error("protocol")
            self.close()
        except Exception:  # noqa: BLE001 - logged with its traceback by _failed
            self._failed()

    def _failed(self) -> None:
        """An unexpected error on this connection: logged with a reference, counted, the
        owed reply a tempfail, the connection closed."""
        reference = secrets.token_hex(6)
        log.exception("milter connection failed, reference %s", reference)
        self.server.count_error("internal")
        self._tempfail_owed()
        self.close()

    def _write(self, actions: list[pm.Action]) -> None:
        if not actions:
            return
        if self.aborted or self.transport is None or self.transport.is_closing():
            raise _Closed
        send = self.conn.send
        self.transport.write(b"".join([send(action) for action in actions]))

    def send(self, actions: list[pm.Action]) -> None:
        """Write ``actions`` now (progress while the policy runs).

        Raises:
            _Closed: the connection is gone.
        """
        self._write(actions)

    def close(self) -> None:
        """Close the connection (the MTA applies its default action to what is owed)."""
        self.aborted = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """End the connection now (shutdown): tempfail an owed reply (logged for a message
        whose policy run is still going), close the stream."""
        if self._work is not None and self.conn.owed is not None:
            self._work.failed()
        self._tempfail_owed()
        self.close()

    def _tempfail_owed(self) -> None:
        if self.conn.owed is None or self.conn.state is pm.State.ERROR:
            return
        with contextlib.suppress(Exception):
            self._write([INTERNAL_TEMPFAIL])

    def check_silence(self, now: float) -> None:
        """Close the connection when the MTA has been silent too long (the content timeout
        inside a message, the idle timeout outside; never while the policy runs)."""
        if self.working or self.quiet_since is None:
            self.quiet_since = now
            return
        settings = self.server.settings
        timeout = settings.content_timeout if self.in_message else settings.idle_timeout
        if now - self.quiet_since >= timeout:
            log.info("milter connection silent for %ss, closing", timeout)
            self.close()

    def _on_header(self, event: pm.Header) -> None:
        if self.needs_message:
            self._add_header(event)

    def _on_macros(self, event: pm.Macros) -> None:
        self.facts.add_macros(event.values)

    def _on_body(self, event: pm.BodyChunk) -> None:
        if self.needs_message:
            self._add_body(event.data)

    def _on_rcpt(self, event: pm.RcptTo) -> None:
        self.facts.add_recipient(event.address)

    def _on_negotiation(self, event: pm.OptionNegotiation) -> list[pm.Action]:
        reply = negotiate(event, needs_message=self.needs_message)
        self.leading_space = bool(reply.protocol & pm.ProtocolFlag.HDR_LEADSPC)
        return [reply]

    def _on_connect(self, event: pm.Connect) -> None:
        if event.family in (b"4", b"6"):
            self.facts.client_address = client_address(event.address.decode("ascii", "replace"))

    def _on_helo(self, event: pm.Helo) -> None:
        self.facts.set_helo(event.name)

    def _on_abort(self, event: pm.Abort | pm.QuitNewConnection) -> None:
        self._end_transaction()
        if isinstance(event, pm.QuitNewConnection):
            self.facts = MessageFacts()

    def _mail(self, event: pm.MailFrom) -> list[pm.Action]:
        self._reset_message()
        self.facts.set_sender(event.address)
        owed = self.conn.owed is not None
        if self.server.stopping:
            # Refused now when MAIL is answered, else at end-of-message.
            self.refused = not owed
            return [SHUTTING_DOWN] if owed else []
        self.in_message = True  # the content timeout applies from here
        return [pm.Continue()] if owed else []

    def _end_transaction(self) -> None:
        """The message is answered or aborted: its content and its own macros go (the
        next one's come with its MAIL FROM, or not at all: an empty macro packet makes
        no event)."""
        self._reset_message()
        macros = self.facts.macros
        for name in _MESSAGE_MACROS:
            macros.pop(name, None)

    def _reset_message(self) -> None:
        self.head = []
        self.body = []
        self.size = 0
        self.in_message = False
        self.refused = False

    def _limit(self) -> int:
        return self.server.max_message_size

    def _add_header(self, event: pm.Header) -> None:
        value = event.value
        if b"\n" in value:
            value = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        field_ = event.name + (b":" if self.leading_space else b": ") + value + b"\r\n"
        self.size += len(field_)
        if self.size <= self._limit():
            self.head.append(field_)

    def _add_body(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size <= self._limit() + 2:
            self.body.append(data)

    def message_bytes(self) -> bytes:
        """The message as the MTA holds it (minus the fields it hides), CRLF line ends."""
        return b"".join([*self.head, b"\r\n", *self.body])

    def _on_data(self, event: pm.Data) -> list[pm.Action] | None:
        return None if self.needs_message else self._accept_unread()

    def _accept_unread(self) -> list[pm.Action]:
        """A policy without filters accepts the message without reading it: at DATA, or at
        end-of-message with an MTA that does not show DATA (milter protocol 2 and 3)."""
        refused, self.in_message = self.refused, False
        if refused:
            return self._refuse_unread(SHUTTING_DOWN_REPLY, SHUTTING_DOWN)
        facts = self.facts
        self.server.record(None, facts.envelope(), b"",
                           queue_id=facts.queue_id if facts.queue_id != "-" else None,
                           sasl_user=facts.auth_user, started=time.monotonic(),
                           reply=NO_FILTERS_REPLY)
        self._end_transaction()
        return [pm.Accept()]

    def _refuse_unread(self, reply: Reply, answer: pm.ReplyCode) -> list[pm.Action]:
        """Answer the message that ends now with ``answer`` without running the policy, and
        log it (``reply``; its Message-ID from the fields received)."""
        facts = self.facts
        head = b"".join([*self.head, b"\r\n"]) if self.head else b""
        self.server.record(None, facts.envelope(), head,
                           queue_id=facts.queue_id if facts.queue_id != "-" else None,
                           sasl_user=facts.auth_user, started=time.monotonic(), reply=reply)
        self._end_transaction()
        return [answer]

    def _end_of_message(self) -> list[pm.Action] | _Work:
        """The answer to end-of-message, or the work that computes it off the loop."""
        if not self.needs_message:
            return self._accept_unread()
        refused, self.in_message = self.refused, False
        if refused:
            return self._refuse_unread(SHUTTING_DOWN_REPLY, SHUTTING_DOWN)
        if self.size + 2 > self._limit():
            return self._refuse_unread(TOO_BIG_REPLY, TOO_BIG)
        facts, server = self.facts, self.server
        if facts.dropped_recipients:
            return self._refuse_unread(TOO_MANY_RECIPIENTS_REPLY, TOO_MANY_RECIPIENTS)
        started = time.monotonic()
        queue_id = facts.queue_id if facts.queue_id != "-" else None
        sasl = facts.auth_user
        data, envelope = self.message_bytes(), facts.envelope()
        self._end_transaction()
        hidden, leading_space = server.settings.hidden_above, self.leading_space
        permits = self.conn.permits
        logged = _Once()

        def work() -> list[pm.Action]:
            with server.working():
                result: Result = server.pipeline.process(data, envelope)
                actions = result_actions(result, hidden_above=hidden,
                                         leading_space=leading_space)
            barred = next((action for action in actions if not permits(action)), None)
            if barred is not None:
                # the policy's answer cannot be given: the sender retries, nothing unprocessed
                log.warning("the MTA does not allow the milter action %s (negotiated "
                            "actions %#x): answered %s %s", type(barred).__name__,
                            int(self.conn.actions), INTERNAL_REPLY.code, INTERNAL_REPLY.status)
                server.count_error("internal")
                if logged.claim():
                    server.record(result, envelope, data, queue_id=queue_id, sasl_user=sasl,
                                  started=started, reply=INTERNAL_REPLY)
                return [INTERNAL_TEMPFAIL]
            if logged.claim():
                server.record(result, envelope, data, queue_id=queue_id, sasl_user=sasl,
                              started=started)
            return actions

        def failed() -> None:
            if logged.claim():
                server.record(None, envelope, data, queue_id=queue_id, sasl_user=sasl,
                              started=started, reply=INTERNAL_REPLY)

        if server.inline and len(data) <= server.settings.inline_size:
            try:  # a small message costs less than the hand-off to a thread
                return work()
            except Exception:
                reference = secrets.token_hex(6)
                log.exception("processing failed, reference %s", reference)
                server.count_error("internal")
                failed()
                return [INTERNAL_TEMPFAIL]
        return _Work(work, failed)

    def _start_work(self, work: _Work) -> None:
        self.working = True
        self._work = work
        assert self.transport is not None
        self.transport.pause_reading()
        task = self._loop.create_task(self._finish(work))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _finish(self, work: _Work) -> None:
        try:
            actions = await self.server.run_with_progress(work.run, self)
            if actions == [INTERNAL_TEMPFAIL]:
                work.failed()
            self._write(actions)
        except _Closed:
            self.close()
            return
        except Exception:  # noqa: BLE001 - logged with its traceback by _failed
            self._failed()
            return
        finally:
            self.working = False
            self._work = None
        assert self.transport is not None
        if not self.transport.is_closing():
            if not self.write_paused:
                self.transport.resume_reading()
            self._process()


_CONTINUE = pm.Continue()

#: Event type -> what the connection does with it (every event but end-of-message); ``None``
#: from a handler, or no handler, means "continue if the MTA waits for a reply". A dict
#: lookup per packet instead of a chain of tests.
_HANDLERS: dict[type, Callable[[MilterConnectionHandler, Any], list[pm.Action] | None]] = {
    pm.Header: MilterConnectionHandler._on_header,
    pm.Macros: MilterConnectionHandler._on_macros,
    pm.BodyChunk: MilterConnectionHandler._on_body,
    pm.RcptTo: MilterConnectionHandler._on_rcpt,
    pm.Data: MilterConnectionHandler._on_data,
    pm.MailFrom: MilterConnectionHandler._mail,
    pm.OptionNegotiation: MilterConnectionHandler._on_negotiation,
    pm.Connect: MilterConnectionHandler._on_connect,
    pm.Helo: MilterConnectionHandler._on_helo,
    pm.Abort: MilterConnectionHandler._on_abort,
    pm.QuitNewConnection: MilterConnectionHandler._on_abort,
}


class MilterServer:
    """The listening milter: one protocol object per connection, a thread pool for the
    policy of large messages."""

    def __init__(self, pipeline: Pipeline, settings: MilterSettings | None = None, *,
                 message_log: MessageLog | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings or MilterSettings()
        self.message_log = message_log or MessageLog()
        self.metrics = metrics
        self.use_pipeline(pipeline)
        self.pool = WorkerPool(self.settings.workers, "milter")
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.handlers: set[MilterConnectionHandler] = set()
        self.in_flight = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None
        if metrics is not None:  # messages waiting for a worker thread
            metrics.track_size("workers", lambda: max(0, self.in_flight - self.settings.workers))

    def use_pipeline(self, pipeline: Pipeline) -> None:
        """Run ``pipeline`` for every message that ends from now on (a reloaded policy); an
        open connection keeps what it negotiated (whether it is shown the message)."""
        self.pipeline = pipeline
        #: small messages may run on the event loop: no filter waits on the outside world
        self.inline = not may_block(pipeline)
        #: a policy without filters changes nothing: the message itself is not needed
        self.needs_message = bool(pipeline.filters)
        self.max_message_size = pipeline.limits.max_message_size

    def reload(self, load: Callable[[], Pipeline]) -> None:
        """Load a policy with ``load`` off the event loop, then use it; a policy that does
        not load is logged and the running one kept."""
        task = asyncio.get_running_loop().create_task(self._reload(load))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reload(self, load: Callable[[], Pipeline]) -> None:
        try:
            pipeline = await asyncio.get_running_loop().run_in_executor(None, load)
        except ConfigError as error:
            log.error("policy not reloaded, the running one stays: %s", error)
            return
        except Exception:  # logged with its traceback; the milter runs on
            log.exception("policy not reloaded, the running one stays")
            return
        self.use_pipeline(pipeline)
        log.info("policy reloaded")

    @property
    def sweep_interval(self) -> float:
        """Seconds between two timeout sweeps: a silent connection is closed between its
        timeout and its timeout plus twice this."""
        settings = self.settings
        return min(1.0, settings.idle_timeout / 8, settings.content_timeout / 8)

    def add_handler(self, handler: MilterConnectionHandler) -> None:
        """Track a new connection; the timeout sweep runs while there are connections."""
        self.handlers.add(handler)
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.sweep_interval, self.sweep)

    def sweep(self) -> None:
        """Apply the timeouts to every connection; again later while any is open."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for handler in list(self.handlers):
            if not handler.aborted:
                handler.check_silence(now)
        self._sweeper = (loop.call_later(self.sweep_interval, self.sweep) if self.handlers
                         else None)

    def record(self, result: Result | None, envelope: Envelope, data: bytes, *,
               queue_id: str | None, sasl_user: str | None, started: float,
               reply: Reply | None = None) -> None:
        """Write the message's log line (``reply`` when the adapter decided, not the policy)."""
        verdict = None if reply is None else (
            "reject" if reply.code >= 500 else "tempfail" if reply.code >= 400 else "accept")
        record = record_for(result, envelope, data=data, verdict=verdict, reply=reply,
                            queue_id=queue_id, sasl_user=sasl_user,
                            duration=time.monotonic() - started)
        self.message_log.write(record)
        if self.metrics is not None:
            self.metrics.observe(record)

    def count_error(self, kind: str) -> None:
        """Count a failure in the metrics, if any."""
        if self.metrics is not None:
            self.metrics.error(kind)

    def working(self) -> contextlib.AbstractContextManager[None]:
        """A block during which a message counts as in flight in the metrics."""
        return self.metrics.in_flight() if self.metrics is not None else contextlib.nullcontext()

    @property
    def busy(self) -> bool:
        """True while a message is being received or processed."""
        return bool(self.in_flight) or any(h.in_message for h in self.handlers)

    async def run_with_progress(self, work: Callable[[], list[pm.Action]],
                                handler: MilterConnectionHandler) -> list[pm.Action]:
        """Run ``work`` in the pool, sending progress while it runs; tempfail on failure."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        self.in_flight += 1
        try:
            future = loop.run_in_executor(self.pool, work)
            deadline = loop.time() + settings.processing_timeout
            next_progress = loop.time() + settings.progress_interval
            while True:
                now = loop.time()
                if now >= deadline:
                    log.warning("policy took longer than %ss: tempfail",
                                settings.processing_timeout)
                    self.count_error("timeout")
                    return [INTERNAL_TEMPFAIL]
                if handler.aborted:
                    raise _Closed
                if now >= next_progress:
                    handler.send([pm.Progress()])
                    next_progress = now + settings.progress_interval
                done, _ = await asyncio.wait(
                    {future}, timeout=min(next_progress, deadline) - now if not self.stopping
                    else min(0.1, deadline - now))
                if done:
                    return future.result()
        except (_Closed, asyncio.CancelledError):
            raise
        except Exception:
            reference = secrets.token_hex(6)
            log.exception("processing failed, reference %s", reference)
            self.count_error("internal")
            return [INTERNAL_TEMPFAIL]
        finally:
            self.in_flight -= 1

    async def start(self, spec: SocketSpec, *, mode: int | None = None,
                    group: str | None = None) -> None:
        """Listen on ``spec`` (a unix socket gets ``mode`` and ``group`` when given)."""
        await self.start_on(listening_socket(spec, mode=mode, group=group))

    async def start_on(self, sock: socket.socket) -> None:
        """Serve connections accepted on the listening socket ``sock``."""
        loop = asyncio.get_running_loop()
        if sock.family == socket.AF_UNIX:
            server = await loop.create_unix_server(lambda: MilterConnectionHandler(self),
                                                   sock=sock)
        else:
            server = await loop.create_server(lambda: MilterConnectionHandler(self, tcp=True),
                                              sock=sock)
        self._servers.append(server)

    async def stop(self) -> None:
        """Stop accepting, let messages in flight finish, then close everything."""
        self.stopping = True
        for server in self._servers:
            server.close()
        await drain(lambda: self.busy, self.settings.shutdown_grace)
        for handler in list(self.handlers):
            handler.abort()
        waiting = [*self.tasks, *(handler.wait_closed() for handler in self.handlers)]
        if waiting:
            await asyncio.wait(waiting, timeout=exit_reserve(self.settings.shutdown_grace) / 2)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then :meth:`stop`."""
        await stop.wait()
        await self.stop()


def _give_group(path: Path, group: str) -> None:
    """Give the socket at ``path`` the group ``group``.

    Raises:
        PermissionError: the user is not a member of ``group`` (and not privileged).
    """
    try:
        os.chown(path, -1, _group_id(group))
    except PermissionError as error:
        raise PermissionError(error.errno, f"cannot give the socket the group {group!r}: the "
                                           f"user running mailroute must be a member of it "
                                           f"({error.strerror})") from None


def _group_id(group: str) -> int:
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"no such group {group!r}") from None


def listening_socket(spec: SocketSpec, *, mode: int | None = None,
                     group: str | None = None) -> socket.socket:
    """A listening socket for ``spec``; a unix socket gets ``mode`` and ``group``.

    A unix socket is bound under a temporary name, given its owner and mode, then renamed
    into place: the MTA never sees it with the wrong permissions.
    """
    if spec.family == "inet":
        family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((spec.host, spec.port))
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock
    assert spec.path is not None
    _remove_stale_socket(spec.path)
    temp = spec.path.with_name(f".{spec.path.name}.{os.getpid()}")
    temp.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(temp))
        if group is not None:
            _give_group(temp, group)
        if mode is not None:
            os.chmod(temp, mode)
        sock.listen(LISTEN_BACKLOG)
        temp.rename(spec.path)
    except BaseException:
        sock.close()
        temp.unlink(missing_ok=True)
        raise
    sock.setblocking(False)
    return sock


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by a previous run; refuse to remove anything else, or a socket
    something listens on (another milter: taking its path would cut it off silently).

    Raises:
        OSError: ``EEXIST``, not a socket; ``EADDRINUSE``, a live socket.
    """
    try:
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # nothing listens: left by a run that ended
    except OSError as error:  # a full backlog, a timeout, no permission: perhaps live
        raise OSError(errno.EADDRINUSE, f"{path} is a socket that may be in use "
                                        f"({error.strerror or error})") from None
    else:
        raise OSError(errno.EADDRINUSE, f"another process listens on {path}")
    finally:
        probe.close()
    path.unlink(missing_ok=True)


def socket_file_id(path: Path) -> tuple[int, int, int] | None:
    """The identity of the file at ``path`` (device, inode and change time: a new file may
    get the inode number of one removed just before), ``None`` if there is none."""
    try:
        found = path.lstat()
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_ctime_ns


def remove_socket_file(path: Path, identity: tuple[int, int, int] | None) -> None:
    """Remove the socket file at ``path`` if it is still the one with ``identity`` (a
    milter started on the same path since then has its own, which must stay)."""
    if identity is not None and socket_file_id(path) == identity:
        with contextlib.suppress(OSError):
            path.unlink()


async def serve(pipeline: Pipeline, spec: SocketSpec, *, settings: MilterSettings | None = None,
                mode: int | None = None, group: str | None = None,
                ready: Callable[[], None] | None = None,
                listening: socket.socket | None = None,
                message_log: MessageLog | None = None, metrics: Metrics | None = None,
                reload: Callable[[], Pipeline] | None = None) -> None:
    """Run the milter until SIGTERM or SIGINT; returns after a graceful shutdown.

    With ``listening`` (a socket shared by several worker processes) the socket is used as
    it is and left in place at the end: whoever made it removes it. With ``reload``,
    SIGHUP loads the policy again with it (see :meth:`MilterServer.reload`); one that came
    while SIGHUP was blocked (as ``mailroute milter`` does from its start) is handled once
    the handler is in place.
    """
    pin_mmap_threshold()
    server = MilterServer(pipeline, settings, message_log=message_log, metrics=metrics)
    stop = stop_on_signals()
    if reload is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, server.reload, reload)
        # a SIGHUP held while the process started (see milter_processes) is handled now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    if listening is None:
        await server.start(spec, mode=mode, group=group)
    else:
        await server.start_on(listening)
    own = socket_file_id(spec.path) if spec.path is not None and listening is None else None
    log.info("milter listening on %s", spec)
    if ready is not None:
        ready()
    try:
        await server.serve_until(stop)
    finally:
        if spec.path is not None:
            remove_socket_file(spec.path, own)
