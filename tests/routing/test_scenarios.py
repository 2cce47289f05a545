"""Table-driven scenarios across the three topologies (issue 7, notes section 2.9).

Each row sends one message from an origin through a topology (the example configuration,
optionally with a seeded misconfiguration) and pins every recipient's outcome, the loop and
bypass verdicts, and the lint codes the configuration must raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from mailroute.item import Envelope
from mailroute.results import Reply
from mailroute.routing import (
    Flow,
    GatewayPolicy,
    MessageFacts,
    MessageFlag,
    Origin,
    Simulation,
    Status,
    Tenant,
    Topology,
    deployed,
    lint,
    simulate,
)
from mailroute.routing.lint import Severity
from mailroute.routing.model import (
    AcceptedDomain,
    Actions,
    DomainType,
    ExoDisclaimer,
    HeaderPatterns,
    JournalRule,
    OrgConfig,
    OutboundConnector,
    Predicates,
    RuleMode,
    SetHeader,
    TransportRule,
)
from mailroute.routing.topology import RoutingMode
from tests.routing import support
from tests.routing.support import (
    change_rule,
    drop_rule,
    exo_connection,
    from_exo_headers,
    insert_before,
    marker,
)

Setup = Callable[[Topology, Tenant], tuple[Topology, Tenant]]
MARK = "X-Mailroute-Mark"


@dataclass(frozen=True)
class Expect:
    """One expected outcome, found by final address and message kind."""

    address: str
    status: Status
    gw: int | None = None
    final: str | None = None
    kind: str = "message"
    reply: str | None = None  # enhanced status code
    disclaimers: int | None = None


@dataclass(frozen=True)
class Scenario:
    id: str
    topo: str
    sender: str
    rcpts: tuple[str, ...]
    origin: Origin
    expect: tuple[Expect, ...]
    headers: tuple[tuple[str, str], ...] = ()
    flags: frozenset[MessageFlag] = frozenset()
    from_exo: bool = False
    setup: Setup | None = None
    policy_reject: Flow | None = None
    loop: bool = False
    bypass: bool = False
    lint_errors: frozenset[str] = field(default_factory=frozenset)
    lint_other: frozenset[str] = field(default_factory=frozenset)


def _tenant_change(fn: Callable[[Tenant], Tenant]) -> Setup:
    return lambda topo, tenant: (topo, fn(tenant))


def _options(**changes: Any) -> Setup:
    def setup(topo: Topology, tenant: Tenant) -> tuple[Topology, Tenant]:
        new = replace(topo, exo_config=replace(topo.exo_config, **changes))
        return new, deployed(new)
    return setup


def _org(**changes: Any) -> Setup:
    return _tenant_change(lambda t: replace(t, org=replace(t.org, **changes)))


_JOURNAL = OrgConfig(journal_rules=(JournalRule(name="archive",
                                                journal_email_address="journal@archive.example"),))
_STOP_ALL = TransportRule(name="corp tag all mail", actions=Actions(
    set_header=SetHeader(name="X-Corp", value="1")), stop_rule_processing=True)
_VENDOR_CLEANUP = TransportRule(name="vendor header cleanup",
                                actions=Actions(remove_header=MARK))
_WRAP_DISCLAIMER = TransportRule(name="legal disclaimer", actions=Actions(
    apply_html_disclaimer=ExoDisclaimer(text="<p>Legal</p>")))
_RELAY_DOMAIN = AcceptedDomain(domain="legacy.example.net", type=DomainType.INTERNAL_RELAY)
_STAR = OutboundConnector(name="other smart host", recipient_domains=("*",),
                          use_mx_record=False, smart_hosts=("relay.provider.example",))
_STAR2 = replace(_STAR, name="second smart host")


def _no_exception(t: Tenant) -> Tenant:
    return change_rule(t, "mailroute 10", exceptions=Predicates())


def _wrong_tag(t: Tenant) -> Tenant:
    route = next(r for r in t.rules_by_priority if r.name.startswith("mailroute 10"))
    bad = replace(route.exceptions, header_matches=HeaderPatterns(
        header=MARK, patterns=(r"v1\.zzzzzz\.",)))
    return change_rule(t, "mailroute 10", exceptions=bad)


def _no_lockdown(t: Tenant) -> Tenant:
    return replace(t, inbound_connectors=tuple(c for c in t.inbound_connectors
                                               if "lock-down" not in c.name))


def _t1_outbound_disabled(t: Tenant) -> Tenant:
    return replace(t, outbound_connectors=tuple(replace(c, enabled=False)
                                                for c in t.outbound_connectors))


def _route_connector_disabled(t: Tenant) -> Tenant:
    return replace(t, outbound_connectors=tuple(
        replace(c, enabled=False) if c.name == "mailroute EXO to gateway" else c
        for c in t.outbound_connectors))


D, R, N, L = Status.DELIVERED, Status.REJECTED, Status.NDR, Status.LOOP
MBX, NET = "mailbox:", "internet:"
A, B, X = "alice@example.net", "bob@example.net", "x@partner.example"
INT, MB, GW, DIRECT = Origin.INTERNET, Origin.MAILBOX, Origin.GATEWAY, Origin.DIRECT

def _group_fanout(name: str, topo: str, sender: str, origin: Origin, *,
                  member_passes: int) -> Scenario:
    """Mail to the Microsoft 365 group project@example.net: the group mailbox gets it after
    one gateway pass, and the members A and B get Exchange's fan-out copies."""
    group = "project@example.net"
    return Scenario(name, topo, sender, (group,), origin,
                    (Expect(group, D, 1, MBX + group),
                     Expect(A, D, member_passes, MBX + A, kind="group fan-out"),
                     Expect(B, D, member_passes, MBX + B, kind="group fan-out")))


