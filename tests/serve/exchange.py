"""A stand-in "Exchange Online" for end-to-end tests of ``mailroute serve``: a small SMTP
server that plays the tenant by calling the routing engine's EXO decision
(:func:`mailroute.routing.decide_exo`) on every message it receives, and acts on it: local
recipients land in mailboxes, connector routes to the gateway are sent to ``serve`` over
SMTP with STARTTLS (presenting EXO's certificate), MX routes land in an "internet" list.

Exchange Online itself cannot run here; this is the mock the tests are allowed. Everything
between the two (marker, policy, TLS, SMTP) is real.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from mailroute.item import Envelope
from mailroute.mime import parse
from mailroute.routing import RouteKind, Topology, decide_exo, deployed, message_facts
from mailroute.routing.exo import egress_message
from mailroute.routing.hop import Connection, Hop, MessageFacts, Source
from tests.smtpclient import smtp_as

GATEWAY_EGRESS_IP = "203.0.113.10"
INTERNET_IP = "198.51.100.7"


@dataclass
class Arrival:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class Outcome:
    mailboxes: dict[str, list[bytes]] = field(default_factory=dict)
    internet: list[Arrival] = field(default_factory=list)
    to_gateway: list[Arrival] = field(default_factory=list)
    from_gateway: list[Arrival] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


class StandInExchange:
    """The tenant of ``topology`` on 127.0.0.1 (``port``: where the gateway delivers)."""

    def __init__(self, topology: Topology, *, server_tls: ssl.SSLContext,
                 client_tls: ssl.SSLContext, gateway_port: int, port: int) -> None:
        self.topology = topology
        self.tenant = deployed(topology)
        self.client_tls = client_tls
        self.gateway_port = gateway_port
        self.port = port
        self.outcome = Outcome()
        self._lock = threading.Lock()
        outer = self

        class Handler:
            def handle_STARTTLS(self, server: Any, session: Any, envelope: Any) -> bool:
                cert = session.ssl.get("peercert") or {}
                session.peer_names = tuple(v for k, v in cert.get("subjectAltName", ())
                                           if k == "DNS")
                return True

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                names = getattr(session, "peer_names", ())
                connection = Connection(source=Source.GATEWAY, client_ip=GATEWAY_EGRESS_IP,
                                        tls=True, peer_cert_names=names)
                with outer._lock:
                    outer.outcome.from_gateway.append(Arrival(
                        envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
                await server.loop.run_in_executor(None, outer.receive, envelope.mail_from,
                                                  list(envelope.rcpt_tos), envelope.content,
                                                  connection)
                return "250 2.6.0 queued by stand-in Exchange"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port,
                                     tls_context=server_tls, require_starttls=True)

    def __enter__(self) -> StandInExchange:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def from_internet(self, sender: str, rcpts: list[str], data: bytes) -> None:
        """A message arriving from the internet at the tenant's MX (EOP)."""
        self.receive(sender, rcpts, data, Connection(source=Source.INTERNET,
                                                     client_ip=INTERNET_IP, tls=False))

    def from_mailbox(self, sender: str, rcpts: list[str], data: bytes) -> None:
        """A message a user sends from their mailbox."""
        self.receive(sender, rcpts, data, Connection(source=Source.MAILBOX))

    def receive(self, sender: str, rcpts: list[str], data: bytes,
                connection: Connection) -> None:
        """One EXO pass: decide, then act on every copy's routes."""
        body = data.partition(b"\r\n\r\n")[2]
        facts = message_facts(parse(data), size=len(data))
        hop = Hop(envelope=Envelope(mail_from=sender, rcpt_to=tuple(rcpts)),
                  connection=connection, message=facts)
        decision = decide_exo(hop, self.tenant)
        for route in decision.rejected:
            self._note(f"rejected {route.recipient}: {route.reply}")
        for copy in decision.copies:
            onward: dict[tuple[str, str | None], list[str]] = {}
            for route in copy.routes:
                if route.kind is RouteKind.LOCAL:
                    with self._lock:
                        self.outcome.mailboxes.setdefault(route.recipient, []).append(
                            _bytes(copy.message, body))
                elif route.kind in (RouteKind.CONNECTOR, RouteKind.MX):
                    onward.setdefault((route.next_hop, route.connector), []).append(
                        route.recipient)
                else:
                    self._note(f"{route.recipient}: {route.kind} {route.reply}")
            for (next_hop, connector), members in onward.items():
                outbound = (self.tenant.outbound_connector(connector) if connector else None)
                out = _bytes(egress_message(self.tenant, copy.message, outbound), body)
                self._send_on(next_hop, sender, members, out)

    def _send_on(self, next_hop: str, sender: str, rcpts: list[str], data: bytes) -> None:
        if next_hop.lower() == self.topology.gateway.hostname.lower():
            with self._lock:
                self.outcome.to_gateway.append(Arrival(sender, rcpts, data))
            with smtp_as(self.topology.gateway.hostname, self.gateway_port,
                         local_hostname="example-net.mail.protection.outlook.com") as smtp:
                smtp.starttls(context=self.client_tls)
                smtp.sendmail(sender, rcpts, data)
            return
        with self._lock:
            self.outcome.internet.append(Arrival(sender, rcpts, data))

    def _note(self, text: str) -> None:
        with self._lock:
            self.outcome.other.append(text)


def _bytes(message: MessageFacts, body: bytes) -> bytes:
    head = b"".join(f"{name}: {value}\r\n".encode() for name, value in message.headers)
    return head + b"\r\n" + body
