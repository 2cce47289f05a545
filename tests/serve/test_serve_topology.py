"""``mailroute serve --topology``: each recipient goes where the gateway decision that
``mailroute simulate`` prints sends it (the tenant's smart host, or in T1 the recipient's
MX), one transaction per route and direction, the policy run per group.

Mail leaving the organisation is taken only from this tenant's Exchange Online: here a
client on 127.0.0.1 (the topology's Exchange ranges, in a copy) with a certificate named
``*.mail.protection.outlook.com`` from the test CA, whose message carries the tenant id.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailroute.adapters.serve import ServerTLS
from mailroute.adapters.serve_routes import TopologyRouter
from mailroute.errors import TemporaryError
from mailroute.item import Context, Direction, MailItem
from mailroute.pipeline import Pipeline
from mailroute.results import Outcome
from mailroute.routing import load_topology
from tests.serve.harness import InProcess
from tests.serve.test_serve_tls import Pki, client_context, server_context
from tests.smtpclient import smtp_as
from tests.smtpsink import SmtpSink

TOPOLOGIES = Path(__file__).resolve().parents[2] / "examples" / "topologies"
T1 = TOPOLOGIES / "t1-in-front.toml"
T2 = TOPOLOGIES / "t2-beside-mx-eop.toml"
SMART_HOST = "example-net.mail.protection.outlook.com"
MX = {"partner.example": ["mx1.partner.example", "mx2.partner.example"]}
TENANT_ID = load_topology(T1).tenant.tenant_id
FROM_TENANT = f"X-MS-Exchange-CrossTenant-Id: {TENANT_ID}\r\n".encode()
OTHER_TENANT = b"X-MS-Exchange-CrossTenant-Id: 0b7e4c1d-2222-4aaa-8bbb-9c0d1e2f3a4b\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("topology-tls"))


@pytest.fixture(scope="module")
def t1_local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """T1 whose Exchange Online address ranges are this machine's."""
    copy = tmp_path_factory.mktemp("t1") / "t1.toml"
    copy.write_text(T1.read_text().replace(
        "[gateway]\n", '[gateway]\nexo_ip_ranges = ["127.0.0.0/8"]\n', 1))
    return copy


@dataclass(frozen=True)
class StampDirection:
    """Shows which direction each group was processed with."""

    name: str = "stamp"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        direction = item.envelope.direction.value if item.envelope.direction else "-"
        return item.evolve(message=item.message.with_header("X-Direction", direction))


@dataclass(frozen=True)
class RefuseOutbound:
    """Answers the outbound group with ``outcome``; takes the others."""

    outcome: Outcome
    name: str = "refuse-outbound"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        return self.outcome if item.envelope.direction == Direction.OUTBOUND else item


def resolve(domain: str) -> list[str]:
    if domain == "slow.example":
        raise TemporaryError("DNS lookup timed out")
    return MX.get(domain, [])


def simulate(topology: Path, sender: str, rcpts: list[str], origin: str) -> dict[str, str]:
    """What `mailroute simulate --json` prints for the first gateway pass: recipient ->
    next hop (or the refusal)."""
    argv = [sys.executable, "-m", "mailroute", "simulate", "--config", str(topology),
            "--mail-from", sender, "--origin", origin, "--json"]
    for rcpt in rcpts:
        argv += ["--rcpt", rcpt]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    hop = next(h for h in json.loads(done.stdout)["hops"] if h["at"] == "gateway pass 1")
    return {r["recipient"]: r["next_hop"] or r["reply"] for r in hop["recipients"]}


