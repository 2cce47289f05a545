"""An SMTP sink that requires STARTTLS with a client certificate, like Exchange Online's
certificate-identified inbound connector: it records the name in the certificate the client
presented and the messages it accepted."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import cast

from tests.smtpsink import Background


@dataclass
class TlsArrival:
    """One accepted message and the TLS facts of its session."""

    client_names: tuple[str, ...]
    recipients: list[str] = field(default_factory=list)
    data: bytes = b""


class TlsSink(Background):
    """A threaded sink on 127.0.0.1 that refuses MAIL before STARTTLS and STARTTLS without a
    client certificate that ``context`` verifies."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.arrivals: list[TlsArrival] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sink._session(self.request, context)

        super().__init__(Handler)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[TlsArrival]:
        """Wait until ``count`` messages arrived; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.arrivals) < count:
            time.sleep(0.05)
        with self._lock:
            return list(self.arrivals)

    def _session(self, raw: socket.socket, context: ssl.SSLContext) -> None:
        raw.settimeout(30)
        conn: socket.socket = raw
        reader = conn.makefile("rb")
        names: tuple[str, ...] | None = None
        current: TlsArrival | None = None

        def send(line: str) -> None:
            conn.sendall(line.encode("ascii") + b"\r\n")

        try:
            send("220 exo.test ESMTP")
            while line := reader.readline():
                verb = line[:4].upper().decode("ascii", "replace")
                if verb == "EHLO":
                    send("250-exo.test\r\n250-8BITMIME\r\n250 STARTTLS")
                elif verb == "STAR" and names is None:
                    send("220 2.0.0 ready")
                    conn = context.wrap_socket(raw, server_side=True)
                    reader = conn.makefile("rb")
                    cert = conn.getpeercert() or {}
                    # typeshed types every field alike; subjectAltName is (kind, value) pairs
                    alt_names = cast("tuple[tuple[str, str], ...]",
                                     cert.get("subjectAltName", ()))
                    names = tuple(v for kind, v in alt_names if kind == "DNS")
                elif verb == "MAIL":
                    if names is None:
                        send("530 5.7.0 STARTTLS first")
                        continue
                    current = TlsArrival(names)
                    send("250 2.1.0 ok")
                elif verb == "RCPT" and current is not None:
                    current.recipients.append(line.decode().split("<", 1)[1].split(">")[0])
                    send("250 2.1.5 ok")
                elif verb == "DATA" and current is not None:
                    send("354 go ahead")
                    chunks = []
                    while (chunk := reader.readline()) not in (b"", b".\r\n"):
                        chunks.append(chunk)
                    current.data = b"".join(chunks)
                    with self._lock:
                        self.arrivals.append(current)
                    current = None
                    send("250 2.0.0 queued")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    return
                else:
                    send("250 2.0.0 ok")
        except (OSError, ssl.SSLError):
            return
        finally:
            reader.close()
            if conn is not raw:
                conn.close()


def sample_message(subject: str) -> bytes:
    """The message the topology tests send: ``subject`` identifies it at the sink."""
    return (f"From: <alice@example.net>\r\nTo: <max@partner.example>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.net>\r\n\r\nHello through the gateway.\r\n"
            ).encode()


def exchange_recipients(topology: str) -> list[str]:
    """Whom "Exchange Online" sends to in the topology tests: in T1 only the organisation's
    mail comes back to the tenant (external mail goes to its MX)."""
    return ["bob@example.net"] if topology == "t1-in-front" else [
        "bob@example.net", "max@partner.example"]


def processed_recipients(sink: TlsSink, subject: str, gateway: str, log: str = "") -> list[str]:
    """The recipients that reached ``sink`` with ``subject``, every message checked to have
    come with ``gateway``'s client certificate and through mailroute exactly once. (An MTA may
    hand recipients over in one transaction or, by address class, in several.)"""
    wanted = f"Subject: {subject}\r\n".encode()
    found = [a for a in sink.arrivals if wanted in a.data]
    for arrival in found:
        assert arrival.client_names == (gateway,), log
        assert arrival.data.count(b"X-Processed: mailroute") == 1
        assert arrival.data.count(b"X-Mailroute-Mark: v1.") == 1
        assert b"Hello through the gateway." in arrival.data
    return sorted(r for a in found for r in a.recipients)