SCENARIOS = [
    # --- T2: beside, MX on EOP -------------------------------------------------------------
    Scenario("t2-internal", "t2", A, (B,), MB, (Expect(B, D, 1, MBX + B),)),
    Scenario("t2-outbound", "t2", A, (X,), MB, (Expect(X, D, 1, NET + "partner.example"),)),
    Scenario("t2-inbound", "t2", X, (B,), INT, (Expect(B, D, 1, MBX + B),)),
    Scenario("t2-mixed-recipients", "t2", A, (B, X), MB,
             (Expect(B, D, 1, MBX + B), Expect(X, D, 1, NET + "partner.example"))),
    Scenario("t2-distribution-group", "t2", A, ("sales@example.net",), MB,
             (Expect(A, D, 1, MBX + A), Expect(B, D, 1, MBX + B),
              Expect("dave@partner.example", D, 1, NET + "partner.example"))),
    Scenario("t2-alias-resolves-to-primary", "t2", X, ("a.smith@example.net",), INT,
             (Expect(A, D, 1, MBX + A),)),
    # member copies are made once, when the group mailbox is delivered (after the gateway
    # pass), and carry that pass count; they bypass the gateway themselves (rule 03)
    _group_fanout("t2-unified-group-fanout-bypasses", "t2", A, MB, member_passes=1),
    # the fan-out bypass is for the organisation's own mail: copies of an internet sender's
    # message to a group pass the gateway a second time (new recipients: no loop guard
    # refuses them), and the header alone, which anyone can write, skips nothing
    _group_fanout("t2-unified-group-fanout-from-the-internet-passes-again", "t2", X, INT,
                  member_passes=2),
    Scenario("t2-forged-fanout-header-from-the-internet-is-routed", "t2", X, (B,), INT,
             (Expect(B, D, 1, MBX + B),),
             headers=(("X-MS-Exchange-UnifiedGroup-SubmittedViaGroupAddress",
                       "project@example.net"),)),
    Scenario("t2-mail-contact-is-external", "t2", A, ("dave@example.net",), MB,
             (Expect("dave@partner.example", D, 1, NET + "partner.example"),)),
    Scenario("t2-unknown-recipient-dbeb", "t2", X, ("nobody@example.net",), INT,
             (Expect("nobody@example.net", R, 0, reply="5.4.1"),)),
    Scenario("t2-null-sender-dsn-inbound", "t2", "", (B,), INT, (Expect(B, D, 1, MBX + B),),
             flags=frozenset({MessageFlag.DSN})),
    Scenario("t2-ndr-for-unknown-internal-recipient", "t2", A, ("nobody@example.net",), MB,
             (Expect("nobody@example.net", N, 1, reply="5.1.10"),
              Expect(A, D, 1, MBX + A, kind="ndr"))),
    Scenario("t2-auto-reply-bypasses", "t2", A, (X,), MB, (Expect(X, D, 0),),
             flags=frozenset({MessageFlag.OOF})),
    Scenario("t2-meeting-request-bypasses", "t2", A, (B,), MB, (Expect(B, D, 0, MBX + B),),
             flags=frozenset({MessageFlag.CALENDARING})),
    Scenario("t2-meeting-request-from-the-internet-is-routed", "t2", X, (B,), INT,
             (Expect(B, D, 1, MBX + B),), flags=frozenset({MessageFlag.CALENDARING})),
    Scenario("t2-auto-reply-from-the-internet-is-routed", "t2", X, (B,), INT,
             (Expect(B, D, 1, MBX + B),), flags=frozenset({MessageFlag.OOF})),
    Scenario("t2-meeting-request-routed-when-configured", "t2", A, (B,), MB,
             (Expect(B, D, 1, MBX + B),), flags=frozenset({MessageFlag.CALENDARING}),
             setup=_options(route_calendaring=True)),
    Scenario("t2-journal-report-per-pass", "t2", A, (B,), MB,
             (Expect(B, D, 1), Expect("journal@archive.example", D, 0, kind="journal report")),
             setup=_org(journal_rules=_JOURNAL.journal_rules),
             lint_other=frozenset({"L-JOURNAL-DUPLICATES"})),
    Scenario("t2-external-mail-with-copied-marker", "t2", X, (B,), INT,
             (Expect(B, D, 1, MBX + B),), headers=((MARK, marker("valid", X)),)),
    Scenario("t2-return-valid-marker-is-a-loop", "t2", A, (X,), GW, from_exo=True,
             expect=(Expect(X, L, 1, reply="5.4.6"),), headers=((MARK, marker("valid")),),
             loop=True),
    Scenario("t2-return-forged-marker-processed", "t2", A, (X,), GW, from_exo=True,
             expect=(Expect(X, D, 1, NET + "partner.example"),),
             headers=((MARK, marker("forged")),)),
    Scenario("t2-return-foreign-marker-processed", "t2", A, (X,), GW, from_exo=True,
             expect=(Expect(X, D, 1, NET + "partner.example"),),
             headers=((MARK, marker("foreign")),)),
    Scenario("t2-return-stale-marker-reprocessed", "t2", A, (X,), GW, from_exo=True,
             expect=(Expect(X, D, 1, NET + "partner.example"),),
             headers=((MARK, marker("stale")),)),
    Scenario("t2-return-replayed-marker-processed", "t2", A, (X,), GW, from_exo=True,
             expect=(Expect(X, D, 1, NET + "partner.example"),),
             headers=((MARK, marker("replayed")),)),
    Scenario("t2-forged-bypass-header-is-reset", "t2", X, (B,), INT, (Expect(B, D, 1),),
             headers=(("X-Mailroute-Bypass", "oof"),)),
    Scenario("t2-gateway-policy-refuses-outbound", "t2", A, (X,), MB,
             (Expect(X, R, 1, reply="5.7.1"), Expect(A, D, 1, MBX + A, kind="ndr")),
             policy_reject=Flow.OUTBOUND),
    Scenario("t2-bounce-never-refused-by-policy", "t2", "", (X,), MB, (Expect(X, D, 1),),
             flags=frozenset({MessageFlag.DSN}), policy_reject=Flow.OUTBOUND),
    Scenario("t2-directional-internal-skips-gateway", "t2", A, (B, X), MB,
             (Expect(B, D, 0, MBX + B), Expect(X, D, 1, NET + "partner.example")),
             setup=_options(mode=RoutingMode.DIRECTIONAL)),
    # the forwarded copy continues the inbound journey's count: its own lap is the second
    Scenario("t2-mailbox-forwarding-new-pass", "t2", X, ("carol@example.net",), INT,
             (Expect("carol@example.net", D, 1),
              Expect("carol.private@partner.example", D, 2, NET + "partner.example",
                     kind="forward"))),
    Scenario("t2-direct-send-spoof-rejected", "t2", A, (B,), DIRECT,
             (Expect(B, R, 0, reply="5.7.68"),), setup=_org(reject_direct_send=True)),
    # --- T2 seeded misconfigurations ---------------------------------------------------------
    # Loops end at the gateway's processed-message guard (G2, 554 5.4.6) on its second pass,
    # before the simulator's state-repeat check, as in a real deployment.
    Scenario("t2-missing-marker-exception-loops", "t2", A, (B,), MB,
             (Expect(B, L, 2, reply="5.4.6"),),
             setup=_tenant_change(_no_exception), loop=True,
             lint_errors=frozenset({"L-ROUTE-NO-MARKER-EXCEPTION"})),
    Scenario("t2-marker-stripped-before-route-loops", "t2", A, (B,), MB,
             (Expect(B, L, 2, reply="5.4.6"),),
             setup=_tenant_change(lambda t: insert_before(t, "mailroute 10", _VENDOR_CLEANUP)),
             loop=True, lint_errors=frozenset({"L-MARKER-CONSUMED-BEFORE-ROUTE"})),
    Scenario("t2-shadowing-rule-bypasses", "t2", A, (X,), MB, (Expect(X, D, 0),),
             setup=_tenant_change(lambda t: insert_before(t, "mailroute 10", _STOP_ALL)),
             bypass=True, lint_errors=frozenset({"L-SHADOWED-ROUTE"})),
    Scenario("t2-exception-for-other-tag-loops", "t2", A, (B,), MB,
             (Expect(B, L, 2, reply="5.4.6"),),
             setup=_tenant_change(_wrong_tag), loop=True,
             lint_errors=frozenset({"L-MARKER-PATTERN"})),
    Scenario("t2-copied-marker-without-rule-01-bypasses", "t2", X, (B,), INT,
             (Expect(B, D, 0),), headers=((MARK, marker("valid", X)),),
             setup=_tenant_change(lambda t: drop_rule(t, "mailroute 01")), bypass=True,
             lint_errors=frozenset({"L-UNTRUSTED-STRIP-MISSING"})),
    Scenario("t2-forged-bypass-without-reset-bypasses", "t2", X, (B,), INT, (Expect(B, D, 0),),
             headers=(("X-Mailroute-Bypass", "oof"),),
             setup=_tenant_change(lambda t: drop_rule(t, "mailroute 00")), bypass=True,
             lint_errors=frozenset({"L-BYPASS-STRIP-MISSING"})),
    Scenario("t2-disclaimer-without-marker-exception-applied-twice", "t2", A, (B,), MB,
             (Expect(B, D, 1, MBX + B, disclaimers=2),), flags=frozenset({MessageFlag.SIGNED}),
             setup=_tenant_change(lambda t: insert_before(t, "mailroute 10", _WRAP_DISCLAIMER)),
             lint_errors=frozenset({"L-DISCLAIMER-AFTER-GATEWAY"})),
    Scenario("t2-internal-relay-without-connector-loops", "t2", A, ("u@legacy.example.net",),
             MB, (Expect("u@legacy.example.net", L, 2, reply="5.4.6"),), loop=True,
             setup=_tenant_change(lambda t: replace(
                 t, accepted_domains=(*t.accepted_domains, _RELAY_DOMAIN),
                 mx=(*t.mx, ("legacy.example.net", "eop")))),
             lint_errors=frozenset({"L-INTERNALRELAY-LOOP"})),
    Scenario("t2-routing-rule-in-audit-mode-bypasses", "t2", A, (X,), MB, (Expect(X, D, 0),),
             setup=_tenant_change(lambda t: change_rule(t, "mailroute 10",
                                                        mode=RuleMode.AUDIT)),
             bypass=True, lint_errors=frozenset({"L-RULE-NOT-ENFORCED"})),
    Scenario("t2-disabled-route-connector-ndr", "t2", A, (X,), MB,
             (Expect(X, N, 0, reply="5.4.4"),),
             setup=_tenant_change(_route_connector_disabled),
             lint_errors=frozenset({"L-ROUTE-CONNECTOR"})),
    Scenario("t2-two-star-connectors-ambiguous", "t2", A, (X,), MB,
             (Expect(X, Status.AMBIGUOUS, 1),),
             setup=_tenant_change(lambda t: replace(
                 t, outbound_connectors=(*t.outbound_connectors, _STAR, _STAR2))),
             lint_errors=frozenset({"L-AMBIGUOUS-CONNECTOR"})),
    # --- T3: beside, MX on the gateway -------------------------------------------------------
    Scenario("t3-inbound-via-mx", "t3", X, (B,), INT, (Expect(B, D, 1, MBX + B),)),
    Scenario("t3-outbound", "t3", A, (X,), MB, (Expect(X, D, 1, NET + "partner.example"),)),
    _group_fanout("t3-unified-group-fanout-from-the-internet-passes-again", "t3", X, INT,
                  member_passes=2),
    _group_fanout("t3-unified-group-fanout-of-own-mail-bypasses", "t3", A, MB,
                  member_passes=1),
    Scenario("t3-internal", "t3", A, (B,), MB, (Expect(B, D, 1, MBX + B),)),
    Scenario("t3-mx-bypass-locked-down", "t3", X, (B,), DIRECT,
             (Expect(B, R, 0, reply="5.7.51"),)),
    Scenario("t3-copied-marker-from-internet-stripped", "t3", X, (B,), INT,
             (Expect(B, D, 1, MBX + B),), headers=((MARK, marker("valid", X)),)),
    Scenario("t3-return-valid-marker-is-a-loop", "t3", A, (B,), GW, from_exo=True,
             expect=(Expect(B, L, 1, reply="5.4.6"),), headers=((MARK, marker("valid")),),
             loop=True),
    Scenario("t3-return-forged-marker-processed", "t3", A, (B,), GW, from_exo=True,
             expect=(Expect(B, D, 1, MBX + B),), headers=((MARK, marker("forged")),)),
    Scenario("t3-null-sender-inbound", "t3", "", (B,), INT, (Expect(B, D, 1, MBX + B),),
             flags=frozenset({MessageFlag.DSN})),
    Scenario("t3-meeting-request-bypasses", "t3", A, (B,), MB, (Expect(B, D, 0, MBX + B),),
             flags=frozenset({MessageFlag.CALENDARING})),
    Scenario("t3-without-lockdown-mx-bypass-still-routed", "t3", X, (B,), DIRECT,
             (Expect(B, D, 1, MBX + B),), setup=_tenant_change(_no_lockdown),
             lint_other=frozenset({"L-LOCKDOWN-MISSING"})),
    Scenario("t3-missing-marker-exception-loops", "t3", X, (B,), INT,
             (Expect(B, L, 2, reply="5.4.6"),),
             setup=_tenant_change(_no_exception), loop=True,
             lint_errors=frozenset({"L-ROUTE-NO-MARKER-EXCEPTION"})),
    Scenario("t3-shadowing-rule-bypasses", "t3", A, (B,), MB, (Expect(B, D, 0),),
             setup=_tenant_change(lambda t: insert_before(t, "mailroute 10", _STOP_ALL)),
             bypass=True, lint_errors=frozenset({"L-SHADOWED-ROUTE"})),
    # --- T1: gateway in front ----------------------------------------------------------------
    Scenario("t1-inbound", "t1", X, (B,), INT, (Expect(B, D, 1, MBX + B),)),
    Scenario("t1-outbound", "t1", A, (X,), MB, (Expect(X, D, 1, NET + "partner.example"),)),
    Scenario("t1-internal-never-at-gateway", "t1", A, (B,), MB, (Expect(B, D, 0, MBX + B),)),
    Scenario("t1-mixed-recipients", "t1", A, (B, X), MB,
             (Expect(B, D, 0, MBX + B), Expect(X, D, 1, NET + "partner.example"))),
    Scenario("t1-group-with-external-member-two-legs", "t1", X, ("sales@example.net",), INT,
             (Expect(A, D, 1), Expect(B, D, 1),
              Expect("dave@partner.example", D, 2, NET + "partner.example"))),
    Scenario("t1-mx-bypass-locked-down", "t1", X, (B,), DIRECT,
             (Expect(B, R, 0, reply="5.7.51"),)),
    Scenario("t1-null-sender-inbound", "t1", "", (B,), INT, (Expect(B, D, 1, MBX + B),),
             flags=frozenset({MessageFlag.DSN})),
    Scenario("t1-copied-marker-from-internet-stripped", "t1", X, (B,), INT,
             (Expect(B, D, 1, MBX + B),), headers=((MARK, marker("valid", X)),)),
    Scenario("t1-relay-through-gateway-refused", "t1", X, ("y@elsewhere.example",), GW,
             (Expect("y@elsewhere.example", R, 1, reply="5.7.1"),)),
    Scenario("t1-auto-reply-passes-gateway", "t1", A, (X,), MB, (Expect(X, D, 1),),
             flags=frozenset({MessageFlag.OOF})),
    Scenario("t1-disabled-outbound-connector-bypasses", "t1", A, (X,), MB,
             (Expect(X, D, 0, NET + "partner.example"),),
             setup=_tenant_change(_t1_outbound_disabled), bypass=True,
             lint_errors=frozenset({"L-T1-OUTBOUND-MISSING"})),
    Scenario("t1-without-lockdown-mx-bypass", "t1", X, (B,), DIRECT, (Expect(B, D, 0),),
             setup=_tenant_change(_no_lockdown), bypass=True,
             lint_other=frozenset({"L-LOCKDOWN-MISSING"})),
    Scenario("t1-journal-report-to-external-archive", "t1", A, (B,), MB,
             (Expect(B, D, 0), Expect("journal@archive.example", D, 1,
                                      NET + "archive.example", kind="journal report")),
             setup=_org(journal_rules=_JOURNAL.journal_rules)),
]