class Bench:
    """serve with a topology; the smart host and the partner's MX are two sinks. With
    ``pki``, serve offers STARTTLS and asks for (but does not require) a client certificate,
    so a client can arrive as Exchange Online (:meth:`exchange_client`)."""

    def __init__(self, topology: Path, exo: SmtpSink, mx: SmtpSink, pki: Pki | None = None,
                 *, outbound: Outcome | None = None,
                 overrides: dict[str, tuple[str, int]] | None = None) -> None:
        routes = {SMART_HOST: ("127.0.0.1", exo.port), "mx1.partner.example": ("127.0.0.1",
                                                                              mx.port)}
        router = TopologyRouter(load_topology(topology), resolve_mx=resolve,
                                overrides={**routes, **(overrides or {})})
        tls = None
        if pki is not None:
            context = server_context(pki, pki.gateway, client_ca=True)
            context.verify_mode = ssl.CERT_OPTIONAL
            tls = ServerTLS(context)
        self.pki = pki
        filters = (StampDirection(),) if outbound is None else (StampDirection(),
                                                                 RefuseOutbound(outbound))
        self.serve = InProcess(Pipeline(filters=filters), 0, router=router, tls=tls)
        self.names = {SMART_HOST: exo, "mx:partner.example": mx}

    def exchange_client(self) -> smtplib.SMTP:
        """A session as Exchange Online: STARTTLS with an ``*.mail.protection.outlook.com``
        certificate (``t1_local`` puts 127.0.0.1 in its ranges)."""
        assert self.pki is not None
        smtp = smtp_as("mailroute.corp.example", self.serve.port, local_hostname="exo.test")
        smtp.ehlo()
        smtp.starttls(context=client_context(self.pki, self.pki.exo))
        smtp.ehlo()
        return smtp

    def where(self, rcpt: str) -> str:
        found = [name for name, sink in self.names.items()
                 if any(rcpt in t.recipients for t in sink.delivered)]
        return found[0] if len(found) == 1 else f"{len(found)} places"


@pytest.mark.parametrize(("topology", "sender", "rcpts", "origin"), [
    (T1, "a@partner.example", ["alice@example.net", "bob@example.net"], "internet"),
    (T2, "a@partner.example", ["alice@example.net"], "internet"),
], ids=["t1-inbound", "t2-inbound"])
def test_serve_sends_each_recipient_where_simulate_says(
        topology: Path, sender: str, rcpts: list[str], origin: str) -> None:
    expected = simulate(topology, sender, rcpts, origin)
    with SmtpSink() as exo, SmtpSink() as mx:
        bench = Bench(topology, exo, mx)
        with bench.serve as serve:
            assert serve.send(sender=sender, recipients=rcpts) == {}   # after the next hops
        assert {r: bench.where(r) for r in rcpts} == expected


def test_outbound_mail_from_exchange_goes_where_simulate_says(pki: Pki, t1_local: Path) -> None:
    rcpts = ["dave@partner.example"]
    expected = simulate(T1, "alice@example.net", rcpts, "mailbox")
    with SmtpSink() as exo, SmtpSink() as mx:
        bench = Bench(t1_local, exo, mx, pki)
        with bench.serve, bench.exchange_client() as smtp:
            assert smtp.sendmail("alice@example.net", rcpts,
                                 FROM_TENANT + b"Subject: out\r\n\r\nhi\r\n") == {}
        assert {r: bench.where(r) for r in rcpts} == expected == {
            "dave@partner.example": "mx:partner.example"}


def test_an_own_domain_sender_from_the_internet_is_no_licence_to_relay(
        pki: Pki, t1_local: Path) -> None:
    """The envelope sender is the client's to choose: ``MAIL FROM:<ceo@example.net>`` from
    anyone but Exchange Online gets no recipient outside the organisation (an open relay
    otherwise), as ``simulate`` refuses it; the same client's mail for the organisation is
    taken."""
    expected = simulate(T1, "ceo@example.net", ["victim@partner.example"], "gateway")
    with SmtpSink() as exo, SmtpSink() as mx:
        with Bench(t1_local, exo, mx, pki).serve as serve, serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("ceo@example.net")
            code, text = smtp.rcpt("victim@partner.example")
            assert f"{code} {text.decode()}" == expected["victim@partner.example"] == (
                "550 5.7.1 mailroute: relay not permitted")
            assert smtp.rcpt("bob@example.net")[0] == 250
            assert smtp.data(b"Subject: spoof\r\n\r\nhi\r\n")[0] == 250
        assert [t.recipients for t in exo.wait_for(1)] == [["bob@example.net"]]
        assert mx.commands == []


