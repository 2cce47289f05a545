"""STARTTLS of ``mailroute serve`` with a test CA: offered, required, client certificates
with a name check ("connector by certificate"), and TLS to the next hop with our own
client certificate."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography.x509.oid import ExtendedKeyUsageOID

from mailroute.adapters.serve import NextHop, ServerTLS
from mailroute.pipeline import Pipeline
from tests.mta.common import free_port
from tests.serve.harness import MESSAGE, InProcess, Process
from tests.smime.pki import Identity, issue
from tests.smtpclient import smtp_as
from tests.smtpsink import SmtpSink

SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)
CLIENT = (ExtendedKeyUsageOID.CLIENT_AUTH,)


class Pki:
    def __init__(self, folder: Path) -> None:
        self.ca = issue(folder, "ca", issuer=None, ca=True)
        self.gateway = issue(folder, "gateway", issuer=self.ca, eku=SERVER + CLIENT,
                             dns_names=("mailroute.corp.example",))
        self.exo = issue(folder, "exo", issuer=self.ca, eku=CLIENT + SERVER,
                         dns_names=("corp-example.mail.protection.outlook.com",))
        self.stranger = issue(folder, "stranger", issuer=self.ca, eku=CLIENT,
                              dns_names=("mx.stranger.example",))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("tls"))


def server_context(pki: Pki, identity: Identity, *, client_ca: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.cert_path, identity.key_path)
    if client_ca:
        context.load_verify_locations(cafile=pki.ca.cert_path)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(pki: Pki, identity: Identity | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    if identity is not None:
        context.load_cert_chain(identity.cert_path, identity.key_path)
    return context


def starttls_client(port: int, context: ssl.SSLContext) -> smtplib.SMTP:
    smtp = smtp_as("mailroute.corp.example", port, local_hostname="client.test")
    smtp.ehlo()
    smtp.starttls(context=context)
    smtp.ehlo()
    return smtp


def test_starttls_with_the_configured_certificate_then_delivery(pki: Pki) -> None:
    tls = ServerTLS(server_context(pki, pki.gateway))
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port, tls=tls) as serve:
        with starttls_client(serve.port, client_context(pki)) as smtp:
            assert isinstance(smtp.sock, ssl.SSLSocket)
            cert = smtp.sock.getpeercert()
            assert cert is not None
            assert ("DNS", "mailroute.corp.example") in cert["subjectAltName"]
            assert smtp.sendmail("alice@corp.example", ["bob@partner.example"], MESSAGE) == {}
        assert len(sink.wait_for(1)) == 1


def test_required_tls_refuses_mail_before_starttls(pki: Pki) -> None:
    tls = ServerTLS(server_context(pki, pki.gateway), required=True)
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port, tls=tls) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert smtp.mail("alice@corp.example")[0] == 530


def test_a_client_certificate_with_the_required_name_is_accepted(pki: Pki) -> None:
    tls = ServerTLS(server_context(pki, pki.gateway, client_ca=True), required=True,
                    client_names=("*.mail.protection.outlook.com",))
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port, tls=tls) as serve:
        with starttls_client(serve.port, client_context(pki, pki.exo)) as smtp:
            assert smtp.sendmail("alice@corp.example", ["bob@partner.example"], MESSAGE) == {}
        assert len(sink.wait_for(1)) == 1


def test_a_client_certificate_with_the_wrong_name_is_refused(pki: Pki) -> None:
    tls = ServerTLS(server_context(pki, pki.gateway, client_ca=True), required=True,
                    client_names=("*.mail.protection.outlook.com",))
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port, tls=tls) as serve:
        with starttls_client(serve.port, client_context(pki, pki.stranger)) as smtp:
            code, _text = smtp.mail("alice@corp.example")
        time.sleep(0.2)
        assert sink.commands == []   # the next hop never heard of it
    assert code == 554


def test_the_cli_refuses_a_client_certificate_with_the_wrong_name(
        pki: Pki, tmp_path: Path) -> None:
    policy = tmp_path / "empty.toml"
    policy.write_text("")
    flags = ("--tls-cert", str(pki.gateway.cert_path), "--tls-key", str(pki.gateway.key_path),
             "--client-ca", str(pki.ca.cert_path), "--require-tls",
             "--client-name", "*.mail.protection.outlook.com")
    with SmtpSink() as sink, Process(policy, sink.port, *flags) as serve:
        with starttls_client(serve.port, client_context(pki, pki.stranger)) as smtp:
            assert smtp.mail("alice@corp.example")[0] == 554
        with starttls_client(serve.port, client_context(pki, pki.exo)) as smtp:
            assert smtp.sendmail("alice@corp.example", ["bob@partner.example"], MESSAGE) == {}
        assert len(sink.wait_for(1)) == 1


class TlsNextHop:
    """An aiosmtpd next hop that requires STARTTLS and a client certificate from our CA."""

    def __init__(self, pki: Pki, identity: Identity | None = None) -> None:
        self.messages: list[tuple[bytes, list[str]]] = []
        self.client_names: list[Any] = []
        self.port = free_port()
        outer = self

        class Handler:
            def handle_STARTTLS(self, server: Any, session: Any, envelope: Any) -> bool:
                outer.client_names.append(session.ssl.get("peercert"))
                return True

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                outer.messages.append((envelope.content, list(envelope.rcpt_tos)))
                return "250 2.0.0 stored"

        context = server_context(pki, identity or pki.exo, client_ca=True)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     tls_context=context, require_starttls=True)

    def __enter__(self) -> TlsNextHop:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def test_tls_to_the_next_hop_verifies_its_name_and_presents_our_certificate(pki: Pki) -> None:
    hop_tls = client_context(pki, pki.gateway)
    with TlsNextHop(pki) as hop:
        next_hop = NextHop("127.0.0.1", hop.port, hop_tls,
                           "corp-example.mail.protection.outlook.com")
        with InProcess(Pipeline(), hop.port, next_hop=next_hop) as serve:
            assert serve.send() == {}
    assert len(hop.messages) == 1
    assert b"Hello Bob." in hop.messages[0][0]
    peer = hop.client_names[0]
    assert ("DNS", "mailroute.corp.example") in peer["subjectAltName"]


def test_a_next_hop_with_the_wrong_name_is_never_handed_anything(pki: Pki) -> None:
    hop_tls = client_context(pki, pki.gateway)
    with TlsNextHop(pki) as hop:
        next_hop = NextHop("127.0.0.1", hop.port, hop_tls, "other.mail.protection.outlook.com")
        with InProcess(Pipeline(), hop.port, next_hop=next_hop) as serve, \
                pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            serve.send()
    assert refused.value.recipients["bob@partner.example"][0] == 451
    assert hop.messages == []


def test_next_hop_tls_flags_without_next_hop_tls_are_a_configuration_error(
        tmp_path: Path) -> None:
    policy = tmp_path / "empty.toml"
    policy.write_text("")
    done = subprocess.run([sys.executable, "-m", "mailroute", "serve", "--config", str(policy),
                           "--listen", "127.0.0.1:0", "--next-hop", "127.0.0.1:25",
                           "--next-hop-name", "x.example"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 78
    assert "need --next-hop-tls" in done.stderr


def test_t3_presents_the_inbound_identity_for_internet_mail_and_its_own_for_exchange_mail(
        pki: Pki, tmp_path: Path) -> None:
    """G8 in T3: mail from the internet goes to Exchange as inbound_tls_identity, mail from
    Exchange as tls_identity (two certificates, chosen per message by the decision)."""
    from mailroute.adapters.serve_routes import TopologyRouter
    from mailroute.routing import load_topology

    smart_host = "example-net.mail.protection.outlook.com"
    source = Path(__file__).resolve().parents[2] / "examples" / "topologies" / \
        "t3-beside-mx-gateway.toml"
    topology = tmp_path / "t3.toml"
    topology.write_text(source.read_text().replace(
        "[gateway]\n", '[gateway]\ninbound_tls_identity = "inbound.example.net"\n'
                       'exo_ip_ranges = ["127.0.0.0/8"]\n', 1))
    own = issue(tmp_path, "own", issuer=pki.ca, eku=SERVER + CLIENT,
                dns_names=("mailroute.example.net",))
    inbound = issue(tmp_path, "inbound", issuer=pki.ca, eku=CLIENT,
                    dns_names=("inbound.example.net",))
    exchange = issue(tmp_path, "exchange", issuer=pki.ca, eku=SERVER + CLIENT,
                     dns_names=(smart_host,))
    with TlsNextHop(pki, exchange) as hop:
        router = TopologyRouter(load_topology(topology), resolve_mx=lambda domain: [],
                                overrides={smart_host: ("127.0.0.1", hop.port)},
                                tls=client_context(pki, own),
                                identities={"inbound.example.net": client_context(pki, inbound)})
        tls = ServerTLS(server_context(pki, own, client_ca=True))
        with InProcess(Pipeline(), 0, router=router, tls=tls) as serve:
            assert serve.send(sender="a@partner.example", recipients=["alice@example.net"]) == {}
            smtp = smtp_as("mailroute.example.net", serve.port, local_hostname="exo.test")
            with smtp:
                smtp.ehlo()
                smtp.starttls(context=client_context(pki, pki.exo))
                tenant = load_topology(topology).tenant.tenant_id
                assert smtp.sendmail("alice@example.net", ["dave@partner.example"],
                                     f"X-MS-Exchange-CrossTenant-Id: {tenant}\r\n".encode()
                                     + MESSAGE) == {}
    presented = [[v for k, v in cert["subjectAltName"] if k == "DNS"]
                 for cert in hop.client_names]
    assert presented == [["inbound.example.net"], ["mailroute.example.net"]]
    assert [rcpts for _, rcpts in hop.messages] == [["alice@example.net"],
                                                    ["dave@partner.example"]]
