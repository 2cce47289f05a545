"""One EXO pass (notes sections 2.1-2.6): attribution, firewall, rules, forks, routing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from mailroute.item import Envelope
from mailroute.routing import (
    Attribution,
    Connection,
    ExoDecision,
    Hop,
    MessageFacts,
    RouteKind,
    Source,
    decide_exo,
)
from mailroute.routing.hop import header_values
from mailroute.routing.model import (
    AcceptedDomain,
    Actions,
    ConnectorType,
    Directory,
    InboundConnector,
    OutboundConnector,
    Predicates,
    Recipient,
    RuleMode,
    SetHeader,
    Tenant,
    TransportRule,
)

MAILBOXES = Directory(recipients=(Recipient(primary="bob@example.net"),
                                  Recipient(primary="eve@example.net")))
ONPREM = InboundConnector(name="onprem", connector_type=ConnectorType.ON_PREMISES,
                          tls_sender_certificate_name="gw.example.net",
                          cloud_services_mail_enabled=True)
BY_IP = InboundConnector(name="by ip", connector_type=ConnectorType.ON_PREMISES,
                         sender_ip_addresses=("203.0.113.0/24",))
TENANT = Tenant(name="example.net", tenant_id="t", initial_domain="ex.onmicrosoft.com",
                accepted_domains=(AcceptedDomain(domain="example.net"),
                                  AcceptedDomain(domain="gw.example.net")),
                directory=MAILBOXES, inbound_connectors=(ONPREM, BY_IP))


def hop(mail_from: str, *rcpts: str, source: Source = Source.INTERNET, ip: str = "198.51.100.9",
        certs: tuple[str, ...] = (), headers: tuple[tuple[str, str], ...] = (),
        tls: bool = True) -> Hop:
    return Hop(envelope=Envelope(mail_from=mail_from, rcpt_to=rcpts),
               connection=Connection(source=source, client_ip=ip, tls=tls,
                                     peer_cert_names=certs),
               message=MessageFacts(headers=headers, message_id="<1@x>"))


def test_certificate_match_attributes_originating_and_allows_relay() -> None:
    d = decide_exo(hop("", "x@partner.example", certs=("gw.example.net",)), TENANT)
    assert d.attribution is Attribution.ORIGINATING
    assert d.connector == "onprem"
    assert d.authenticated
    assert [r.kind for r in d.routes] == [RouteKind.MX]
    assert ("E2", "Originating via OnPremises connector (certificate-attributed)") in [
        (t.step, t.detail) for t in d.trace]


def test_certificate_wildcard_covers_exactly_one_label() -> None:
    wild = replace(ONPREM, tls_sender_certificate_name="*.example.net")
    tenant = replace(TENANT, inbound_connectors=(wild,))
    assert decide_exo(hop("", "bob@example.net", certs=("gw.example.net",)),
                      tenant).connector == "onprem"
    d = decide_exo(hop("", "x@partner.example", certs=("a.gw.example.net",)), tenant)
    assert d.attribution is None
    assert d.rejected[0].reply is not None
    assert d.rejected[0].reply.status == "5.7.1"


def test_ip_only_connector_relays_null_sender_only_when_recipient_local() -> None:
    d = decide_exo(hop("", "x@partner.example", "bob@example.net", ip="203.0.113.7"), TENANT)
    assert {r.recipient: r.kind for r in d.routes} == {
        "bob@example.net": RouteKind.LOCAL, "x@partner.example": RouteKind.REJECT}
    refused = d.rejected[0].reply
    assert refused is not None
    assert refused.status == "5.7.64"


def test_sender_attribution_allows_relay_over_ip_connector() -> None:
    d = decide_exo(hop("alice@example.net", "x@partner.example", ip="203.0.113.7"), TENANT)
    assert d.attribution is Attribution.ORIGINATING
    assert [r.kind for r in d.routes] == [RouteKind.MX]


def test_incoming_refusals_relay_and_dbeb() -> None:
    d = decide_exo(hop("x@partner.example", "y@other.example", "ghost@example.net"), TENANT)
    assert {r.recipient: r.reply.status for r in d.rejected if r.reply} == {
        "y@other.example": "5.7.1", "ghost@example.net": "5.4.1"}


def test_partner_require_tls_refuses_plain_text() -> None:
    partner = InboundConnector(name="partner", sender_ip_addresses=("198.51.100.0/24",))
    tenant = replace(TENANT, inbound_connectors=(partner,))
    d = decide_exo(hop("x@partner.example", "bob@example.net", tls=False), tenant)
    assert d.rejected[0].reply is not None
    assert d.rejected[0].reply.status == "5.7.51"


def _refusal(d: ExoDecision) -> str | None:
    rejected = d.rejected
    return rejected[0].reply.status if rejected and rejected[0].reply else None


def test_a_partner_connector_restricting_by_ip_and_certificate_needs_both() -> None:
    """New-InboundConnector: RestrictDomainsToIPAddresses rejects mail from SenderDomains
    "if the source IP address isn't also specified"; a certificate match does not stand in
    for it (found by the routing audit)."""
    both = InboundConnector(name="partner", sender_domains=("partner.example",),
                            sender_ip_addresses=("198.51.100.0/24",),
                            tls_sender_certificate_name="relay.partner.example",
                            restrict_domains_to_certificate=True,
                            restrict_domains_to_ip_addresses=True)
    tenant = replace(TENANT, inbound_connectors=(both,))
    certs = ("relay.partner.example",)
    assert _refusal(decide_exo(hop("x@partner.example", "bob@example.net", ip="198.51.100.9",
                                   certs=certs), tenant)) is None
    assert _refusal(decide_exo(hop("x@partner.example", "bob@example.net", ip="203.0.113.66",
                                   certs=certs), tenant)) == "5.7.51"
    assert _refusal(decide_exo(hop("x@partner.example", "bob@example.net", ip="198.51.100.9"),
                               tenant)) == "5.7.51"


def test_a_wildcard_sender_domain_covers_the_domain_itself() -> None:
    """New-InboundConnector SenderDomains: ``*.contoso.com`` is "a domain and all
    subdomains" (found by the routing audit: the domain itself was not covered)."""
    lock = InboundConnector(name="partner", sender_domains=("*.partner.example",),
                            tls_sender_certificate_name="relay.partner.example",
                            restrict_domains_to_certificate=True)
    tenant = replace(TENANT, inbound_connectors=(lock,))
    for sender in ("x@partner.example", "x@sub.partner.example"):
        assert _refusal(decide_exo(hop(sender, "bob@example.net"), tenant)) == "5.7.51", sender
    assert _refusal(decide_exo(hop("x@other.example", "bob@example.net"), tenant)) is None