def test_exchange_online_of_another_tenant_is_refused_at_the_final_dot(
        pki: Pki, t1_local: Path) -> None:
    """Exchange Online's certificate and address ranges are every tenant's: a connection
    that has them gets its outside recipients at RCPT, but the tenant id read at the final
    dot decides. Another tenant's message (or one without the id) is refused whole and
    nothing reaches the MX; this tenant's goes through."""
    with SmtpSink() as exo, SmtpSink() as mx:
        bench = Bench(t1_local, exo, mx, pki)
        with bench.serve:
            for header in (OTHER_TENANT, b""):
                with bench.exchange_client() as smtp:
                    smtp.mail("someone@foreign.example")
                    assert smtp.rcpt("victim@partner.example")[0] == 250
                    assert smtp.data(header + b"Subject: abuse\r\n\r\nhi\r\n") == (
                        550, b"5.7.1 mailroute: relay not permitted (not this tenant's "
                             b"Exchange Online)")
            assert mx.delivered == []
            with bench.exchange_client() as smtp:
                assert smtp.sendmail("someone@partner.example", ["victim@partner.example"],
                                     FROM_TENANT + b"Subject: forward\r\n\r\nhi\r\n") == {}
        [forwarded] = mx.wait_for(1)
        assert forwarded.recipients == ["victim@partner.example"]
        assert exo.delivered == []


def test_simulate_refuses_another_tenants_relay_as_serve_does() -> None:
    """The simulator's gateway sees the same tenant id and refuses the message whole."""
    from mailroute import Envelope, parse
    from mailroute.marker.keyring import fixed_key_ring
    from mailroute.routing import Connection, Hop, RingMarkers, Source, decide_gateway
    from mailroute.routing import gateway_settings as settings_of
    from mailroute.routing.facts import message_facts

    topology = load_topology(T1)
    data = OTHER_TENANT + b"Subject: abuse\r\n\r\nhi\r\n"
    hop = Hop(envelope=Envelope(mail_from="someone@foreign.example",
                                rcpt_to=("victim@partner.example", "bob@example.net")),
              connection=Connection(source=Source.EXO, client_ip="40.107.22.1", tls=True,
                                    peer_cert_names=("eur05.mail.protection.outlook.com",)),
              message=message_facts(parse(data), size=len(data)))
    ring = fixed_key_ring(topology.gateway.marker.tag, topology.tenant.tenant_id)
    decision = decide_gateway(hop, topology, markers=RingMarkers(
        ring, settings_of(topology).windows), now=1_800_000_000)
    assert decision.splits == ()
    assert {r.recipient: str(r.reply) for r in decision.rejected} == dict.fromkeys(
        ("victim@partner.example", "bob@example.net"),
        "550 5.7.1 mailroute: relay not permitted (not this tenant's Exchange Online)")


def test_relay_from_the_internet_is_refused_as_simulate_refuses_it() -> None:
    expected = simulate(T1, "a@partner.example", ["x@other.example"], "gateway")
    with SmtpSink() as exo, SmtpSink() as mx:
        with Bench(T1, exo, mx).serve as serve, pytest.raises(
                smtplib.SMTPRecipientsRefused) as refused:
            serve.send(sender="a@partner.example", recipients=["x@other.example"])
        assert exo.commands == mx.commands == []
    code, text = refused.value.recipients["x@other.example"]
    assert f"{code} {text.decode()}" == expected["x@other.example"]


def test_internal_and_outbound_recipients_are_two_transactions_each_with_its_direction(
        pki: Pki, t1_local: Path) -> None:
    with SmtpSink() as exo, SmtpSink() as mx:
        bench = Bench(t1_local, exo, mx, pki)
        with bench.serve, bench.exchange_client() as smtp:
            smtp.mail("alice@example.net")
            assert smtp.rcpt("bob@example.net")[0] == 250
            assert smtp.rcpt("dave@partner.example")[0] == 250
            assert smtp.data(FROM_TENANT + b"Subject: both\r\n\r\nhi\r\n") == (
                250, b"2.0.0 Ok: 2 next hops accepted")
        [internal] = exo.wait_for(1)
        [outbound] = mx.wait_for(1)
    assert internal.recipients == ["bob@example.net"]
    assert b"X-Direction: internal\r\n" in internal.body
    assert outbound.recipients == ["dave@partner.example"]
    assert b"X-Direction: outbound\r\n" in outbound.body


BOTH = FROM_TENANT + b"Subject: both\r\n\r\nhi\r\n"


def send_to_both(bench: Bench) -> tuple[int, bytes]:
    """One message from Exchange Online to an internal and an outbound recipient."""
    with bench.exchange_client() as smtp:
        smtp.mail("alice@example.net")
        assert smtp.rcpt("bob@example.net")[0] == 250
        assert smtp.rcpt("dave@partner.example")[0] == 250
        return smtp.data(BOTH)