def _policy(refused: Flow | None) -> GatewayPolicy | None:
    if refused is None:
        return None

    def policy(flow: Flow, recipients: tuple[str, ...], message: MessageFacts) -> Reply | None:
        return Reply(550, "5.7.1", "refused by test policy") if flow is refused else None
    return policy


def run(s: Scenario) -> tuple[Simulation, Topology, Tenant]:
    topo, tenant = support.installed(s.topo)
    if s.setup is not None:
        topo, tenant = s.setup(topo, tenant)
    headers = (*s.headers, *(from_exo_headers() if s.from_exo else ()))
    message = support.message(s.sender, headers=headers, flags=s.flags)
    sim = simulate(Envelope(mail_from=s.sender, rcpt_to=s.rcpts), message, topo, tenant=tenant,
                   origin=s.origin, connection=exo_connection() if s.from_exo else None,
                   now=support.NOW, policy=_policy(s.policy_reject))
    return sim, topo, tenant


def test_there_are_at_least_forty_scenarios_over_three_topologies() -> None:
    assert len(SCENARIOS) >= 40
    assert {s.topo for s in SCENARIOS} == {"t1", "t2", "t3"}
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario(s: Scenario) -> None:
    sim, topo, tenant = run(s)
    for e in s.expect:
        found = [o for o in sim.outcomes if o.address == e.address and o.kind == e.kind]
        assert found, f"no {e.kind} outcome for {e.address}: {sim.outcomes}"
        o = found[0]
        assert o.status is e.status, o
        if e.gw is not None:
            assert o.gateway_passes == e.gw, o
        if e.final is not None:
            assert o.final.startswith(e.final), o
        if e.reply is not None:
            assert o.reply is not None, o
            assert o.reply.status == e.reply, o
        if e.disclaimers is not None:
            assert o.disclaimers == e.disclaimers, o
        if o.status is Status.DELIVERED:
            assert not o.marker_at_delivery, o
    assert sim.loop is s.loop
    assert sim.bypass is s.bypass
    findings = lint(topo, tenant, now=None)
    errors = {f.code for f in findings if f.severity is Severity.ERROR}
    assert errors == s.lint_errors, [str(f) for f in findings]
    assert s.lint_other <= {f.code for f in findings}


