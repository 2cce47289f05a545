"""The own-domain spoof step: one decision for the dkim-verify filter and the simulator."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mailroute import Action, Envelope, MailItem, Outcome, parse
from mailroute.dkim.dmarc import DmarcResult
from mailroute.filters.dkim import DkimVerifyFilter
from mailroute.gateway.spoof import SPOOF_REPLY, SpoofAction, SpoofFacts, SpoofPolicy, decide_spoof
from mailroute.routing import Connection, Hop, RouteKind, Source, decide_gateway
from mailroute.routing.hop import MessageFlag
from tests.routing.support import NOW, codec, exo_connection, from_exo_headers, message, topology

ORG = ("example.net",)
INTERNET = Connection(source=Source.INTERNET, client_ip="198.51.100.9", tls=True)


@pytest.mark.parametrize(("facts", "policy", "expected"), [
    (SpoofFacts(from_domain="example.net", from_internet=True, aligned=False),
     SpoofPolicy.REJECT, SpoofAction.REJECT),
    (SpoofFacts(from_domain="sub.example.net", from_internet=True, aligned=False),
     SpoofPolicy.REJECT, SpoofAction.REJECT),
    (SpoofFacts(from_domain="example.net", from_internet=True, aligned=True),
     SpoofPolicy.REJECT, SpoofAction.PASS),
    (SpoofFacts(from_domain="example.net", from_internet=False, aligned=False),
     SpoofPolicy.REJECT, SpoofAction.PASS),
    (SpoofFacts(from_domain="partner.example", from_internet=True, aligned=False),
     SpoofPolicy.REJECT, SpoofAction.PASS),
    (SpoofFacts(from_domain="example.net", from_internet=True, aligned=False,
                dns_trouble=True), SpoofPolicy.REJECT, SpoofAction.TEMPFAIL),
    (SpoofFacts(from_domain="example.net", from_internet=True, aligned=False),
     SpoofPolicy.QUARANTINE, SpoofAction.QUARANTINE),
    (SpoofFacts(from_domain="example.net", from_internet=True, aligned=False),
     SpoofPolicy.OFF, SpoofAction.PASS),
])
def test_decide_spoof(facts: SpoofFacts, policy: SpoofPolicy, expected: SpoofAction) -> None:
    action, reply = decide_spoof(facts, ORG, policy)
    assert action is expected
    assert (reply == SPOOF_REPLY) is (expected is SpoofAction.REJECT)


def test_requires_policy_refuses_only_enforced_domains() -> None:
    weak = SpoofFacts(from_domain="example.net", from_internet=True, aligned=False,
                      enforced=False)
    assert decide_spoof(weak, ORG, SpoofPolicy.REJECT, requires_policy=True)[0] is (
        SpoofAction.PASS)
    strict = replace(weak, enforced=True)
    assert decide_spoof(strict, ORG, SpoofPolicy.REJECT, requires_policy=True)[0] is (
        SpoofAction.REJECT)


def _simulated(aligned: bool, *, from_exchange: bool) -> tuple[str, str | None]:
    t3 = topology("t3")
    t3 = replace(t3, gateway=replace(t3.gateway, on_spoof=SpoofPolicy.REJECT))
    flags = frozenset({MessageFlag.DMARC_ALIGNED}) if aligned else frozenset()
    facts = message("alice@example.net", flags=flags,
                    headers=from_exo_headers() if from_exchange else ())
    hop = Hop(envelope=Envelope(mail_from="alice@example.net", rcpt_to=("bob@example.net",)),
              connection=exo_connection() if from_exchange else INTERNET, message=facts)
    decision = decide_gateway(hop, t3, markers=codec(), now=NOW)
    if decision.splits:
        return "accept", None
    assert decision.rejected[0].kind is RouteKind.REJECT
    reply = decision.rejected[0].reply
    return "reject", reply.status if reply else None


def _runtime(aligned: bool, *, from_exchange: bool) -> tuple[str, str | None]:
    step = DkimVerifyFilter(lookup=lambda name: (), accepted_domains=ORG)
    item = MailItem(envelope=Envelope(mail_from="alice@example.net", rcpt_to=["bob@example.net"]),
                    message=parse(b"From: alice@example.net\r\n\r\nx\r\n"))
    if from_exchange:
        item = item.annotate("marker.source", "return-path")
    verdict = DmarcResult("pass" if aligned else "fail", "example.net", policy="reject",
                          aligned=aligned)
    result = step.judge_spoof(item, verdict)
    if isinstance(result, Outcome):
        assert result.action is Action.REJECT
        return "reject", result.reply.status
    return "accept", None


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("from_exchange", [True, False])
def test_the_simulator_predicts_what_the_filter_does(aligned: bool, from_exchange: bool) -> None:
    simulated = _simulated(aligned, from_exchange=from_exchange)
    assert simulated == _runtime(aligned, from_exchange=from_exchange)
    assert (simulated[0] == "reject") is (not aligned and not from_exchange)