def test_a_group_handed_on_before_another_failed_is_not_handed_on_again_on_the_retry(
        pki: Pki, t1_local: Path) -> None:
    with SmtpSink() as exo, SmtpSink(data_reply="451 4.3.0 disk full") as mx:
        bench = Bench(t1_local, exo, mx, pki)
        with bench.serve:
            assert send_to_both(bench) == (451, b"4.3.0 disk full")
            assert [t.recipients for t in exo.wait_for(1)] == [["bob@example.net"]]
            mx.data_reply = "250 2.0.0 queued"
            assert send_to_both(bench) == (250, b"2.0.0 Ok: 2 next hops accepted")
            assert [t.recipients for t in mx.wait_for(1)] == [["dave@partner.example"]]
        assert [t.recipients for t in exo.delivered] == [["bob@example.net"]]


@pytest.mark.parametrize("outcome", [Outcome.reject(), Outcome.tempfail()],
                         ids=["reject", "tempfail"])
def test_a_policy_refusing_one_group_hands_on_no_group(pki: Pki, t1_local: Path,
                                                       outcome: Outcome) -> None:
    with SmtpSink() as exo, SmtpSink() as mx:
        bench = Bench(t1_local, exo, mx, pki, outbound=outcome)
        with bench.serve:
            assert send_to_both(bench) == (outcome.reply.code,
                                           f"{outcome.reply.status} {outcome.reply.text}"
                                           .encode())
        assert exo.delivered == mx.delivered == []


def test_an_mx_lookup_timeout_is_451_for_that_recipient_only(pki: Pki, t1_local: Path
                                                             ) -> None:
    with SmtpSink() as exo, SmtpSink() as mx:
        bench = Bench(t1_local, exo, mx, pki)
        with bench.serve, bench.exchange_client() as smtp:
            smtp.mail("alice@example.net")
            assert smtp.rcpt("carol@slow.example") == (
                451, b"4.4.3 DNS lookup of the recipient domain failed, try again later")
            assert smtp.rcpt("dave@partner.example")[0] == 250
            assert smtp.data(FROM_TENANT + b"Subject: one\r\n\r\nhi\r\n")[0] == 250
        assert [t.recipients for t in mx.wait_for(1)] == [["dave@partner.example"]]
        assert exo.delivered == []


def test_the_command_line_topology_mode_with_a_route_override(tmp_path: Path) -> None:
    from tests.serve.harness import MESSAGE, Process

    policy = tmp_path / "empty.toml"
    policy.write_text("")
    with SmtpSink() as exo:
        serve = Process(policy, 0, "--topology", str(T2), "--route",
                        f"{SMART_HOST}=127.0.0.1:{exo.port}")
        serve.argv.remove("--next-hop")
        serve.argv.remove("127.0.0.1:0")
        with serve, smtplib.SMTP("127.0.0.1", serve.port, timeout=30) as smtp:
            assert smtp.sendmail("a@partner.example", ["alice@example.net"], MESSAGE) == {}
        assert [t.recipients for t in exo.delivered] == [["alice@example.net"]]


def test_a_policy_naming_its_topology_routes_by_it_without_topology_flag(
        tmp_path: Path) -> None:
    from tests.serve.harness import MESSAGE, Process

    policy = tmp_path / "policy.toml"
    policy.write_text(f'topology = "{T2}"\n')
    with SmtpSink() as exo:
        serve = Process(policy, 0, "--route", f"{SMART_HOST}=127.0.0.1:{exo.port}")
        serve.argv.remove("--next-hop")
        serve.argv.remove("127.0.0.1:0")
        with serve, smtplib.SMTP("127.0.0.1", serve.port, timeout=30) as smtp:
            assert smtp.sendmail("a@partner.example", ["alice@example.net"], MESSAGE) == {}
        assert [t.recipients for t in exo.delivered] == [["alice@example.net"]]


def test_when_the_first_mx_is_unreachable_the_next_one_gets_the_message(
        pki: Pki, t1_local: Path) -> None:
    from tests.mta.common import free_port

    with SmtpSink() as exo, SmtpSink() as mx2:
        bench = Bench(t1_local, exo, mx2, pki, overrides={
            "mx1.partner.example": ("127.0.0.1", free_port()),   # nobody listens
            "mx2.partner.example": ("127.0.0.1", mx2.port)})
        with bench.serve, bench.exchange_client() as smtp:
            assert smtp.sendmail("alice@example.net", ["dave@partner.example"],
                                 FROM_TENANT + b"Subject: mx2\r\n\r\nhi\r\n") == {}
        assert [t.recipients for t in mx2.delivered] == [["dave@partner.example"]]
