"""A small plain-socket SMTP sink for tests: records every transaction as it was on the wire.

It answers 250 to everything unless told otherwise (``mail_reply`` to MAIL,
``rcpt_replies`` per recipient, ``data_reply`` after the final dot), offers PIPELINING
unless ``pipelining=False``, keeps the raw DATA bytes (still dot-stuffed, CRLF as
sent) and the commands of each session, and binds to 127.0.0.1 on a free port. Start it
with ``with SmtpSink() as sink:``; it stops its threads on exit. ``port`` chooses the port
(a next hop that comes back where it was).
"""

from __future__ import annotations

import contextlib
import io
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Self


@dataclass
class Transaction:
    """One MAIL ... DATA transaction the sink accepted (or saw aborted by RSET)."""

    sender: str
    recipients: list[str] = field(default_factory=list)
    raw: bytes = b""
    completed: bool = False

    @property
    def body(self) -> bytes:
        """The message: DATA un-stuffed, CRLF kept."""
        lines = self.raw.split(b"\r\n")
        return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


class _Server(socketserver.ThreadingTCPServer):
    # a chosen port may have been this server's a moment ago (a test restarts a sink on the
    # port it had)
    allow_reuse_address = True


class Background:
    """A threaded TCP server on 127.0.0.1 (a free port unless ``port`` is given), serving
    while in a ``with`` block."""

    def __init__(self, handler: type[socketserver.BaseRequestHandler], port: int = 0) -> None:
        self._server = _Server(("127.0.0.1", port), handler, bind_and_activate=True)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class SmtpSink(Background):
    """A threaded SMTP sink on 127.0.0.1."""

    def __init__(self, *, rcpt_replies: dict[str, str] | None = None,
                 data_reply: str = "250 2.0.0 queued", port: int = 0,
                 data_delay: float = 0.0, mail_reply: str = "250 2.1.0 ok",
                 pipelining: bool = True, data_command_reply: str = "354 go ahead",
                 smtputf8: bool = False) -> None:
        self.mail_reply = mail_reply
        self.smtputf8 = smtputf8
        self.data_command_reply = data_command_reply
        self.pipelining = pipelining
        self.rcpt_replies = dict(rcpt_replies or {})
        self.data_reply = data_reply
        self.data_delay = data_delay
        self.transactions: list[Transaction] = []
        self.commands: list[str] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30

            def handle(self) -> None:
                with sink._lock:
                    sink._open.add(self.connection)
                try:
                    sink._session(self.rfile, self.wfile)
                finally:
                    with sink._lock:
                        sink._open.discard(self.connection)

        super().__init__(Handler, port)

    def __exit__(self, *exc: object) -> None:
        with self._lock:  # a stopped sink closes its sessions too, as a stopped MTA does
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        super().__exit__(*exc)

    @property
    def delivered(self) -> list[Transaction]:
        """The completed transactions."""
        with self._lock:
            return [t for t in self.transactions if t.completed]

    def bounces(self, to: str, containing: bytes) -> list[Transaction]:
        """The delivered bounces (null sender) to ``to`` whose text holds ``containing``."""
        return [t for t in self.delivered
                if t.sender == "" and t.recipients == [to] and containing in t.body]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Transaction]:
        """Wait until ``count`` transactions completed; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.delivered
            if len(done) >= count:
                return done
            time.sleep(0.05)
        return self.delivered

    def _session(self, reader: io.BufferedIOBase, writer: io.BufferedIOBase) -> None:
        def send(line: str) -> None:
            writer.write(line.encode("ascii") + b"\r\n")
            writer.flush()

        send("220 sink.test ESMTP")
        current: Transaction | None = None
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                command = line.rstrip(b"\r\n").decode("utf-8", "replace")
                verb = command[:4].upper()
                with self._lock:
                    self.commands.append(verb + command[4:])
                if verb in ("EHLO", "HELO"):
                    last = "250 PIPELINING" if self.pipelining else "250 SIZE"
                    utf8 = "250-SMTPUTF8\r\n" if self.smtputf8 else ""
                    send(f"250-sink.test\r\n250-8BITMIME\r\n{utf8}{last}" if verb == "EHLO"
                         else "250 sink.test")
                elif verb == "MAIL":
                    send(self.mail_reply)
                    if not self.mail_reply.startswith("250"):
                        current = None
                        continue
                    current = Transaction(sender=_address(command))
                    with self._lock:
                        self.transactions.append(current)
                elif verb == "RCPT" and current is not None:
                    rcpt = _address(command)
                    reply = self.rcpt_replies.get(rcpt, "250 2.1.5 ok")
                    if reply.startswith("250"):
                        current.recipients.append(rcpt)
                    send(reply)
                elif verb == "DATA" and current is not None:
                    send(self.data_command_reply)
                    if not self.data_command_reply.startswith("354"):
                        continue
                    chunks = []
                    while True:
                        chunk = reader.readline()
                        if not chunk:   # lost before the final dot: discarded, as MTAs do
                            return
                        if chunk == b".\r\n":
                            break
                        chunks.append(chunk)
                    current.raw = b"".join(chunks)
                    if self.data_delay:
                        time.sleep(self.data_delay)
                    if self.data_reply.startswith("250"):
                        current.completed = True
                    send(self.data_reply)
                    current = None
                elif verb in ("RCPT", "DATA"):
                    send("503 5.5.1 need MAIL first")
                elif verb == "RSET":
                    current = None
                    send("250 2.0.0 reset")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    return
                else:
                    send("250 2.0.0 ok")
        except OSError:
            return


def _address(command: str) -> str:
    start, end = command.find("<"), command.find(">")
    return command[start + 1:end] if 0 <= start < end else ""
