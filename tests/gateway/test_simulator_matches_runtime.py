"""What ``mailroute simulate`` predicts for the gateway is what the gateway's filters do.

The same arrivals (the same bytes, envelope and connection) go through the simulator's
gateway step (:func:`mailroute.routing.decide_gateway`) and through a real pipeline of
``marker-verify`` and ``marker-set`` configured from the same topology
(:func:`mailroute.routing.gateway_settings`), with the same key ring and clock. For every
topology (T1, T2, T3), source (internet, Exchange Online), flow (inbound, outbound, internal)
and marker (none, our fresh one, our stale one, a forged one, another deployment's) the two
must agree on: the source, the marker verdict, refusal and reply, the header fields removed,
and that what leaves carries exactly one valid marker. A second arrival of a message that was
sent on must be a loop in both.

Mail leaving the organisation that does not come from Exchange Online (outbound from the
internet, and relayed mail, outside to outside) is left out: the simulated service refuses
it (G5), while a pipeline leaves relay control to the MTA in front of it. Those refusals have
their own test below.
"""

from __future__ import annotations

import itertools

import pytest

from mailroute import Action, Context, Envelope, Pipeline, parse
from mailroute.filters.marker import MarkerSetFilter, MarkerVerifyFilter
from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.item import Direction
from mailroute.marker import check_message, mark
from mailroute.marker.keyring import KeyRing, fixed_key_ring
from mailroute.pipeline import Condition, Conditional
from mailroute.results import MarkerVerdict
from mailroute.routing import (
    Connection,
    GatewayDecision,
    Hop,
    RingMarkers,
    RouteKind,
    Source,
    Topology,
    TopologyKind,
    decide_gateway,
    gateway_settings,
    load_topology,
)
from mailroute.routing.facts import message_facts
from tests.routing.support import EXAMPLES, FILES

NOW = 1_800_000_000
EXO_NAME = "eur05.mail.protection.outlook.com"
EXO_IP = "40.107.22.1"
INTERNET_NAME = "mx.partner.example"
INTERNET_IP = "198.51.100.7"
FLOWS = {"inbound": ("x@partner.example", "bob@example.net"),
         "outbound": ("alice@example.net", "x@partner.example"),
         "internal": ("alice@example.net", "bob@example.net")}
SOURCES = ("internet", "exo")
MARKERS = ("none", "fresh", "stale", "forged", "foreign")
HYGIENE = ("X-Mailroute-Bypass", "X-MS-Exchange-Organization-SCL",
           "X-MS-Exchange-CrossTenant-Id")


def _topology(name: str) -> Topology:
    return load_topology(EXAMPLES / FILES[name])


def _ring(topology: Topology, tag: str | None = None) -> KeyRing:
    return fixed_key_ring(tag or topology.gateway.marker.tag, topology.tenant.tenant_id)


def _message(topology: Topology, sender: str, recipient: str, source: str,
             marker: str) -> bytes:
    fields = [f"From: {sender}", f"To: {recipient}", "Subject: compare",
              "Message-ID: <cmp.1@example.net>", "Received: from a by b",
              "X-Mailroute-Bypass: 1", "X-MS-Exchange-Organization-SCL: -1"]
    if source == "exo":
        fields.append(f"X-MS-Exchange-CrossTenant-Id: {topology.tenant.tenant_id}")
    raw = ("\r\n".join(fields) + "\r\n\r\nbody\r\n").encode()
    if marker == "none":
        return raw
    ring = _ring(topology, "abcdef" if marker == "foreign" else None)
    issued = NOW - 7200 if marker == "stale" else NOW - 30
    marked, token = mark(parse(raw), ring, now=issued, direction=Direction.OUTBOUND)
    data = marked.to_bytes()
    if marker == "forged":
        mac = token.mac
        data = data.replace(mac.encode(), (mac[:-1] + ("A" if mac[-1] != "A" else "B")).encode())
    return data


def _envelope(sender: str, recipient: str, source: str) -> Envelope:
    name, ip = (EXO_NAME, EXO_IP) if source == "exo" else (INTERNET_NAME, INTERNET_IP)
    return Envelope(mail_from=sender, rcpt_to=(recipient,), tls_peer_name=name,
                    client_address=ip)


def _hop(data: bytes, envelope: Envelope, source: str) -> Hop:
    assert envelope.tls_peer_name is not None
    connection = Connection(source=Source.EXO if source == "exo" else Source.INTERNET,
                            client_ip=envelope.client_address, tls=True,
                            peer_cert_names=(envelope.tls_peer_name,))
    facts = message_facts(parse(data), size=len(data))
    return Hop(envelope=envelope, connection=connection, message=facts)


