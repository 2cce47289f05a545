"""The production marker plugged into the routing simulator gives the simulator's outcomes."""

from __future__ import annotations

import pytest

from mailroute.item import Envelope
from mailroute.results import MarkerVerdict
from mailroute.routing import (
    MessageFacts,
    Origin,
    Simulation,
    Status,
    render_text,
    simulate,
)
from mailroute.routing.markers import RingMarkers, simulation_markers
from mailroute.routing.model import Predicates
from tests.marker.helpers import NOW, OTHER_TAG, TAG, ring
from tests.routing.support import (
    change_rule,
    exo_connection,
    from_exo_headers,
    installed,
    message,
)

CODEC = RingMarkers(ring())
FACTS = MessageFacts(message_id="<m1@Example.NET>", from_addrs=("alice@example.net",))


def summary(sim: Simulation) -> list[tuple[str, str, int, int, bool]]:
    return sorted((o.recipient, str(o.status), o.gateway_passes, o.exo_passes, o.bypass)
                  for o in sim.outcomes)


def test_codec_verdicts() -> None:
    token = CODEC.mint(FACTS, "o", NOW)
    assert CODEC.verify([token], FACTS, NOW + 10).verdict is MarkerVerdict.VALID_FRESH
    assert CODEC.verify([token], FACTS, NOW + 7200).verdict is MarkerVerdict.VALID_STALE
    assert CODEC.verify([], FACTS, NOW).verdict is MarkerVerdict.MISSING
    assert CODEC.verify([token, token], FACTS, NOW).verdict is MarkerVerdict.MALFORMED
    other = MessageFacts(message_id="<m2@example.net>", from_addrs=("alice@example.net",))
    assert CODEC.verify([token], other, NOW).verdict is MarkerVerdict.BAD_MAC
    foreign = RingMarkers(ring(tag=OTHER_TAG)).mint(FACTS, "o", NOW)
    assert CODEC.verify([foreign], FACTS, NOW).verdict is MarkerVerdict.FOREIGN
    assert CODEC.verify([token], FACTS, NOW + 10).age_seconds == 10


@pytest.mark.parametrize("name", ["t1", "t2", "t3"])
@pytest.mark.parametrize(("sender", "rcpts", "origin"), [
    ("alice@example.net", ("x@partner.example",), Origin.MAILBOX),
    ("alice@example.net", ("bob@example.net",), Origin.MAILBOX),
    ("x@partner.example", ("alice@example.net",), Origin.INTERNET),
])
def test_simulation_with_the_real_ring_matches_the_stand_in(name: str, sender: str,
                                                            rcpts: tuple[str, ...],
                                                            origin: Origin) -> None:
    topo, tenant = installed(name)
    assert topo.gateway.marker.tag == TAG
    envelope = Envelope(mail_from=sender, rcpt_to=rcpts)
    facts = message(sender)
    real = simulate(envelope, facts, topo, tenant=tenant, origin=origin, now=NOW,
                    markers=CODEC)
    stand_in = simulate(envelope, facts, topo, tenant=tenant, origin=origin, now=NOW,
                        markers=simulation_markers(TAG, topo.tenant.tenant_id))
    assert summary(real) == summary(stand_in)
    assert not real.loop
    assert not real.bypass


@pytest.mark.parametrize("name", ["t2", "t3"])
def test_real_marker_stops_the_loop_of_a_rule_without_exception(name: str) -> None:
    topo, tenant = installed(name)
    broken = change_rule(tenant, "mailroute 10", exceptions=Predicates())
    sender = "alice@example.net" if name == "t2" else "x@partner.example"
    origin = Origin.MAILBOX if name == "t2" else Origin.INTERNET
    envelope = Envelope(mail_from=sender, rcpt_to=("bob@example.net",))
    real = simulate(envelope, message(sender), topo, tenant=broken, origin=origin, now=NOW,
                    markers=CODEC)
    stand_in = simulate(envelope, message(sender), topo, tenant=broken, origin=origin, now=NOW,
                        markers=simulation_markers(TAG, topo.tenant.tenant_id))
    assert real.loop
    assert summary(real) == summary(stand_in)
    assert {o.status for o in real.outcomes} == {Status.LOOP}
    refused = real.outcome("bob@example.net")
    assert refused.final == "gateway"
    assert refused.reply is not None
    assert (refused.reply.code, refused.reply.status) == (554, "5.4.6")


@pytest.mark.parametrize(("age", "mutate", "status"), [
    (10, False, Status.LOOP),           # valid-fresh from EXO: 554 5.4.6
    (7200, False, Status.DELIVERED),    # valid-stale: processed again
    (10, True, Status.DELIVERED),       # bad-mac: treated as absent
])
def test_gateway_decision_on_a_real_marker_from_exchange(age: int, mutate: bool,
                                                         status: Status) -> None:
    topo, tenant = installed("t2")
    sender = "alice@example.net"
    token = CODEC.mint(message(sender), "o", NOW - age)
    if mutate:
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    facts = message(sender, headers=(("X-Mailroute-Mark", token), *from_exo_headers()))
    sim = simulate(Envelope(mail_from=sender, rcpt_to=("x@partner.example",)), facts, topo,
                   tenant=tenant, origin=Origin.GATEWAY, connection=exo_connection(), now=NOW,
                   markers=CODEC)
    outcome = sim.outcome("x@partner.example")
    assert outcome.status is status
    assert outcome.gateway_passes == 1
    if status is Status.LOOP:
        assert outcome.reply is not None
        assert outcome.reply.status == "5.4.6"
        assert "own fresh marker" in render_text(sim)
    else:
        assert not outcome.marker_at_delivery
