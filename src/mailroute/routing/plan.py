"""The connectors and rules mailroute installs for a topology (docs/routing/t1-, t2-, t3-*.md),
as values.

:func:`build_plan` derives them from the gateway and the generator options;
:func:`deployed` returns the tenant as it will be once the plan is installed and enabled, which
is what :func:`~mailroute.routing.simulate` and :func:`~mailroute.routing.lint` look at.
"""

from __future__ import annotations

from mailroute.records import record, replace
from mailroute.routing.markers import marker_exception_pattern
from mailroute.routing.model import (
    Actions,
    ConnectorType,
    HeaderPatterns,
    HeaderWords,
    InboundConnector,
    MessageType,
    OutboundConnector,
    Predicates,
    Scope,
    SetHeader,
    Tenant,
    TlsSettings,
    TransportRule,
)
from mailroute.routing.topology import Placement, RoutingMode, Topology, TopologyKind

__all__ = ["PREFIX", "Plan", "build_plan", "deployed"]

PREFIX = "mailroute "
OUT_T1 = "mailroute EXO to gateway (all external)"
OUT_BESIDE = "mailroute EXO to gateway"
IN_RETURN = "mailroute gateway to EXO"
IN_LOCKDOWN = "mailroute gateway to EXO (lock-down)"
_DIRECTIONALITY = "X-MS-Exchange-Organization-MessageDirectionality"
_FANOUT = "X-MS-Exchange-UnifiedGroup-SubmittedViaGroupAddress"
_JOURNAL = "X-MS-Exchange-Organization-Journal-Report"


@record(frozen=True, kw_only=True)
class Plan:
    """What mailroute creates in the tenant, in creation order.

    Attributes:
        topology: T1, T2 or T3.
        inbound_connectors / outbound_connectors / rules: the objects, final (enabled) state.
        required_accepted_domains: domains that must be accepted before installing.
        arc_sealer: the domain to add to the trusted ARC sealers (T1 and T3: the MX is on
            the gateway, which seals what it changed), if any.
        reject_direct_send: whether to enable ``RejectDirectSend``.
        dns: DNS expectations, rendered as comments.
    """

    topology: TopologyKind
    inbound_connectors: tuple[InboundConnector, ...]
    outbound_connectors: tuple[OutboundConnector, ...]
    rules: tuple[TransportRule, ...]
    required_accepted_domains: tuple[str, ...] = ()
    arc_sealer: str | None = None
    reject_direct_send: bool = False
    dns: tuple[str, ...] = ()


def build_plan(topology: Topology) -> Plan:
    """The mailroute objects for ``topology`` (no validation: run :func:`lint` for that)."""
    gw, opts = topology.gateway, topology.exo_config
    domains = topology.org_domains
    base = 0 if opts.placement is Placement.TOP else len(
        [r for r in topology.tenant.transport_rules if not r.name.startswith(PREFIX)])
    lockdown = InboundConnector(
        name=IN_LOCKDOWN, connector_type=ConnectorType.PARTNER, sender_domains=("*",),
        require_tls=True, restrict_domains_to_certificate=True,
        tls_sender_certificate_name=gw.inbound_tls_identity or gw.tls_identity,
        associated_accepted_domains=domains,
        ef_skip_last_ip=gw.topology is TopologyKind.T1 or bool(gw.inbound_tls_identity),
        comment=f"mailroute {gw.topology}: {_domain_list(domains)} mail only from the "
                "gateway certificate")
    if gw.topology is TopologyKind.T1:
        return _t1(topology, lockdown, base)
    csme = opts.cloud_services_mail_enabled
    outbound = OutboundConnector(
        name=OUT_BESIDE, connector_type=ConnectorType.ON_PREMISES, is_transport_rule_scoped=True,
        use_mx_record=False, smart_hosts=(gw.hostname,),
        tls_settings=TlsSettings.DOMAIN_VALIDATION, tls_domain=gw.hostname,
        cloud_services_mail_enabled=csme,
        comment=f"mailroute {gw.topology}: used only by the mailroute routing rule")
    inbound = InboundConnector(
        name=IN_RETURN, connector_type=ConnectorType.ON_PREMISES, sender_domains=("*",),
        require_tls=True, tls_sender_certificate_name=gw.tls_identity,
        cloud_services_mail_enabled=csme,
        comment=f"mailroute {gw.topology}: return path, gateway identified by certificate")
    inbound_all = (inbound, lockdown) if gw.topology is TopologyKind.T3 else (inbound,)
    required = tuple(dict.fromkeys(
        n for n in (gw.tls_identity, gw.inbound_tls_identity) if n))
    mx = "the gateway" if gw.topology is TopologyKind.T3 else "EOP (unchanged)"
    dns = tuple(f"MX {d} -> {mx}; SPF keeps include:spf.protection.outlook.com (EXO sends)"
                for d in domains)
    # With the MX on the gateway, internet mail reaches EOP only after the gateway changed it
    # (a disclaimer breaks the sender's DKIM): EOP should trust the gateway's ARC seal.
    sealer = None
    if gw.topology is TopologyKind.T3:
        sealer = topology.org_domains[0] if topology.org_domains else topology.tenant.name
    return Plan(topology=gw.topology, inbound_connectors=inbound_all,
                outbound_connectors=(outbound,), rules=_beside_rules(topology, base),
                required_accepted_domains=required, arc_sealer=sealer,
                reject_direct_send=opts.reject_direct_send, dns=dns)