def _pipeline(topology: Topology, store: InMemoryProcessedStore) -> Pipeline:
    """The runtime gateway a topology implies: verify first, mark last.

    In front (T1) the gateway sends outbound mail to the internet without a marker.
    """
    ring = _ring(topology)
    mint = MarkerSetFilter(ring=ring, processed_ttl=gateway_settings(topology).processed_ttl)
    last = mint if topology.gateway.topology is not TopologyKind.T1 else Conditional(
        mint, Condition(directions=frozenset({Direction.INBOUND, Direction.INTERNAL})))
    return Pipeline(filters=(MarkerVerifyFilter(ring=ring, settings=gateway_settings(topology)),
                             last),
                    internal_domains=frozenset(topology.org_domains),
                    context=Context(clock=lambda: NOW, processed=store))


def _simulated(topology: Topology, hop: Hop, store: InMemoryProcessedStore) -> GatewayDecision:
    ring = _ring(topology)
    decision = decide_gateway(hop, topology, markers=RingMarkers(
        ring, gateway_settings(topology).windows), now=NOW, processed=store)
    if decision.record is not None:
        store.record(decision.record.key, NOW, decision.record.ttl,
                     fingerprint=decision.record.fingerprint)
    return decision


def _removed(before: bytes, after: bytes | None) -> set[str]:
    """The hygiene fields present before and missing after."""
    if after is None:
        return set()
    kept = {f.lower_name for f in parse(after).headers}
    present = {f.lower_name for f in parse(before).headers}
    return {name.lower() for name in HYGIENE if name.lower() in present - kept}


CASES = [case for case in itertools.product(("t1", "t2", "t3"), SOURCES, FLOWS, MARKERS)
         if case[1:3] != ("internet", "outbound")]


@pytest.mark.parametrize(("name", "source", "flow", "marker"), CASES)
def test_simulator_and_runtime_agree_on_one_arrival(name: str, source: str, flow: str,
                                                    marker: str) -> None:
    topology = _topology(name)
    sender, recipient = FLOWS[flow]
    data = _message(topology, sender, recipient, source, marker)
    envelope = _envelope(sender, recipient, source)
    simulated = _simulated(topology, _hop(data, envelope, source), InMemoryProcessedStore())
    result = _pipeline(topology, InMemoryProcessedStore()).process(data, envelope)

    refused = bool(simulated.rejected) and not simulated.splits
    assert (result.action is Action.REJECT) is refused
    if refused:
        assert result.smtp_reply == simulated.rejected[0].reply
        return
    assert result.item is not None
    assert result.item.annotation("marker.source") == simulated.arrival.source.value
    assert result.item.annotation("marker.verdict") == simulated.marker.verdict.value
    removed_sim = {n.lower() for n in simulated.arrival.remove_fields} | {
        n.lower() for n in HYGIENE if n.lower().startswith(simulated.arrival.remove_prefixes)}
    present = {f.lower_name for f in parse(data).headers}
    assert _removed(data, result.data) == removed_sim & present & {n.lower() for n in HYGIENE}

    ring = _ring(topology)
    settings = gateway_settings(topology)
    minted = [s for s in simulated.splits if s.route is RouteKind.EXO]
    assert result.data is not None
    out = parse(result.data)
    if minted:
        assert out.headers.count(settings.marker_field) == 1
        check = check_message(out, ring, now=NOW, windows=settings.windows,
                              field_name=settings.marker_field)
        assert check.verdict is MarkerVerdict.VALID_FRESH
    else:
        assert out.headers.count(settings.marker_field) == 0


@pytest.mark.parametrize(("name", "flow"), list(itertools.product(("t1", "t2", "t3"), FLOWS)))
def test_a_second_arrival_of_a_processed_message_is_a_loop_in_both(name: str,
                                                                  flow: str) -> None:
    topology = _topology(name)
    sender, recipient = FLOWS[flow]
    sim_store, run_store = InMemoryProcessedStore(), InMemoryProcessedStore()
    pipeline = _pipeline(topology, run_store)
    first = _message(topology, sender, recipient, "exo", "none")
    envelope = _envelope(sender, recipient, "exo")
    simulated = _simulated(topology, _hop(first, envelope, "exo"), sim_store)
    result = pipeline.process(first, envelope)
    assert result.action is Action.ACCEPT
    assert simulated.splits
    # Back from Exchange Online without its marker, one Received field more and the tenant
    # id that Exchange Online stamps again (the first pass removed it): a lap.
    assert result.data is not None
    lapped = parse(result.data).without_header("X-Mailroute-Mark").with_header(
        "Received", "from gw by exo").with_header(
        "X-MS-Exchange-CrossTenant-Id", topology.tenant.tenant_id).to_bytes()
    again_sim = _simulated(topology, _hop(lapped, envelope, "exo"), sim_store)
    again_run = pipeline.process(lapped, envelope)
    was_minted = simulated.record is not None
    assert (again_run.action is Action.REJECT) is was_minted
    assert (bool(again_sim.rejected) and not again_sim.splits) is was_minted
    if was_minted:
        assert again_sim.rejected[0].reply == again_run.smtp_reply
        assert again_run.smtp_reply.status == "5.4.6"
