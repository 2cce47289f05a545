"""``mailroute serve --topology``: each recipient goes where the gateway decision that
``mailroute simulate`` prints sends it (the tenant's smart host, or in T1 the recipient's
MX), one transaction per route and direction, the policy run per group."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailroute.adapters.serve_routes import TopologyRouter
from mailroute.errors import TemporaryError
from mailroute.item import Context, MailItem
from mailroute.pipeline import Pipeline
from mailroute.results import Outcome
from mailroute.routing import load_topology
from tests.serve.harness import InProcess
from tests.smtpsink import SmtpSink

TOPOLOGIES = Path(__file__).resolve().parents[2] / "examples" / "topologies"
T1 = TOPOLOGIES / "t1-in-front.toml"
T2 = TOPOLOGIES / "t2-beside-mx-eop.toml"
SMART_HOST = "example-net.mail.protection.outlook.com"
MX = {"partner.example": ["mx1.partner.example", "mx2.partner.example"]}


@dataclass(frozen=True)
class StampDirection:
    """Shows which direction each group was processed with."""

    name: str = "stamp"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        direction = item.envelope.direction.value if item.envelope.direction else "-"
        return item.evolve(message=item.message.with_header("X-Direction", direction))


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
    """serve with a topology; the smart host and the partner's MX are two sinks."""

    def __init__(self, topology: Path, exo: SmtpSink, mx: SmtpSink) -> None:
        router = TopologyRouter(load_topology(topology), resolve_mx=resolve, overrides={
            SMART_HOST: ("127.0.0.1", exo.port), "mx1.partner.example": ("127.0.0.1", mx.port)})
        self.serve = InProcess(Pipeline(filters=(StampDirection(),)), 0, router=router)
        self.names = {SMART_HOST: exo, "mx:partner.example": mx}

    def where(self, rcpt: str) -> str:
        found = [name for name, sink in self.names.items()
                 if any(rcpt in t.recipients for t in sink.delivered)]
        return found[0] if len(found) == 1 else f"{len(found)} places"


@pytest.mark.parametrize(("topology", "sender", "rcpts", "origin"), [
    (T1, "a@partner.example", ["alice@example.net", "bob@example.net"], "internet"),
    (T1, "alice@example.net", ["dave@partner.example"], "mailbox"),
    (T2, "a@partner.example", ["alice@example.net"], "internet"),
], ids=["t1-inbound", "t1-outbound", "t2-inbound"])
def test_serve_sends_each_recipient_where_simulate_says(
        topology: Path, sender: str, rcpts: list[str], origin: str) -> None:
    expected = simulate(topology, sender, rcpts, origin)
    with SmtpSink() as exo, SmtpSink() as mx:
        bench = Bench(topology, exo, mx)
        with bench.serve as serve:
            assert serve.send(sender=sender, recipients=rcpts) == {}   # after the next hops
        assert {r: bench.where(r) for r in rcpts} == expected


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
        ) -> None:
    with SmtpSink() as exo, SmtpSink() as mx:
        with Bench(T1, exo, mx).serve as serve, serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("alice@example.net")
            assert smtp.rcpt("bob@example.net")[0] == 250
            assert smtp.rcpt("dave@partner.example")[0] == 250
            assert smtp.data(b"Subject: both\r\n\r\nhi\r\n") == (
                250, b"2.0.0 Ok: 2 next hops accepted")
        [internal] = exo.wait_for(1)
        [outbound] = mx.wait_for(1)
    assert internal.recipients == ["bob@example.net"]
    assert b"X-Direction: internal\r\n" in internal.body
    assert outbound.recipients == ["dave@partner.example"]
    assert b"X-Direction: outbound\r\n" in outbound.body


def test_an_mx_lookup_timeout_is_451_for_that_recipient_only() -> None:
    with SmtpSink() as exo, SmtpSink() as mx:
        with Bench(T1, exo, mx).serve as serve, serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("alice@example.net")
            assert smtp.rcpt("carol@slow.example") == (
                451, b"4.4.3 DNS lookup of the recipient domain failed, try again later")
            assert smtp.rcpt("dave@partner.example")[0] == 250
            assert smtp.data(b"Subject: one\r\n\r\nhi\r\n")[0] == 250
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


def test_when_the_first_mx_is_unreachable_the_next_one_gets_the_message() -> None:
    from tests.serve.harness import free_port

    with SmtpSink() as exo, SmtpSink() as mx2:
        router = TopologyRouter(load_topology(T1), resolve_mx=resolve, overrides={
            SMART_HOST: ("127.0.0.1", exo.port),
            "mx1.partner.example": ("127.0.0.1", free_port()),   # nobody listens
            "mx2.partner.example": ("127.0.0.1", mx2.port)})
        with InProcess(Pipeline(), 0, router=router) as serve:
            assert serve.send(sender="alice@example.net",
                              recipients=["dave@partner.example"]) == {}
        assert [t.recipients for t in mx2.delivered] == [["dave@partner.example"]]