def test_firewall_strips_org_headers_and_promotes_cross_premises_with_csme() -> None:
    headers = (("X-MS-Exchange-Organization-SCL", "-1"),
               ("X-MS-Exchange-CrossPremises-AuthAs", "Internal"))
    d = decide_exo(hop("", "bob@example.net", certs=("gw.example.net",), headers=headers),
                   TENANT)
    out = d.copies[0].message.headers
    assert header_values(out, "X-MS-Exchange-Organization-AuthAs") == ["Internal"]
    assert header_values(out, "X-MS-Exchange-Organization-SCL") == []
    assert header_values(out, "X-MS-Exchange-CrossPremises-AuthAs") == []
    internet = decide_exo(hop("x@partner.example", "bob@example.net", headers=headers), TENANT)
    out = internet.copies[0].message.headers
    assert header_values(out, "X-MS-Exchange-Organization-AuthAs") == ["Anonymous"]
    assert header_values(out, "X-MS-Exchange-Organization-MessageDirectionality") == [
        "Incoming"]
    assert header_values(out, "X-MS-Exchange-Organization-SCL") == []


def test_per_recipient_predicate_forks_and_stop_applies_to_matching_copy_only() -> None:
    tag = TransportRule(name="tag bob", priority=0, stop_rule_processing=True,
                        conditions=Predicates(sent_to=("bob@example.net",)),
                        actions=Actions(set_header=SetHeader(name="X-A", value="1")))
    later = TransportRule(name="later", priority=1,
                          actions=Actions(set_header=SetHeader(name="X-B", value="1")))
    tenant = replace(TENANT, transport_rules=(tag, later))
    d = decide_exo(hop("alice@example.net", "bob@example.net", "eve@example.net",
                       source=Source.MAILBOX), tenant)
    by_rcpt = {c.routes[0].recipient: c for c in d.copies}
    assert by_rcpt["bob@example.net"].rules == ("tag bob",)
    assert by_rcpt["eve@example.net"].rules == ("later",)
    assert header_values(by_rcpt["bob@example.net"].message.headers, "X-B") == []


def test_audit_mode_and_expired_rules_take_no_action() -> None:
    delete = TransportRule(name="delete", priority=0, mode=RuleMode.AUDIT,
                           actions=Actions(delete_message=True))
    old = TransportRule(name="old", priority=1, expiry_date=datetime(2020, 1, 1, tzinfo=UTC),
                        actions=Actions(quarantine=True))
    tenant = replace(TENANT, transport_rules=(delete, old))
    d = decide_exo(hop("alice@example.net", "bob@example.net", source=Source.MAILBOX), tenant,
                   now=datetime(2026, 1, 1, tzinfo=UTC))
    assert [r.kind for r in d.routes] == [RouteKind.LOCAL]
    assert any("would apply" in t.detail for t in d.trace)


def test_second_redirect_is_refused_with_rules_loop() -> None:
    redirect = TransportRule(name="redirect", actions=Actions(
        redirect_message_to=("eve@example.net",)))
    tenant = replace(TENANT, transport_rules=(redirect,))
    first = decide_exo(hop("alice@example.net", "bob@example.net", source=Source.MAILBOX),
                       tenant)
    assert [(r.recipient, r.kind) for r in first.routes] == [("eve@example.net",
                                                              RouteKind.LOCAL)]
    looped = Hop(envelope=Envelope(mail_from="alice@example.net", rcpt_to=("bob@example.net",)),
                 connection=Connection(source=Source.MAILBOX),
                 message=first.copies[0].message)
    again = decide_exo(looped, tenant)
    assert again.routes[0].kind is RouteKind.NDR
    assert again.routes[0].reply is not None
    assert again.routes[0].reply.status == "5.7.128"


def test_connector_selection_exact_beats_wildcard_beats_star() -> None:
    star = OutboundConnector(name="star", recipient_domains=("*",), use_mx_record=False,
                             smart_hosts=("star.example",))
    wild = OutboundConnector(name="wild", recipient_domains=("*.partner.example",),
                             use_mx_record=False, smart_hosts=("wild.example",))
    exact = OutboundConnector(name="exact", recipient_domains=("eu.partner.example",),
                              use_mx_record=False, smart_hosts=("exact.example",))
    scoped = replace(exact, name="scoped", is_transport_rule_scoped=True)
    tenant = replace(TENANT, outbound_connectors=(star, wild, exact, scoped))
    d = decide_exo(hop("alice@example.net", "a@eu.partner.example", "b@us.partner.example",
                       "c@else.example", source=Source.MAILBOX), tenant)
    assert {r.recipient: r.connector for r in d.routes} == {
        "a@eu.partner.example": "exact", "b@us.partner.example": "wild",
        "c@else.example": "star"}
