"""Scenario facts: every statement issue 18 listed as "cannot be stated", now stated.

Each test states one fact (docs/routing/scenario.md) and derives the expected per-recipient
outcome, NDR code and pass counts in its docstring, step by step from the procedure the
simulator implements (docs/routing/steps.md: E = Exchange Online, R = rules, X = routing,
G = gateway, S = service). "gw/exo" counts are node visits on the recipient's journey.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailroute.cli import main
from mailroute.errors import ConfigError
from mailroute.gateway.flow import Flow
from mailroute.gateway.spoof import SpoofPolicy
from mailroute.item import Envelope
from mailroute.routing import (
    Origin,
    Simulation,
    Status,
    Tenant,
    Topology,
    deployed,
    lint,
    simulate,
)
from mailroute.routing.hop import MessageFlag
from mailroute.routing.model import (
    Actions,
    DisclaimerFallback,
    ExoDisclaimer,
    HeaderPatterns,
    MessageType,
    Predicates,
    Recipient,
    RecipientKind,
    RejectAction,
    Scope,
    SetHeader,
    TransportRule,
)
from mailroute.routing.scenario import Delay, DeliveryFailure, GatewayAction, Scenario
from mailroute.routing.scenario_load import load_scenario
from mailroute.routing.topology import Placement
from tests.routing.support import NOW, change_rule, installed, message, topology

SCENARIOS = Path(__file__).parent / "scenarios"
A, B, X, Y = "alice@example.net", "bob@example.net", "x@partner.example", "y@other.example"


def _sim(topo: Topology, tenant: Tenant, sender: str, rcpts: tuple[str, ...], origin: Origin,
         scenario: Scenario | None = None, flags: frozenset[MessageFlag] = frozenset(),
         ) -> Simulation:
    return simulate(Envelope(mail_from=sender, rcpt_to=rcpts), message(sender, flags=flags),
                    topo, tenant=tenant, origin=origin, now=NOW, scenario=scenario)


def _counts(sim: Simulation, rcpt: str, kind: str = "message") -> tuple[object, ...]:
    o = sim.outcome(rcpt if kind == "message" else f"{kind}:{rcpt}", kind)
    return (o.status, o.final, o.gateway_passes, o.exo_passes,
            o.reply.status if o.reply else None)


# --- recipient delivery failures --------------------------------------------------------------

def test_a_full_mailbox_gets_an_ndr_that_itself_passes_the_gateway() -> None:
    """T2, x@partner.example (internet) -> bob, whose mailbox is full (552 5.2.2).

    bob: EXO pass 1 (E3 Incoming; R rule 10 routes to the gateway) -> gateway pass 1
    (inbound, marker) -> EXO pass 2 (rule 10 excepted by the marker, rule 11 consumes it;
    X bob's mailbox, delivery fails): NDR 5.2.2, gw 1, exo 2.
    The NDR (null sender, to x@partner.example) is a new submission: EXO pass 1 routes it
    (rule 10 has no exception for reports) -> gateway pass 1 (G4: never refused) -> EXO
    pass 2 relays it to partner.example's MX: delivered, gw 1, exo 2, no BYPASS.
    """
    topo, tenant = installed("t2")
    scenario = Scenario(delivery_failures=(DeliveryFailure(address=B,
                                                           reply="552 5.2.2 Mailbox full"),))
    sim = _sim(topo, tenant, X, (B,), Origin.INTERNET, scenario)
    assert _counts(sim, B) == (Status.NDR, "exo", 1, 2, "5.2.2")
    assert _counts(sim, X, "ndr") == (Status.DELIVERED, "internet:partner.example", 1, 2, None)
    assert not sim.bypass
    # The same message without the fact is delivered: the fact made the difference.
    assert _sim(topo, tenant, X, (B,), Origin.INTERNET).outcome(B).status is Status.DELIVERED


def test_one_failing_recipient_of_a_group_ndrs_the_others_are_delivered() -> None:
    """T2, alice -> sales@example.net (DistributionGroup: alice, bob, dave@partner.example,
    and ghost@example.net, an address no directory object has).

    RES expands the group; rule 10 routes all four to the gateway (gw pass 1, internal for
    the example.net members, outbound for dave) -> EXO pass 2: alice delivered; bob's
    mailbox is over quota (554 5.2.2 from the scenario): NDR; ghost is in the Authoritative
    domain but unknown after expansion: X NDR 5.1.10 (RecipientNotFound); dave relayed.
    Each has gw 1, exo 2. EXO writes one NDR to alice for the copy (first failure, 5.2.2)
    and it passes the gateway like any message: delivered to alice's mailbox, gw 1, exo 2.
    """
    topo, tenant = installed("t2")
    group = tenant.directory.lookup("sales@example.net")
    assert group is not None
    members = (*group.members, "ghost@example.net")
    recipients = tuple(replace(r, members=members) if r is group else r
                       for r in tenant.directory.recipients)
    tenant = replace(tenant, directory=replace(tenant.directory, recipients=recipients))
    scenario = Scenario(delivery_failures=(DeliveryFailure(
        address=B, reply="554 5.2.2 mailbox over quota"),))
    sim = _sim(topo, tenant, A, ("sales@example.net",), Origin.MAILBOX, scenario)
    ends = {o.address: (o.status, o.gateway_passes, o.exo_passes,
                        o.reply.status if o.reply else None)
            for o in sim.outcomes if o.kind == "message"}
    assert ends == {A: (Status.DELIVERED, 1, 2, None), B: (Status.NDR, 1, 2, "5.2.2"),
                    "ghost@example.net": (Status.NDR, 1, 2, "5.1.10"),
                    "dave@partner.example": (Status.DELIVERED, 1, 2, None)}
    assert _counts(sim, A, "ndr") == (Status.DELIVERED, f"mailbox:{A}", 1, 2, None)


# --- the gateway's verdict per recipient -------------------------------------------------------

def test_encrypt_or_reject_refuses_one_recipient_the_other_is_sent() -> None:
    """T2, alice -> x@partner.example and y@other.example; the gateway's policy encrypts
    for y and has no certificate for x ("encrypt or reject": 550 5.7.1 for x).

    EXO pass 1: rule 10 routes both -> gateway pass 1: G6 refuses x in the session (x:
    REJECTED 5.7.1, gw 1, exo 1), y is encrypted (flag set) and marked -> EXO pass 2 sends y
    to other.example's MX (gw 1, exo 2, arrives encrypted). The refusal makes EXO write an
    NDR to alice: EXO pass 1 routes it to the gateway (G4: a bounce is never refused) ->
    EXO pass 2 delivers it to alice's mailbox (gw 1, exo 2).
    """
    topo, tenant = installed("t2")
    scenario = Scenario(gateway_actions=(
        GatewayAction(recipients=(X,), reject="550 5.7.1 encrypt or reject: no certificate"),
        GatewayAction(recipients=(Y,), flows=(Flow.OUTBOUND,),
                      set_flags=(MessageFlag.ENCRYPTED,))))
    sim = _sim(topo, tenant, A, (X, Y), Origin.MAILBOX, scenario)
    assert _counts(sim, X) == (Status.REJECTED, "gateway", 1, 1, "5.7.1")
    assert _counts(sim, Y) == (Status.DELIVERED, "internet:other.example", 1, 2, None)
    assert MessageFlag.ENCRYPTED in sim.outcome(Y).flags
    assert _counts(sim, A, "ndr") == (Status.DELIVERED, f"mailbox:{A}", 1, 2, None)


# --- gateway transforms: what Exchange's later rules see ---------------------------------------

def _with_disclaimer(tenant: Tenant, fallback: DisclaimerFallback) -> Tenant:
    """The tenant's own disclaimer rule for external recipients, below the mailroute block.
    It carries no marker exception, so it runs on the return pass (after the gateway)."""
    rule = TransportRule(
        name="Disclaimer for external mail",
        conditions=Predicates(sent_to_scope=Scope.NOT_IN_ORGANIZATION),
        actions=Actions(apply_html_disclaimer=ExoDisclaimer(text="<p>Confidential</p>",
                                                            fallback_action=fallback)))
    return replace(tenant, transport_rules=(*tenant.rules_by_priority, rule))


@pytest.mark.parametrize(("fallback", "status", "reply", "disclaimers"), [
    (DisclaimerFallback.REJECT, Status.NDR, "5.7.1", 0),
    (DisclaimerFallback.WRAP, Status.DELIVERED, None, 1),
    (DisclaimerFallback.IGNORE, Status.DELIVERED, None, 0),
])
def test_a_message_the_gateway_signed_meets_the_disclaimer_fallback(
        fallback: DisclaimerFallback, status: Status, reply: str | None,
        disclaimers: int) -> None:
    """T2, alice -> x@partner.example; the gateway S/MIME-signs outbound mail (flag signed).

    EXO pass 1: rule 10 routes and stops, the disclaimer rule is not reached -> gateway
    pass 1 signs and marks -> EXO pass 2: rule 10 excepted, rule 11 consumes the marker, the
    disclaimer rule matches x (SentToScope NotInOrganization on an authenticated, Originating
    return pass) but the body is signed: its fallback decides. Reject: NDR 5.7.1 for x (gw 1,
    exo 2; the refused message is still signed). Wrap: a new message carrying the signed
    original, the disclaimer on the wrapper, delivered (gw 1, exo 2, no longer flagged
    signed). Ignore: delivered signed, without the disclaimer. Unsigned, the disclaimer is
    simply appended (the control below).
    """
    topo, tenant = installed("t2")
    tenant = _with_disclaimer(tenant, fallback)
    signs = Scenario(gateway_actions=(GatewayAction(flows=(Flow.OUTBOUND,),
                                                    set_flags=(MessageFlag.SIGNED,)),))
    sim = _sim(topo, tenant, A, (X,), Origin.MAILBOX, signs)
    end = sim.outcome(X)
    assert (end.status, end.gateway_passes, end.exo_passes) == (status, 1, 2)
    assert (end.reply.status if end.reply else None) == reply
    assert end.disclaimers == disclaimers
    assert (MessageFlag.SIGNED in end.flags) is (fallback is not DisclaimerFallback.WRAP)
    plain = _sim(topo, tenant, A, (X,), Origin.MAILBOX).outcome(X)
    assert (plain.status, plain.disclaimers) == (Status.DELIVERED, 1)


def test_a_gateway_that_decrypts_inbound_mail_changes_what_a_rule_on_encrypted_sees() -> None:
    """T2, x@partner.example -> bob, an encrypted message; the tenant rejects encrypted
    inbound mail it cannot scan (MessageTypeMatches Encrypted -> reject 5.7.1), placed below
    the mailroute block so it judges the message as the gateway returns it.

    Without a gateway change: EXO pass 1 routes it (rule 10 stops) -> gateway pass 1 -> EXO
    pass 2: the reject rule matches the still encrypted message: NDR 5.7.1 (gw 1, exo 2).
    The gateway decrypts inbound mail (clears ``encrypted``): on EXO pass 2 the rule does not
    match and bob gets it (gw 1, exo 2).
    """
    topo, tenant = installed("t2")
    rule = TransportRule(name="Reject unscannable", conditions=Predicates(
        message_type_matches=MessageType.ENCRYPTED), actions=Actions(reject=RejectAction()))
    tenant = replace(tenant, transport_rules=(*tenant.rules_by_priority, rule))
    encrypted = frozenset({MessageFlag.ENCRYPTED})
    kept = _sim(topo, tenant, X, (B,), Origin.INTERNET, flags=encrypted)
    assert _counts(kept, B) == (Status.NDR, "exo", 1, 2, "5.7.1")
    decrypts = Scenario(gateway_actions=(GatewayAction(flows=(Flow.INBOUND,),
                                                       clear_flags=(MessageFlag.ENCRYPTED,)),))
    sim = _sim(topo, tenant, X, (B,), Origin.INTERNET, decrypts, flags=encrypted)
    assert _counts(sim, B) == (Status.DELIVERED, f"mailbox:{B}", 1, 2, None)


# --- a further service with its own connector and rule ------------------------------------------

def _signature() -> tuple[Topology, Tenant, Scenario]:
    loaded = load_scenario(SCENARIOS / "signature.toml")
    return loaded.topology, loaded.tenant, loaded.scenario


def test_a_signature_service_before_the_gateway_is_passed_once_each() -> None:
    """T2 + signature service (tests/routing/scenarios/signature.toml), alice -> bob, x.

    EXO pass 1: the tenant's rule (above the mailroute block, placement bottom) routes
    internal senders' mail to 'Signature service' and stops -> S: the service sets
    X-Sig-Processed and returns it as smtp.sig.example -> EXO pass 2 (E2 Originating via 'From
    signature service', sender-attributed): the signature rule is excepted by the header,
    rule 10 routes to the gateway -> gateway pass 1 (internal for bob, outbound for x) ->
    EXO pass 3: both excepted, rule 11 consumes the marker; bob delivered, x relayed.
    Each: services 1, gw 1, exo 3, no loop, no BYPASS.
    """
    topo, tenant, scenario = _signature()
    codes = {f.code: f.severity for f in lint(topo, tenant)}
    assert codes["L-SERVICE-BEFORE-GATEWAY"] == "W"  # the vendor's order: a warning only
    assert "L-SHADOWED-ROUTE" not in codes
    sim = _sim(topo, tenant, A, (B, X), Origin.MAILBOX, scenario)
    for rcpt, final in ((B, f"mailbox:{B}"), (X, "internet:partner.example")):
        end = sim.outcome(rcpt)
        assert (end.status, end.final, end.service_passes, end.gateway_passes,
                end.exo_passes) == (Status.DELIVERED, final, 1, 1, 3)
    assert not sim.loop
    assert not sim.bypass


def test_a_signature_rule_after_the_marker_is_consumed_loops() -> None:
    """The same tenant with the mailroute block on top (the note's misconfiguration: another
    vendor's routing rule after rule 11; lint L-FOREIGN-ROUTE-AFTER-CONSUME).

    EXO pass 1: rule 10 routes and stops -> gateway pass 1 (marker) -> EXO pass 2: rule 10
    excepted, rule 11 consumes the marker, the signature rule routes to the service -> S
    (header set) -> EXO pass 3: no marker any more, rule 10 routes again -> gateway pass 2:
    the processed-message guard has seen this Message-ID, recipient and direction: 554
    5.4.6, LOOP with gw 2, exo 3, services 1.
    """
    topo, tenant, scenario = _signature()
    topo = replace(topo, exo_config=replace(topo.exo_config, placement=Placement.TOP))
    tenant = deployed(topo)
    assert "L-FOREIGN-ROUTE-AFTER-CONSUME" in {f.code for f in lint(topo, tenant)}
    sim = _sim(topo, tenant, A, (B,), Origin.MAILBOX, scenario)
    end = sim.outcome(B)
    assert (end.status, end.service_passes, end.gateway_passes, end.exo_passes) == (
        Status.LOOP, 1, 2, 3)
    assert end.reply is not None
    assert end.reply.status == "5.4.6"


def test_cli_simulate_scenario_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", str(SCENARIOS / "signature.toml")]) == 0
    out = capsys.readouterr().out
    assert "service signature pass 1" in out
    assert "gateway x1, EXO x3, services x1" in out


# --- a delayed hop ------------------------------------------------------------------------------

def _broken_exception(tenant: Tenant) -> Tenant:
    return change_rule(tenant, "mailroute 10", exceptions=Predicates(
        header_matches=HeaderPatterns(header="X-Mailroute-Mark", patterns=("v1\\.abcdef\\.",))))


def test_a_gateway_outage_delays_loop_detection_by_one_lap() -> None:
    """T2 whose rule 10 exception names another deployment's tag (rules as they are, so
    every return is routed again); alice -> bob.

    No delay: EXO pass 1 -> gateway pass 1 (t0, marker minted, processed record) -> EXO
    pass 2 routes again -> gateway pass 2: processed guard (record from t0, TTL 3600 s):
    554 5.4.6, LOOP gw 2, exo 2.
    Gateway outage: Exchange's queue reaches the gateway again only 2 h later (delay before
    the gateway's 2nd visit). The record of t0 has expired and the marker is stale (older
    than the 3600 s loop window): the gateway processes it once more and re-mints (pass 2)
    -> EXO pass 3 routes again -> gateway pass 3 (same t0 + 2 h): the fresh record of pass 2
    refuses: LOOP gw 3, exo 3. Staleness only delays detection (docs/marker.md).
    """
    topo, tenant = installed("t2")
    tenant = _broken_exception(tenant)
    quick = _sim(topo, tenant, A, (B,), Origin.MAILBOX)
    assert _counts(quick, B) == (Status.LOOP, "gateway", 2, 2, "5.4.6")
    outage = Scenario(delays=(Delay(at="gateway", visit=2, seconds=7200),))
    late = _sim(topo, tenant, A, (B,), Origin.MAILBOX, outage)
    assert _counts(late, B) == (Status.LOOP, "gateway", 3, 3, "5.4.6")


def test_a_delay_past_a_rules_expiry_date_changes_the_rule_pass() -> None:
    """T2 with a tenant rule "Out of office notice" (set header X-Notice) that expires at
    t0 + 1 h, below the mailroute block; x@partner.example -> bob.

    EXO pass 1 at t0: rule 10 routes (stop). Gateway pass 1. EXO pass 2: at t0 the rule is
    active and sets X-Notice; with a 2 h delay before EXO's 2nd visit (the return queued)
    it has expired and does not. Both: delivered, gw 1, exo 2.
    """
    topo, tenant = installed("t2")
    expiry = datetime.fromtimestamp(NOW + 3600, UTC)
    rule = TransportRule(name="Out of office notice", expiry_date=expiry,
                         actions=Actions(set_header=SetHeader(name="X-Notice", value="yes")))
    tenant = replace(tenant, transport_rules=(*tenant.rules_by_priority, rule))
    now = _sim(topo, tenant, X, (B,), Origin.INTERNET)
    late = _sim(topo, tenant, X, (B,), Origin.INTERNET,
                Scenario(delays=(Delay(at="exo", visit=2, seconds=7200),)))
    assert _counts(now, B)[:4] == _counts(late, B)[:4] == (
        Status.DELIVERED, f"mailbox:{B}", 1, 2)
    assert "Out of office notice" in now.steps[-1].rules
    assert "Out of office notice" not in late.steps[-1].rules


# --- several tenants on one EOP and one shared gateway ------------------------------------------

def _shared() -> tuple[Topology, Tenant, Scenario]:
    loaded = load_scenario(SCENARIOS / "shared-gateway.toml")
    return loaded.topology, loaded.tenant, loaded.scenario


def test_two_tenants_behind_one_shared_gateway_deliver_to_each_other() -> None:
    """Tenants a.example and b.example, both T1 behind filter.cloud.example (shared, egress
    198.51.100.77), correctly configured (Partner lock-down connectors by certificate).
    alice@a.example (mailbox) -> bob@b.example.

    EXO pass 1 (a): bob is external, the T1 '*' connector sends to the gateway -> gateway
    pass 1 (a's settings, outbound): G8 recipient MX, which is the same service (b's MX)
    -> gateway pass 2 (b's settings, inbound from the internet): marker, to b's smart host
    -> EOP: no OnPremises connector of any tenant claims the connection, b.example decides
    -> EXO pass 2 (b): bob's mailbox. Delivered, gw 2, exo 2.
    """
    topo, tenant, scenario = _shared()
    fixed = Scenario(tenants=scenario.tenants)
    tenant = replace(tenant, inbound_connectors=tuple(
        c for c in tenant.inbound_connectors if c.name != "Filter service (by IP)"))
    sim = _sim(topo, tenant, "alice@a.example", ("bob@b.example",), Origin.MAILBOX, fixed)
    assert _counts(sim, "bob@b.example") == (Status.DELIVERED, "mailbox:bob@b.example", 2, 2,
                                             None)
    assert [s.at for s in sim.steps] == [
        "EXO pass 1 (a.example)", "gateway pass 1 (a.example)", "gateway pass 2 (b.example)",
        "EXO pass 2 (b.example)"]


def test_an_ip_identified_onpremises_connector_on_a_shared_gateway_claims_and_loops() -> None:
    """The same two tenants, but a.example also has an OnPremises inbound connector for the
    shared service's IP (the note's misconfiguration d; lint L-ONPREM-BY-SHARED-IP).

    As above up to gateway pass 2 (b, inbound, processed record for bob). At EOP, a's
    OnPremises connector matches the IP and a.example (P1 alice@a.example) is accepted
    there: tenant a claims the message (Originating) -> EXO pass 2 (a): bob external, '*'
    connector -> gateway pass 3 (a, outbound, MX) -> gateway pass 4 (b, inbound): the
    processed guard has seen it: 554 5.4.6. LOOP, gw 4, exo 2.
    """
    topo, tenant, scenario = _shared()
    assert "L-ONPREM-BY-SHARED-IP" in {f.code for f in lint(topo, tenant)}
    sim = _sim(topo, tenant, "alice@a.example", ("bob@b.example",), Origin.MAILBOX, scenario)
    assert _counts(sim, "bob@b.example") == (Status.LOOP, "gateway", 4, 2, "5.4.6")
    assert sim.steps[3].at == "EXO pass 2 (a.example)"


# --- rules taken as they are ---------------------------------------------------------------

def test_hand_edited_mailroute_rules_are_simulated_as_they_are() -> None:
    """T2 whose 'mailroute 11 consume marker' was moved above rule 10 by hand; alice -> bob.

    As it is: EXO pass 1 routes (no marker yet) -> gateway pass 1 -> EXO pass 2: rule 11
    removes the marker before rule 10 reads it, rule 10 routes again -> gateway pass 2:
    processed guard, 554 5.4.6 (LOOP gw 2, exo 2). Regenerated from the same file (the plan
    replaces every 'mailroute ' rule): delivered, gw 1, exo 2.
    """
    topo, tenant = installed("t2")
    rules = list(tenant.rules_by_priority)
    consume = next(r for r in rules if r.name.startswith("mailroute 11"))
    rules.remove(consume)
    rules.insert(0, consume)
    edited = replace(tenant, transport_rules=tuple(replace(r, priority=i)
                                                   for i, r in enumerate(rules)))
    as_is = replace(topo, tenant=edited)
    sim = _sim(as_is, as_is.tenant, A, (B,), Origin.MAILBOX)
    assert _counts(sim, B) == (Status.LOOP, "gateway", 2, 2, "5.4.6")
    again = _sim(as_is, deployed(as_is), A, (B,), Origin.MAILBOX)
    assert _counts(again, B) == (Status.DELIVERED, f"mailbox:{B}", 1, 2, None)


# --- the scenario file ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "key"), [
    ('topology = "t2-signature.toml"\n[[delivery_failures]]\naddress = "nobody@example.net"\n',
     "delivery_failures[0].address"),
    ('topology = "t2-signature.toml"\n[[delivery_failures]]\naddress = "bob@example.net"\n'
     'reply = "mailbox full"\n', "delivery_failures[0]"),
    ('topology = "t2-signature.toml"\n[[gateway_actions]]\nreject = "550 5.7.1 no"\n'
     'set_flags = ["signed"]\n', "gateway_actions[0]"),
    ('topology = "t2-signature.toml"\n[[delays]]\nat = "mars"\nseconds = 1\n', "delays[0]"),
    ('topology = "t2-signature.toml"\nweather = "rain"\n', "weather"),
])
def test_scenario_file_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "t2-signature.toml").write_text(
        (SCENARIOS / "t2-signature.toml").read_text())
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert key in str(caught.value)


def test_a_mailbox_kind_is_required_for_a_delivery_failure() -> None:
    topo = topology("t2")
    scenario = Scenario(delivery_failures=(DeliveryFailure(address="sales@example.net"),))
    with pytest.raises(ValueError, match="not a mailbox"):
        _sim(topo, deployed(topo), A, (B,), Origin.MAILBOX, scenario)
    mailbox = Recipient(primary=B, kind=RecipientKind.MAILBOX, delivery_failure="552 5.2.2 x")
    assert mailbox.delivery_failure == "552 5.2.2 x"


# --- model fix: the gateway's anti-spoofing step, in a whole simulation ------------------------

@pytest.mark.parametrize(("aligned", "expected"), [
    (False, (Status.REJECTED, "gateway", 1, 0, "5.7.1")),
    (True, (Status.DELIVERED, f"mailbox:{B}", 1, 1, None)),
])
def test_own_domain_mail_from_the_internet_meets_the_gateways_spoof_step(
        aligned: bool, expected: tuple[object, ...]) -> None:
    """T3 (MX on the gateway) with ``on_spoof = reject``; from the internet, P1 and From
    alice@example.net (the tenant's own domain) to bob.

    Not DMARC-aligned: the MX is the gateway -> gateway pass 1: G1 internet, G6 own domain
    without an aligned pass: 550 5.7.1 in the session. REJECTED, gw 1, exo 0.
    Aligned (the real alice sending from outside through a permitted server): gateway pass
    1 processes it (internal flow) and marks it -> EXO pass 1 (certificate-attributed
    return connector; rule 10 excepted, rule 11 consumes the marker): bob's mailbox. gw 1,
    exo 1.
    """
    topo = topology("t3")
    topo = replace(topo, gateway=replace(topo.gateway, on_spoof=SpoofPolicy.REJECT))
    flags = frozenset({MessageFlag.DMARC_ALIGNED}) if aligned else frozenset()
    sim = _sim(topo, deployed(topo), A, (B,), Origin.INTERNET, flags=flags)
    assert _counts(sim, B) == expected