def _domain_list(domains: tuple[str, ...], shown: int = 5) -> str:
    """The domains for a comment, the first few and how many more (a comment holds at most
    1024 characters, and a tenant may have hundreds of domains)."""
    if len(domains) <= shown:
        return ", ".join(domains)
    return f"{', '.join(domains[:shown])} and {len(domains) - shown} more"


def _t1(topology: Topology, lockdown: InboundConnector, base: int) -> Plan:
    gw, opts = topology.gateway, topology.exo_config
    outbound = OutboundConnector(
        name=OUT_T1, connector_type=ConnectorType.PARTNER, recipient_domains=("*",),
        use_mx_record=False, smart_hosts=(gw.hostname,),
        tls_settings=TlsSettings.DOMAIN_VALIDATION, tls_domain=gw.hostname,
        comment="mailroute T1: enable together with the MX change")
    inbound: tuple[InboundConnector, ...] = (lockdown,)
    if opts.t1_onpremises_inbound:
        inbound += (InboundConnector(
            name=IN_RETURN, connector_type=ConnectorType.ON_PREMISES, sender_domains=("*",),
            require_tls=True, tls_sender_certificate_name=gw.tls_identity,
            comment="mailroute T1: article variant (NSP to tenant)"),)
    consume = _rule("11 consume marker", base, conditions=_present(gw.marker.header),
                    actions=Actions(remove_header=gw.marker.header))
    egress = ", ".join(f"ip4:{ip}" for ip in gw.egress_ips) or "the gateway's addresses"
    dns = tuple(f"MX {d} -> the gateway; SPF v=spf1 {egress} -all (the gateway is the only "
                "sender); the gateway DKIM-signs outbound mail" for d in topology.org_domains)
    main = topology.org_domains[0] if topology.org_domains else topology.tenant.name
    return Plan(topology=TopologyKind.T1, inbound_connectors=inbound,
                outbound_connectors=(outbound,), rules=(consume,), arc_sealer=main,
                reject_direct_send=opts.reject_direct_send, dns=dns)


def _present(header: str) -> Predicates:
    return Predicates(header_matches=HeaderPatterns(header=header, patterns=(".",)))


def _rule(label: str, priority: int, **parts: object) -> TransportRule:
    return TransportRule(name=PREFIX + label, priority=priority, **parts)  # type: ignore[arg-type]


