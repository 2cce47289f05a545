"""The gateway procedure G1-G8 (notes section 2.8) with marker verdicts of section 5.7."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.item import Envelope
from mailroute.results import MarkerVerdict, Reply
from mailroute.routing import (
    Connection,
    Flow,
    Hop,
    MessageFacts,
    MessageFlag,
    RouteKind,
    Source,
    decide_gateway,
)
from mailroute.routing.hop import header_values
from tests.routing.support import (
    NOW,
    codec,
    exo_connection,
    from_exo_headers,
    marker,
    message,
    topology,
)

MARK = "X-Mailroute-Mark"
INTERNET = Connection(source=Source.INTERNET, client_ip="198.51.100.9", tls=True)


def hop(conn: Connection, sender: str, *rcpts: str,
        headers: tuple[tuple[str, str], ...] = (), received: int = 0,
        flags: frozenset[MessageFlag] = frozenset()) -> Hop:
    facts = message(sender, headers=headers, flags=flags).evolve(received_count=received)
    return Hop(envelope=Envelope(mail_from=sender, rcpt_to=rcpts), connection=conn,
               message=facts)


def from_exo(sender: str, *rcpts: str, headers: tuple[tuple[str, str], ...] = ()) -> Hop:
    return hop(exo_connection(), sender, *rcpts, headers=(*headers, *from_exo_headers()))


def test_from_exo_needs_name_range_and_tenant_id() -> None:
    t2 = topology("t2")
    assert decide_gateway(from_exo("a@example.net", "b@example.net"), t2, markers=codec(),
                          now=NOW).from_exo
    no_id = hop(exo_connection(), "a@example.net", "b@example.net")
    other_ip = replace(from_exo("a@example.net", "b@example.net"),
                       connection=replace(exo_connection(), client_ip="198.51.100.9"))
    other_tenant = from_exo("a@example.net", "b@example.net").message.evolve(headers=(
        ("X-MS-Exchange-CrossTenant-Id", "someone-else"),))
    for h in (no_id, other_ip, replace(no_id, message=other_tenant)):
        assert not decide_gateway(h, t2, markers=codec(), now=NOW).from_exo


@pytest.mark.parametrize(("kind", "verdict"), [
    ("valid", MarkerVerdict.VALID_FRESH), ("stale", MarkerVerdict.VALID_STALE),
    ("forged", MarkerVerdict.BAD_MAC), ("foreign", MarkerVerdict.FOREIGN),
    ("replayed", MarkerVerdict.BAD_MAC)])
def test_marker_from_exo(kind: str, verdict: MarkerVerdict) -> None:
    d = decide_gateway(from_exo("alice@example.net", "x@partner.example",
                                headers=((MARK, marker(kind)),)),
                       topology("t2"), markers=codec(), now=NOW)
    assert d.marker.verdict is verdict
    if verdict is MarkerVerdict.VALID_FRESH:
        assert d.splits == ()
        assert d.rejected[0].reply is not None
        assert d.rejected[0].reply.status == "5.4.6"
    else:
        (split,) = d.splits
        (value,) = header_values(split.message.headers, MARK)
        assert value != marker(kind)
        assert codec().verify([value], split.message, NOW).verdict is MarkerVerdict.VALID_FRESH


def test_fresh_marker_from_internet_is_stripped_not_a_loop() -> None:
    d = decide_gateway(hop(INTERNET, "x@partner.example", "bob@example.net",
                           headers=((MARK, marker("valid", "x@partner.example")),)),
                       topology("t3"), markers=codec(), now=NOW)
    assert d.marker.verdict is MarkerVerdict.VALID_FRESH
    assert not d.rejected
    assert d.splits[0].route is RouteKind.EXO


def test_hygiene_removes_bypass_and_ms_headers_from_internet_mail() -> None:
    headers = (("X-Mailroute-Bypass", "oof"), ("X-MS-Exchange-Organization-SCL", "-1"),
               ("X-MS-Exchange-CrossPremises-SCL", "-1"))
    d = decide_gateway(hop(INTERNET, "x@partner.example", "bob@example.net", headers=headers),
                       topology("t3"), markers=codec(), now=NOW)
    out = d.splits[0].message.headers
    for name, _ in headers:
        assert header_values(out, name) == []


def test_loop_guards_received_count_and_processed_cache() -> None:
    t2 = topology("t2")
    busy = hop(exo_connection(), "a@example.net", "b@example.net", received=101)
    d = decide_gateway(busy, t2, markers=codec(), now=NOW)
    assert d.rejected[0].reply is not None
    assert d.rejected[0].reply.status == "5.4.6"
    store = InMemoryProcessedStore()
    first = decide_gateway(from_exo("alice@example.net", "bob@example.net"), t2,
                           markers=codec(), now=NOW, processed=store)
    assert first.record is not None
    assert first.splits
    store.record(first.record.key, NOW, first.record.ttl, fingerprint=first.record.fingerprint)
    lapped = from_exo("alice@example.net", "bob@example.net")
    lapped = replace(lapped, message=lapped.message.evolve(received_count=2))
    second = decide_gateway(lapped, t2, markers=codec(), now=NOW, processed=store)
    assert second.splits == ()
    assert second.record is None
    assert second.rejected[0].reply is not None
    assert second.rejected[0].reply.status == "5.4.6"
    retry = decide_gateway(from_exo("alice@example.net", "bob@example.net"), t2,
                           markers=codec(), now=NOW, processed=store)
    assert retry.splits  # the same arrival handed over again is a retry, not a loop


def test_directions_split_with_one_marker_each() -> None:
    d = decide_gateway(from_exo("alice@example.net", "bob@example.net", "x@partner.example"),
                       topology("t2"), markers=codec(), now=NOW)
    assert {s.flow: s.recipients for s in d.splits} == {
        Flow.INTERNAL: ("bob@example.net",), Flow.OUTBOUND: ("x@partner.example",)}
    tokens = [header_values(s.message.headers, MARK) for s in d.splits]
    assert all(len(t) == 1 for t in tokens)
    assert tokens[0] != tokens[1]


def test_relay_from_internet_refused_and_dsn_never_refused_by_policy() -> None:
    t1 = topology("t1")
    d = decide_gateway(hop(INTERNET, "x@partner.example", "y@other.example"), t1,
                       markers=codec(), now=NOW)
    assert d.rejected[0].reply is not None
    assert d.rejected[0].reply.status == "5.7.1"

    def refuse(flow: Flow, recipients: tuple[str, ...], message: MessageFacts) -> Reply | None:
        return Reply(550, "5.7.1", "no")
    bounce = hop(INTERNET, "", "bob@example.net", flags=frozenset({MessageFlag.DSN}))
    assert decide_gateway(bounce, t1, markers=codec(), now=NOW, policy=refuse).splits
    normal = hop(INTERNET, "x@partner.example", "bob@example.net")
    assert not decide_gateway(normal, t1, markers=codec(), now=NOW, policy=refuse).splits


def test_next_hop_per_topology() -> None:
    out_t1 = decide_gateway(from_exo("alice@example.net", "x@partner.example",
                                     headers=((MARK, marker("stale")),)),
                            topology("t1"), markers=codec(), now=NOW)
    (split,) = out_t1.splits
    assert (split.route, split.next_hop, split.client_identity) == (
        RouteKind.MX, "mx:partner.example", None)
    assert header_values(split.message.headers, MARK) == []
    t3 = topology("t3")
    split_id = replace(t3, gateway=replace(t3.gateway,
                                           inbound_tls_identity="mailroute-in.example.net"))
    inbound = decide_gateway(hop(INTERNET, "x@partner.example", "bob@example.net"), split_id,
                             markers=codec(), now=NOW)
    assert inbound.splits[0].client_identity == "mailroute-in.example.net"
    returned = decide_gateway(from_exo("alice@example.net", "bob@example.net"), split_id,
                              markers=codec(), now=NOW)
    assert returned.splits[0].client_identity == "mailroute.example.net"
    assert returned.splits[0].next_hop == "example-net.mail.protection.outlook.com"
