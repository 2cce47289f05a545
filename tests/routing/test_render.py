"""The text trace an administrator reads."""

from __future__ import annotations

from dataclasses import replace

from mailroute.item import Envelope
from mailroute.routing import Origin, render_text, simulate
from mailroute.routing.model import Actions, SetHeader, TransportRule
from tests.routing.support import NOW, insert_before, installed, message


def test_trace_names_every_hop_rule_connector_and_outcome() -> None:
    topo, tenant = installed("t2")
    sim = simulate(Envelope(mail_from="alice@example.net", rcpt_to=("x@partner.example",)),
                   message(), topo, tenant=tenant, origin=Origin.MAILBOX, now=NOW)
    text = render_text(sim)
    assert text.splitlines()[0] == ("message from <alice@example.net> to x@partner.example "
                                    "(origin: mailbox)")
    assert "#1 EXO pass 1: <alice@example.net> -> x@partner.example" in text
    assert "[mailroute 10 route to gateway]" in text
    assert "#2 gateway pass 1" in text
    assert "G7  outbound processed; marker minted (o)" in text
    assert ("  x@partner.example: delivered at internet:partner.example; gateway x1, EXO x2"
            in text)
    assert text.endswith("verdict: ok\n")


def test_bypass_is_flagged() -> None:
    topo, tenant = installed("t2")
    stop = TransportRule(name="stop everything", stop_rule_processing=True,
                         actions=Actions(set_header=SetHeader(name="X-A", value="1")))
    tenant = insert_before(tenant, "mailroute 10", stop)
    sim = simulate(Envelope(mail_from="alice@example.net", rcpt_to=("bob@example.net",)),
                   message(), topo, tenant=replace(tenant), origin=Origin.MAILBOX, now=NOW)
    text = render_text(sim)
    assert "gateway x0, EXO x1  BYPASS" in text
    assert text.endswith("verdict: BYPASS\n")