def _beside_rules(topology: Topology, base: int) -> tuple[TransportRule, ...]:
    gw, opts = topology.gateway, topology.exo_config
    mark, bypass = gw.marker.header, gw.bypass_header
    rules: list[tuple[str, dict[str, object]]] = [
        ("00 reset bypass", {"actions": Actions(remove_header=bypass)}),
    ]
    untrusted = _untrusted_strip(topology)
    if untrusted is not None:
        rules.append(("01 drop untrusted marker", untrusted))
    # Auto-replies, group fan-out and meeting mail of the organisation's own mailboxes
    # only: any sender on the internet can send a message of either type (a text/calendar
    # part will do) or write the fan-out header, which Exchange's header firewall is not
    # documented to remove, and such a message must not skip the gateway. Fan-out copies
    # of an internet sender's message pass the gateway once more instead (new recipients).
    own = Scope.IN_ORGANIZATION
    bypasses = [("02 bypass auto-reply", "oof",
                 Predicates(message_type_matches=MessageType.OOF, from_scope=own)),
                ("03 bypass group fan-out", "groupfanout",
                 replace(_present(_FANOUT), from_scope=own)),
                ("04 bypass journal report", "journal", _present(_JOURNAL))]
    if not opts.route_calendaring:
        bypasses.append(("05 bypass calendaring", "calendaring",
                         Predicates(message_type_matches=MessageType.CALENDARING,
                                    from_scope=own)))
    for label, word, condition in bypasses:
        rules.append((label, {"conditions": condition, "actions": Actions(
            set_header=SetHeader(name=bypass, value=word))}))
    words = tuple(word for _, word, _ in bypasses)
    exceptions = Predicates(
        header_matches=HeaderPatterns(header=mark,
                                      patterns=(marker_exception_pattern(gw.marker.tag),)),
        header_contains=HeaderWords(header=bypass, words=words))
    route = Actions(route_message_outbound_connector=OUT_BESIDE)
    if opts.mode is RoutingMode.ALL:
        rules.append(("10 route to gateway", {"exceptions": exceptions, "actions": route,
                                              "stop_rule_processing": True}))
    else:
        rules.append(("10 route outbound to gateway", {
            "conditions": Predicates(from_scope=Scope.IN_ORGANIZATION,
                                     sent_to_scope=Scope.NOT_IN_ORGANIZATION),
            "exceptions": exceptions, "actions": route, "stop_rule_processing": True}))
        rules.append(("10 route inbound to gateway", {
            "conditions": Predicates(from_scope=Scope.NOT_IN_ORGANIZATION,
                                     sent_to_scope=Scope.IN_ORGANIZATION),
            "exceptions": replace(exceptions, scl_over=opts.inbound_scl_exception),
            "actions": route, "stop_rule_processing": True}))
    rules.append(("11 consume marker", {"conditions": _present(mark),
                                        "actions": Actions(remove_header=mark)}))
    rules.append(("12 clear bypass", {"conditions": _present(bypass),
                                      "actions": Actions(remove_header=bypass)}))
    return tuple(_rule(label, base + i, **parts) for i, (label, parts) in enumerate(rules))


def _untrusted_strip(topology: Topology) -> dict[str, object] | None:
    gw = topology.gateway
    actions = Actions(remove_header=gw.marker.header)
    if gw.egress_ips:
        return {"conditions": _present(gw.marker.header),
                "exceptions": Predicates(sender_ip_ranges=gw.egress_ips), "actions": actions}
    if topology.exo_config.accept_forged_marker_risk:
        return {"conditions": Predicates(
            header_matches=HeaderPatterns(header=gw.marker.header, patterns=(".",)),
            header_contains=HeaderWords(header=_DIRECTIONALITY, words=("Incoming",))),
            "actions": actions}
    return None


def deployed(topology: Topology, plan: Plan | None = None) -> Tenant:
    """The tenant with ``plan`` (default: :func:`build_plan`) installed and enabled.

    Existing objects whose names start with ``mailroute `` are replaced; existing rules keep
    their order and move below or above the mailroute block as the placement says.
    """
    plan = plan if plan is not None else build_plan(topology)
    tenant = topology.tenant
    others = [r for r in tenant.rules_by_priority if not r.name.startswith(PREFIX)]
    first = len(plan.rules) if topology.exo_config.placement is Placement.TOP else 0
    moved = tuple(replace(r, priority=first + i) for i, r in enumerate(others))
    inbound = tuple(c for c in tenant.inbound_connectors if not c.name.startswith(PREFIX))
    outbound = tuple(c for c in tenant.outbound_connectors if not c.name.startswith(PREFIX))
    org = tenant.org
    if plan.arc_sealer and plan.arc_sealer not in org.arc_trusted_sealers:
        org = replace(org, arc_trusted_sealers=(*org.arc_trusted_sealers, plan.arc_sealer))
    if plan.reject_direct_send:
        org = replace(org, reject_direct_send=True)
    return replace(tenant, inbound_connectors=(*inbound, *plan.inbound_connectors),
                   outbound_connectors=(*outbound, *plan.outbound_connectors),
                   transport_rules=(*plan.rules, *moved), org=org)