_SENDERS = {Origin.MAILBOX: (A, "carol@example.net"), Origin.INTERNET: (X, ""),
            Origin.GATEWAY: (X,)}
_RCPTS = ((B,), (X,), (B, X), ("sales@example.net",), ("project@example.net",),
          ("a.smith@example.net", "dave@example.net"))
_FLAGS: tuple[frozenset[MessageFlag], ...] = (
    frozenset(), frozenset({MessageFlag.OOF}), frozenset({MessageFlag.CALENDARING}),
    frozenset({MessageFlag.DSN}), frozenset({MessageFlag.SIGNED}))


@pytest.mark.parametrize("name", ["t1", "t2", "t3"])
def test_correct_configuration_never_loops_bypasses_or_leaks_the_marker(name: str) -> None:
    topo, tenant = support.installed(name)
    runs = 0
    for origin, senders in _SENDERS.items():
        for sender in senders:
            for rcpts in _RCPTS:
                if origin is not Origin.MAILBOX and X in rcpts:
                    continue  # relay from the internet is refused, not routed
                for flags in _FLAGS:
                    sim = simulate(Envelope(mail_from=sender, rcpt_to=rcpts),
                                   support.message(sender, flags=flags), topo, tenant=tenant,
                                   origin=origin, now=support.NOW)
                    runs += 1
                    assert not sim.loop, (origin, sender, rcpts, flags)
                    assert not sim.bypass, (origin, sender, rcpts, flags)
                    assert all(o.status is Status.DELIVERED for o in sim.outcomes), sim.outcomes
                    assert not any(o.marker_at_delivery for o in sim.outcomes)
    assert runs == 120
