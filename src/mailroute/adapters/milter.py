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
import grp
import logging
import os
import secrets
import socket
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mailroute.adapters.messagelog import MessageLog, record_for
from mailroute.adapters.milter_map import (
    INTERNAL_REPLY,
    INTERNAL_TEMPFAIL,
    MessageFacts,
    result_actions,
)
from mailroute.adapters.service import drain, stop_on_signals
from mailroute.errors import ConfigError
from mailroute.item import Envelope
from mailroute.pipeline import Pipeline
from mailroute.protocols import milter as pm
from mailroute.results import Reply
from mailroute.session import Result

if TYPE_CHECKING:
    from mailroute.adapters.metrics import Metrics

__all__ = ["MilterServer", "MilterSettings", "SocketSpec", "parse_socket", "serve"]

log = logging.getLogger("mailroute.milter")

#: Actions we use; intersected with what the MTA offers.
WANTED_ACTIONS = (pm.ActionFlag.ADDHDRS | pm.ActionFlag.CHGHDRS | pm.ActionFlag.CHGBODY
                  | pm.ActionFlag.QUARANTINE | pm.ActionFlag.SETSYMLIST)
#: Steps that need no reply (we decide at end-of-message), the unknown-command step
#: skipped, and header values with their leading space. MAIL keeps its reply so that a
#: server shutting down can refuse new transactions.
WANTED_PROTOCOL = (pm.ProtocolFlag.NR_CONN | pm.ProtocolFlag.NR_HELO
                   | pm.ProtocolFlag.NR_RCPT | pm.ProtocolFlag.NR_DATA
                   | pm.ProtocolFlag.NR_HDR | pm.ProtocolFlag.NR_EOH
                   | pm.ProtocolFlag.NR_BODY | pm.ProtocolFlag.NR_UNKN
                   | pm.ProtocolFlag.NOUNKNOWN | pm.ProtocolFlag.HDR_LEADSPC)
#: The macros we ask for, per stage (Postfix and Sendmail honour the list).
WANTED_MACROS: tuple[tuple[int, bytes], ...] = (
    (pm.Stage.CONNECT, b"j {daemon_name} {client_addr}"),
    (pm.Stage.HELO, b"{tls_version} {cert_subject} {cert_issuer} {verify}"),
    (pm.Stage.ENVFROM, b"i {auth_authen} {auth_type}"),
    (pm.Stage.EOM, b"i"),
)
SHUTTING_DOWN = pm.ReplyCode(421, "4.3.2", ("mail filter shutting down, try again later",))
TOO_BIG_REPLY = Reply(552, "5.3.4", "message too big")
TOO_BIG = pm.ReplyCode(TOO_BIG_REPLY.code, TOO_BIG_REPLY.status, (TOO_BIG_REPLY.text,))
READ_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class SocketSpec:
    """Where to listen: ``inet:PORT@HOST`` or ``unix:PATH``."""

    family: str
    host: str = ""
    port: int = 0
    path: Path | None = None


def parse_socket(text: str) -> SocketSpec:
    """Parse ``inet:PORT@HOST`` (Sendmail/OpenDKIM form) or ``unix:PATH`` (``local:`` too).

    Raises:
        ValueError: anything else.
    """
    kind, _, rest = text.partition(":")
    if kind in ("unix", "local") and rest:
        return SocketSpec("unix", path=Path(rest))
    if kind == "inet":
        port, _, host = rest.partition("@")
        if port.isdigit() and 0 < int(port) < 65536:
            return SocketSpec("inet", host=host or "127.0.0.1", port=int(port))
    raise ValueError(f"socket must be inet:PORT@HOST or unix:PATH, not {text!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
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
            run is shorter than the hand-off to a worker thread); larger ones in the pool.
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


class _Closed(Exception):
    """The connection is over (EOF, quit, protocol error, timeout)."""


