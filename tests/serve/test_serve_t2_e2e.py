"""T2 end to end on loopback: a stand-in Exchange Online (the routing engine's EXO decision
behind a real SMTP server, tests/serve/exchange.py) and ``mailroute serve`` in topology mode
with a real marker policy and TLS both ways. Inbound, outbound and internal mail each pass
the gateway once and arrive with the one marker the gateway minted, valid when Exchange
received it and consumed by Exchange's rule before delivery, as the topology configures."""

from __future__ import annotations

import base64
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroute.adapters.serve import ServerTLS
from mailroute.adapters.serve_routes import TopologyRouter
from mailroute.marker import load_key_ring
from mailroute.marker.verify import check_message
from mailroute.mime import parse
from mailroute.policy import load_policy
from mailroute.routing import load_topology
from tests.mta.common import free_port
from tests.serve.exchange import StandInExchange
from tests.serve.harness import InProcess
from tests.serve.test_serve_tls import CLIENT, SERVER, Pki, client_context, server_context
from tests.smime.pki import issue

T2 = Path(__file__).resolve().parents[2] / "examples" / "topologies" / "t2-beside-mx-eop.toml"
SMART_HOST = "example-net.mail.protection.outlook.com"
FIELD = "X-Mailroute-Mark"


class World:
    def __init__(self, exchange: StandInExchange, keys: Path) -> None:
        self.exchange = exchange
        self.ring = load_key_ring(keys)

    def wait(self, predicate: object, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(predicate) and predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; stand-in saw {self.exchange.outcome}")

    def verdict(self, data: bytes) -> str:
        return str(check_message(parse(data), self.ring, now=time.time()).verdict)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("t2")
    pki = Pki(folder)
    gateway = issue(folder, "t2-gateway", issuer=pki.ca, eku=SERVER + CLIENT,
                    dns_names=("mailroute.example.net",))
    exo = issue(folder, "t2-exo", issuer=pki.ca, eku=SERVER + CLIENT, dns_names=(SMART_HOST,))
    # The stand-in Exchange connects from 127.0.0.1: that is "Exchange's address range" here.
    topology_file = folder / "t2.toml"
    topology_file.write_text(T2.read_text().replace(
        '[gateway]\n', '[gateway]\nexo_ip_ranges = ["127.0.0.0/8"]\n', 1))
    topology = load_topology(topology_file)
    keys = folder / "marker-keys.toml"
    secret = base64.b64encode(os.urandom(32)).decode()
    keys.write_text(f'tag = "g7k2qd"\norg_id = "example.net"\n\n[[key]]\nid = "k1"\n'
                    f'secret = "{secret}"\n')
    keys.chmod(0o600)
    policy = folder / "policy.toml"
    policy.write_text(f'''
[[pipeline]]
filter = "marker-verify"
key_file = "{keys}"
source = "auto"
tenant_id = "{topology.tenant.tenant_id}"
return_path_networks = ["127.0.0.0/8"]
loop_window = 3600
on_invalid = "strip"

[[pipeline]]
filter = "marker-set"
key_file = "{keys}"
''')
    exchange_port = free_port()
    to_exchange = client_context(pki, gateway)      # we present mailroute.example.net
    router = TopologyRouter(topology, resolve_mx=lambda domain: [],
                            overrides={SMART_HOST: ("127.0.0.1", exchange_port)},
                            tls=to_exchange)
    tls = ServerTLS(server_context(pki, gateway, client_ca=True), required=True,
                    client_names=("*.mail.protection.outlook.com",))
    with InProcess(load_policy(policy), 0, router=router, tls=tls) as serve:
        exo_server = server_context(pki, exo, client_ca=True)
        exo_client: ssl.SSLContext = client_context(pki, exo)
        with StandInExchange(topology, server_tls=exo_server, client_tls=exo_client,
                             gateway_port=serve.port, port=exchange_port) as exchange:
            yield World(exchange, keys)
            serve.stop_service()   # before the stand-in: its pooled connections close first


def message(subject: str, sender: str, to: str) -> bytes:
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@t2.test>\r\n\r\nHello.\r\n").encode()


def passes(world: World, subject: str) -> tuple[list[bytes], list[bytes]]:
    """What the stand-in sent to the gateway and got back from it, for ``subject``."""
    out = world.exchange.outcome
    token = f"Subject: {subject}".encode()
    return ([a.data for a in out.to_gateway if token in a.data],
            [a.data for a in out.from_gateway if token in a.data])


@pytest.mark.parametrize(("subject", "sender", "rcpt", "origin"), [
    ("t2-inbound", "carol@partner.example", "alice@example.net", "internet"),
    ("t2-internal", "alice@example.net", "bob@example.net", "mailbox"),
    ("t2-outbound", "alice@example.net", "dave@partner.example", "mailbox"),
])
def test_each_direction_passes_the_gateway_once_and_arrives_with_its_marker_consumed(
        world: World, subject: str, sender: str, rcpt: str, origin: str) -> None:
    data = message(subject, sender, rcpt)
    exchange = world.exchange
    if origin == "internet":
        exchange.from_internet(sender, [rcpt], data)
    else:
        exchange.from_mailbox(sender, [rcpt], data)
    out = exchange.outcome
    if rcpt.endswith("@example.net"):
        world.wait(lambda: out.mailboxes.get(rcpt))
        [final] = [m for m in out.mailboxes[rcpt] if f"Subject: {subject}".encode() in m]
    else:
        world.wait(lambda: [a for a in out.internet if a.recipients == [rcpt]])
        [final] = [a.data for a in out.internet
                   if f"Subject: {subject}".encode() in a.data]
    sent, returned = passes(world, subject)
    assert len(sent) == 1, out              # through the gateway exactly once
    assert len(returned) == 1
    assert FIELD.encode() not in sent[0]
    assert returned[0].count(f"{FIELD}:".encode()) == 1
    assert world.verdict(returned[0]) == "valid-fresh"
    assert f"{FIELD}:".encode() not in final   # consumed by "mailroute 11 consume marker"
    assert b"Hello." in final
    assert out.other == []                     # no rejection, NDR or drop anywhere