class MilterConnectionHandler:
    """One MTA connection: bytes to events, events to the session, results to actions."""

    def __init__(self, server: MilterServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.conn = pm.MilterConnection(max_packet=server.settings.max_packet)
        self.facts = MessageFacts()
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.size = 0
        self.in_message = False
        self.aborted = False

    async def run(self) -> None:
        """Serve the connection until the MTA quits or something breaks."""
        try:
            while True:
                await self._read()
                await self._drain_events()
        except _Closed:
            pass
        except pm.MilterProtocolError as error:
            log.warning("milter protocol error, closing: %s", error)
            self.server.count_error("protocol")
        except Exception:
            reference = secrets.token_hex(6)
            log.exception("milter connection failed, reference %s", reference)
            self.server.count_error("internal")
            await self._tempfail_owed()
        finally:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def _read(self) -> None:
        settings = self.server.settings
        timeout = settings.content_timeout if self.in_message else settings.idle_timeout
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(READ_SIZE)
        except (TimeoutError, ConnectionError) as error:
            raise _Closed from error
        self.conn.receive_data(data)

    async def _drain_events(self) -> None:
        while True:
            event = self.conn.next_event()
            if isinstance(event, pm.NeedData):
                if self.conn.state is pm.State.CLOSED:
                    raise _Closed
                return
            if isinstance(event, pm.EndOfMessage):
                self._add_body(event.data)
                actions = await self._end_of_message()
            else:
                actions = self._handle(event)
            if actions:
                await self._send(actions)

    async def _send(self, actions: list[pm.Action]) -> None:
        if self.aborted or self.writer.is_closing():
            raise _Closed
        self.writer.write(b"".join(self.conn.send(action) for action in actions))
        try:
            await self.writer.drain()
        except ConnectionError as error:
            raise _Closed from error

    def abort(self) -> None:
        """End the connection now (shutdown): tempfail an owed reply, close the stream."""
        self.aborted = True
        if self.conn.owed is not None and self.conn.state is not pm.State.ERROR:
            with contextlib.suppress(Exception):
                self.writer.write(self.conn.send(INTERNAL_TEMPFAIL))
        self.writer.close()

    async def _tempfail_owed(self) -> None:
        if self.conn.owed is None or self.conn.state is pm.State.ERROR:
            return
        with contextlib.suppress(Exception):
            await self._send([INTERNAL_TEMPFAIL])

    def _handle(self, event: pm.Event) -> list[pm.Action]:
        """The answer to every event but end-of-message."""
        if isinstance(event, pm.OptionNegotiation):
            # An older MTA (milter_protocol = 2..5) gets its own version and no macro lists.
            version = min(event.version, pm.PROTOCOL_VERSION)
            return [pm.NegotiateReply(WANTED_ACTIONS & event.actions,
                                      WANTED_PROTOCOL & event.protocol,
                                      WANTED_MACROS if version >= 6 else (), version)]
        if isinstance(event, pm.Macros):
            if event.stage == pm.Command.MAIL.value:
                self._forget_message_macros()
            self.facts.macros.update(event.values)
            return []
        if isinstance(event, pm.Connect):
            if event.family in (b"4", b"6"):
                self.facts.client_address = event.address.decode("ascii", "replace")
            return self._reply_if_owed()
        if isinstance(event, pm.Helo):
            self.facts.set_helo(event.name)
            return self._reply_if_owed()
        if isinstance(event, pm.MailFrom):
            self._reset_message()
            self.facts.set_sender(event.address)
            if self.server.stopping:
                return [SHUTTING_DOWN]
            self.in_message = True
            return self._reply_if_owed()
        if isinstance(event, pm.RcptTo):
            self.facts.add_recipient(event.address)
        elif isinstance(event, pm.Header):
            self._add_header(event)
        elif isinstance(event, pm.BodyChunk):
            self._add_body(event.data)
        elif isinstance(event, pm.Abort | pm.QuitNewConnection):
            self._reset_message()
            if isinstance(event, pm.QuitNewConnection):
                self.facts = MessageFacts()
        return self._reply_if_owed()

    def _reply_if_owed(self) -> list[pm.Action]:
        return [pm.Continue()] if self.conn.owed is not None else []

    def _forget_message_macros(self) -> None:
        for name in (b"i", b"{auth_authen}", b"{auth_type}"):
            self.facts.macros.pop(name, None)

    def _reset_message(self) -> None:
        self.headers = []
        self.body = bytearray()
        self.size = 0
        self.in_message = False

    def _limit(self) -> int:
        return self.server.pipeline.limits.max_message_size

    def _add_header(self, event: pm.Header) -> None:
        value = event.value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self.size += len(event.name) + len(value) + 3
        if self.size <= self._limit():
            self.headers.append((event.name, value))

    def _add_body(self, data: bytes) -> None:
        self.size += len(data)
        if data and self.size <= self._limit() + 2:
            self.body += data

    def message_bytes(self) -> bytes:
        """The message as the MTA holds it (minus the fields it hides), CRLF line ends."""
        head = b"".join(name + b":" + value + b"\r\n" for name, value in self.headers)
        return head + b"\r\n" + bytes(self.body)

    async def _end_of_message(self) -> list[pm.Action]:
        self.in_message = False
        started = time.monotonic()
        facts = self.facts
        queue_id = facts.queue_id if facts.queue_id != "-" else None
        sasl = facts.macros.get(b"{auth_authen}", b"").decode("utf-8", "replace") or None
        if self.size + 2 > self._limit():
            self._reset_message()
            self.server.record(None, facts.envelope(), b"", queue_id=queue_id, sasl_user=sasl,
                               started=started, reply=TOO_BIG_REPLY)
            return [TOO_BIG]
        data, envelope = self.message_bytes(), facts.envelope()
        self._reset_message()
        hidden = self.server.settings.hidden_above
        server = self.server

        def work() -> list[pm.Action]:
            with server.working():
                result: Result = server.pipeline.process(data, envelope)
                actions = result_actions(result, hidden_above=hidden)
            server.record(result, envelope, data, queue_id=queue_id, sasl_user=sasl,
                          started=started)
            return actions

        if len(data) <= self.server.settings.inline_size:
            try:  # a small message costs less than the hand-off to a thread
                return work()
            except Exception:
                reference = secrets.token_hex(6)
                log.exception("processing failed, reference %s", reference)
                self.server.count_error("internal")
                self.server.record(None, envelope, data, queue_id=queue_id, sasl_user=sasl,
                                   started=started, reply=INTERNAL_REPLY)
                return [INTERNAL_TEMPFAIL]
        actions = await self.server.run_with_progress(work, self)
        if actions == [INTERNAL_TEMPFAIL]:
            self.server.record(None, envelope, data, queue_id=queue_id, sasl_user=sasl,
                               started=started, reply=INTERNAL_REPLY)
        return actions


class MilterServer:
    """The listening milter: one task per connection, a thread pool for the policy."""

    def __init__(self, pipeline: Pipeline, settings: MilterSettings | None = None, *,
                 message_log: MessageLog | None = None, metrics: Metrics | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings or MilterSettings()
        self.message_log = message_log or MessageLog()
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="milter")
        if metrics is not None:  # messages waiting for a worker thread
            metrics.track_size("workers", lambda: max(0, self.in_flight - self.settings.workers))
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.handlers: set[MilterConnectionHandler] = set()
        self.in_flight = 0
        self._servers: list[asyncio.AbstractServer] = []

    def record(self, result: Result | None, envelope: Envelope, data: bytes, *,
               queue_id: str | None, sasl_user: str | None, started: float,
               reply: Reply | None = None) -> None:
        """Write the message's log line (``reply`` when the adapter decided, not the policy)."""
        verdict = None if reply is None else ("reject" if reply.code >= 500 else "tempfail")
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
                    await handler._send([pm.Progress()])
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

    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        handler = MilterConnectionHandler(self, reader, writer)
        self.handlers.add(handler)
        try:
            await handler.run()
        finally:
            self.tasks.discard(task)
            self.handlers.discard(handler)

    async def start(self, spec: SocketSpec, *, mode: int | None = None,
                    group: str | None = None) -> None:
        """Listen on ``spec`` (a unix socket gets ``mode`` and ``group`` when given)."""
        if spec.family == "inet":
            server = await asyncio.start_server(self._on_connection, spec.host, spec.port,
                                                reuse_address=True)
        else:
            assert spec.path is not None
            _remove_stale_socket(spec.path)
            # Bind under a temporary name, set owner and mode, then rename into place: the
            # MTA never sees the socket with the wrong permissions.
            temp = spec.path.with_name(f".{spec.path.name}.{os.getpid()}")
            temp.unlink(missing_ok=True)
            server = await asyncio.start_unix_server(self._on_connection, str(temp))
            if group is not None:
                os.chown(temp, -1, _group_id(group))
            if mode is not None:
                os.chmod(temp, mode)
            temp.rename(spec.path)
        self._servers.append(server)

    async def stop(self) -> None:
        """Stop accepting, let messages in flight finish, then close everything."""
        self.stopping = True
        for server in self._servers:
            server.close()
        await drain(lambda: self.busy, self.settings.shutdown_grace)
        for handler in list(self.handlers):
            handler.abort()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=1.0)
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then :meth:`stop`."""
        await stop.wait()
        await self.stop()


def _group_id(group: str) -> int:
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"no such group {group!r}") from None


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by a previous run; refuse to remove anything else."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"{path} exists and is not a socket")
        path.unlink()


async def serve(pipeline: Pipeline, spec: SocketSpec, *, settings: MilterSettings | None = None,
                mode: int | None = None, group: str | None = None,
                ready: Callable[[], None] | None = None,
                message_log: MessageLog | None = None, metrics: Metrics | None = None) -> None:
    """Run the milter until SIGTERM or SIGINT; returns after a graceful shutdown."""
    server = MilterServer(pipeline, settings, message_log=message_log, metrics=metrics)
    stop = stop_on_signals()
    await server.start(spec, mode=mode, group=group)
    log.info("milter listening on %s", spec)
    if ready is not None:
        ready()
    try:
        await server.serve_until(stop)
    finally:
        if spec.path is not None:
            with contextlib.suppress(OSError):
                spec.path.unlink()
