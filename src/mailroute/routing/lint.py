"""Static checks over a deployed topology (docs/routing/lint.md); errors refuse generation.

Each check is a small function over :class:`LintContext` yielding :class:`Finding` values;
:data:`CHECKS` runs them in the order of docs/routing/lint.md. The checks find the mailroute
objects by what they do, not only by their names: the *routing rule* is any rule that
routes to a connector whose smart host is the gateway, the *untrusted-marker strip* is a rule
that removes the marker except from the gateway's egress IPs, and so on, so that a
hand-edited or read-back tenant is judged by the same logic as a generated one.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterator
from datetime import datetime

from mailroute.records import record
from mailroute.routing.exo import domain_connector
from mailroute.routing.hop import MessageFacts
from mailroute.routing.markers import simulation_markers
from mailroute.routing.match import cert_name_matches, is_placeholder_address, is_subdomain
from mailroute.routing.model import (
    ConnectorSource,
    ConnectorType,
    DomainType,
    InboundConnector,
    OutboundConnector,
    RuleMode,
    Tenant,
    TlsSettings,
    TransportRule,
)
from mailroute.routing.plan import PREFIX, deployed
from mailroute.routing.topology import EXO_IP_RANGES, Topology, TopologyKind

__all__ = ["CHECKS", "Finding", "LintContext", "Severity", "errors", "lint"]

_DIRECTIONALITY = "x-ms-exchange-organization-messagedirectionality"
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12",
                                                    "192.168.0.0/16"))

#: Addresses no connection from the internet comes from (the documentation ranges of the
#: examples are not among them).
_NOT_ROUTED = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3", "::/127", "fc00::/7", "fe80::/10",
    "ff00::/8"))


class Severity(enum.StrEnum):
    """E refuses generation, W warns, I informs."""

    ERROR = "E"
    WARNING = "W"
    INFO = "I"


@record(frozen=True)
class Finding:
    """One lint result: code (docs/routing/lint.md), severity, message, object concerned."""

    code: str
    severity: Severity
    message: str
    subject: str = ""

    def __str__(self) -> str:
        where = f" [{self.subject}]" if self.subject else ""
        return f"{self.severity} {self.code}{where}: {self.message}"


@record(frozen=True)
class LintContext:
    """The deployed tenant plus the facts every check derives the same way."""

    topology: Topology
    tenant: Tenant
    rules: tuple[TransportRule, ...]
    gateway_connectors: frozenset[str]
    routing: tuple[int, ...]
    now: datetime | None

    @property
    def beside(self) -> bool:
        """T2 or T3."""
        return self.topology.gateway.topology is not TopologyKind.T1

    @property
    def first_route(self) -> int | None:
        """Index of the first gateway routing rule."""
        return self.routing[0] if self.routing else None

    @property
    def above_route(self) -> tuple[TransportRule, ...]:
        """The rules evaluated before the first gateway routing rule (none without one)."""
        return self.rules[:self.routing[0]] if self.routing else ()

    def removes(self, rule: TransportRule, header: str) -> bool:
        """True when ``rule`` removes or sets ``header``."""
        a = rule.actions
        return bool((a.remove_header and a.remove_header.lower() == header.lower()) or (
            a.set_header is not None and a.set_header.name.lower() == header.lower()))

    def is_untrusted_strip(self, rule: TransportRule) -> bool:
        """Rule ``01``: removes the marker except from the gateway (IP or directionality)."""
        mark = self.topology.gateway.marker.header
        a = rule.actions
        if not (a.remove_header and a.remove_header.lower() == mark.lower()):
            return False
        header = rule.conditions.header_contains
        return bool(rule.exceptions.sender_ip_ranges) or (
            header is not None and header.header.lower() == _DIRECTIONALITY)


def _context(topology: Topology, tenant: Tenant, now: datetime | None) -> LintContext:
    identities = topology.gateway.identities
    gw_conns = frozenset(c.name for c in tenant.outbound_connectors
                         if any(h.lower() in identities for h in c.smart_hosts))
    rules = tenant.rules_by_priority
    routing = tuple(i for i, r in enumerate(rules)
                    if (name := r.actions.route_message_outbound_connector)
                    and (name in gw_conns or name.startswith(PREFIX)))
    return LintContext(topology, tenant, rules, gw_conns, routing, now)


Check = Callable[[LintContext], Iterator[Finding]]
E, W, I_ = Severity.ERROR, Severity.WARNING, Severity.INFO


def _cert_domain(c: LintContext) -> Iterator[Finding]:
    for conn in c.tenant.inbound_connectors:
        name = conn.tls_sender_certificate_name
        if not (conn.enabled and name and conn.connector_type is ConnectorType.ON_PREMISES):
            continue
        host = name.removeprefix("*.").lower()
        if host in c.tenant.domains:
            continue
        covered = c.tenant.accepted_domain(host)
        if covered is not None and covered.type is DomainType.INTERNAL_RELAY:
            yield Finding("L-CERT-DOMAIN-NOT-ACCEPTED", W, f"{host} is covered only through "
                          "an InternalRelay domain with MatchSubDomains (unverified)", conn.name)
        else:
            yield Finding("L-CERT-DOMAIN-NOT-ACCEPTED", E, f"{host} is not an accepted domain: "
                          "null-sender mail cannot be relayed (5.7.64)", conn.name)


def _onprem_by_ip(c: LintContext) -> Iterator[Finding]:
    gw = c.topology.gateway
    for conn in c.tenant.inbound_connectors:
        if (conn.connector_type is ConnectorType.ON_PREMISES and conn.sender_ip_addresses
                and not conn.tls_sender_certificate_name):
            shared = gw.egress_ips_shared and set(conn.sender_ip_addresses) & set(gw.egress_ips)
            if shared:
                yield Finding("L-ONPREM-BY-SHARED-IP", E, "OnPremises connector identified by "
                              "a shared IP: other tenants' mail would be attributed here",
                              conn.name)
            else:
                yield Finding("L-ONPREM-BY-IP", W, "OnPremises connector identified only by IP; "
                              "prefer a certificate", conn.name)


def _partner_ip_and_cert(c: LintContext) -> Iterator[Finding]:
    for conn in c.tenant.inbound_connectors:
        if conn.restrict_domains_to_certificate and conn.restrict_domains_to_ip_addresses:
            yield Finding("L-PARTNER-IP-AND-CERT", W, "restricts by IP and by certificate",
                          conn.name)


def _route_connector(c: LintContext) -> Iterator[Finding]:
    sans = c.topology.gateway.sans
    for rule in c.rules:
        name = rule.actions.route_message_outbound_connector
        if not name:
            continue
        conn = c.tenant.outbound_connector(name)
        problem = _connector_problem(conn, c.gateway_connectors, sans)
        if problem:
            yield Finding("L-ROUTE-CONNECTOR", E, problem, rule.name)
        elif conn is not None and conn.tls_settings is not TlsSettings.DOMAIN_VALIDATION:
            yield Finding("L-ROUTE-CONNECTOR", W, f"'{name}' does not use DomainValidation",
                          rule.name)


def _connector_problem(conn: OutboundConnector | None, gw_conns: frozenset[str],
                       sans: tuple[str, ...]) -> str:
    if conn is None:
        return "routes to a connector that does not exist"
    if not conn.enabled:
        return f"'{conn.name}' is disabled"
    if not conn.is_transport_rule_scoped:
        return f"'{conn.name}' is not rule-scoped"
    if conn.use_mx_record or not conn.smart_hosts:
        return f"'{conn.name}' has no smart host"
    if any(":" in h for h in conn.smart_hosts):
        return f"'{conn.name}' has a host:port smart host (port 25 only)"
    if conn.name in gw_conns and conn.tls_domain and not any(
            cert_name_matches(s, conn.tls_domain) or cert_name_matches(conn.tls_domain, s)
            for s in sans):
        return f"TlsDomain of '{conn.name}' does not match the gateway certificate"
    return ""


def _marker_exception(c: LintContext) -> Iterator[Finding]:
    gw = c.topology.gateway
    mark = gw.marker.header.lower()
    own = simulation_markers(gw.marker.tag, "lint")
    other = simulation_markers("aaaaaa" if gw.marker.tag != "aaaaaa" else "bbbbbb", "lint")
    sample = MessageFacts(message_id="<lint@example.invalid>")
    mine, theirs = own.mint(sample, "o", 0), other.mint(sample, "o", 0)
    for i in c.routing:
        rule = c.rules[i]
        exc = rule.exceptions.header_matches
        if exc is None or exc.header.lower() != mark:
            yield Finding("L-ROUTE-NO-MARKER-EXCEPTION", E, "the routing rule has no "
                          "exception for the marker: returning mail loops", rule.name)
            continue
        if not _hits(mine, exc.patterns) or _hits(theirs, exc.patterns):
            yield Finding("L-MARKER-PATTERN", E, "the marker exception does not match this "
                          "deployment's markers only", rule.name)


def _hits(token: str, patterns: tuple[str, ...]) -> bool:
    return any(re.search(p, token, re.IGNORECASE) for p in patterns)


def _marker_before_route(c: LintContext) -> Iterator[Finding]:
    mark = c.topology.gateway.marker.header
    for rule in c.above_route:
        if not c.removes(rule, mark):
            continue
        if rule.conditions.from_scope or rule.conditions.sent_to_scope:
            yield Finding("L-STRIP-BY-SCOPE", E, "a marker-removing rule before the routing "
                          "rule depends on FromScope/SentToScope", rule.name)
        elif not c.is_untrusted_strip(rule):
            yield Finding("L-MARKER-CONSUMED-BEFORE-ROUTE", E, "removes or sets the marker "
                          "before the routing rule: returning mail loops", rule.name)


def _untrusted_strip(c: LintContext) -> Iterator[Finding]:
    first = c.first_route
    if not c.beside:
        return
    if first is None:
        yield Finding("L-ROUTE-MISSING", E, "no rule routes mail to the gateway connector")
        return
    gw = c.topology.gateway
    strips = [r for r in c.rules[:first] if c.is_untrusted_strip(r)]
    if not strips:
        yield Finding("L-UNTRUSTED-STRIP-MISSING", E, "no rule removes markers that did not "
                      "come from the gateway: a copied marker skips the gateway")
    elif gw.egress_ips_shared and any(set(r.exceptions.sender_ip_ranges) & set(gw.egress_ips)
                                      for r in strips):
        yield Finding("L-UNTRUSTED-STRIP-MISSING", W, "the trusted IP list holds a shared "
                      "address", strips[0].name)


def _bypass_strip(c: LintContext) -> Iterator[Finding]:
    bypass = c.topology.gateway.bypass_header.lower()
    reset_seen = False
    for rule in c.rules:
        a = rule.actions
        if (a.remove_header and a.remove_header.lower() == bypass
                and rule.conditions.is_empty and rule.exceptions.is_empty):
            reset_seen = True
        if a.set_header is not None and a.set_header.name.lower() == bypass and not reset_seen:
            yield Finding("L-BYPASS-STRIP-MISSING", E, "sets the bypass header without the "
                          "reset rule above it: a sender can set it", rule.name)


def _shadowed(c: LintContext) -> Iterator[Finding]:
    mark = c.topology.gateway.marker.header.lower()
    for rule in c.above_route:
        a = rule.actions
        if not (rule.stop_rule_processing or a.diverts):
            continue
        cond = rule.conditions.header_matches
        needs_marker = cond is not None and cond.header.lower() == mark
        if needs_marker or not rule.active(c.now) or rule.mode is not RuleMode.ENFORCE:
            continue
        if _service_first(c, rule):
            yield Finding("L-SERVICE-BEFORE-GATEWAY", W, "routes to another service before the "
                          "gateway: mail reaches the gateway only if that service hands it "
                          "back and the rule's header exception then matches it",
                          rule.name)
            continue
        yield Finding("L-SHADOWED-ROUTE", E, "can match unmarked mail above the routing "
                      "rule and stop or divert it: the gateway is skipped", rule.name)


def _service_first(c: LintContext, rule: TransportRule) -> bool:
    """A vendor's "route to our service first" rule: it only routes, to an enabled
    rule-scoped connector of another service, and excepts that service's processed header
    (so the returning message goes on to the gateway routing rule)."""
    a = rule.actions
    name = a.route_message_outbound_connector
    if not name or name in c.gateway_connectors or a.reject or a.delete_message or (
            a.quarantine or a.redirect_message_to):
        return False
    connector = c.tenant.outbound_connector(name)
    excepts = rule.exceptions
    return (connector is not None and connector.enabled and connector.is_transport_rule_scoped
            and (excepts.header_contains is not None or excepts.header_matches is not None))


def _foreign_route(c: LintContext) -> Iterator[Finding]:
    mark = c.topology.gateway.marker.header
    consume = [i for i, r in enumerate(c.rules)
               if c.removes(r, mark) and not c.is_untrusted_strip(r)
               and (c.first_route is None or i > c.first_route)]
    if not consume:
        return
    for rule in c.rules[consume[0] + 1:]:
        name = rule.actions.route_message_outbound_connector
        if name and name not in c.gateway_connectors:
            yield Finding("L-FOREIGN-ROUTE-AFTER-CONSUME", E, "another routing rule after the "
                          "marker is consumed: its service would send mail back unmarked",
                          rule.name)


def _multi_route(c: LintContext) -> Iterator[Finding]:
    open_route: TransportRule | None = None
    for rule in c.rules:
        if not rule.actions.route_message_outbound_connector:
            continue
        if open_route is not None:
            yield Finding("L-MULTI-ROUTE", E, f"can route the same copy as '{open_route.name}' "
                          "(no StopRuleProcessing in between)", rule.name)
        open_route = None if rule.stop_rule_processing else rule


def _not_enforced(c: LintContext) -> Iterator[Finding]:
    """mailroute's rules, and any rule that routes to the gateway whatever its name."""
    routing = frozenset(c.routing)
    for i, rule in enumerate(c.rules):
        if (rule.name.startswith(PREFIX) or i in routing) and (
                not rule.active(c.now) or rule.mode is not RuleMode.ENFORCE):
            what = " (it routes to the gateway: mail skips it)" if i in routing else ""
            yield Finding("L-RULE-NOT-ENFORCED", E, "disabled, in audit mode or outside its "
                          f"activation window{what}", rule.name)


def _ambiguous(c: LintContext) -> Iterator[Finding]:
    seen: dict[str, str] = {}
    for conn in c.tenant.outbound_connectors:
        if not conn.enabled or conn.is_transport_rule_scoped:
            continue
        for pattern in conn.recipient_domains:
            key = pattern.lower()
            if key in seen:
                yield Finding("L-AMBIGUOUS-CONNECTOR", E, f"'{pattern}' also on '{seen[key]}'",
                              conn.name)
            seen.setdefault(key, conn.name)


def _hcw(c: LintContext) -> Iterator[Finding]:
    hcw_in = [x for x in c.tenant.inbound_connectors
              if x.connector_source is ConnectorSource.HYBRID_WIZARD]
    hcw_out = [x for x in c.tenant.outbound_connectors
               if x.connector_source is ConnectorSource.HYBRID_WIZARD]
    if not hcw_in and not hcw_out:
        return
    yield Finding("L-HCW-CONFLICT", W, "Hybrid Configuration Wizard connectors present; "
                  "mailroute never edits them")
    if c.beside:
        yield Finding("L-NON-EXCHANGE-HOP-IN-HYBRID", W, "a gateway beside EXO in a hybrid "
                      "tenant: no non-Exchange hop between on-premises Exchange and EXO")
    t1_star = c.topology.gateway.topology is TopologyKind.T1
    for conn in hcw_out:
        if t1_star and (conn.route_all_messages_via_on_premises or "*" in conn.recipient_domains):
            yield Finding("L-HCW-CONFLICT", E, "HCW connector competes with the T1 '*' "
                          "connector", conn.name)
    gw = c.topology.gateway
    for hcw in hcw_in:
        name = (hcw.tls_sender_certificate_name or "").lower()
        if name in (s.lower() for s in gw.sans) or set(hcw.sender_ip_addresses) & set(
                gw.egress_ips):
            yield Finding("L-HCW-CONFLICT", E, "gateway and HCW inbound connector share a "
                          "certificate or IP: attribution is ambiguous", hcw.name)


def _internal_relay_loop(c: LintContext) -> Iterator[Finding]:
    """An InternalRelay domain whose route leads back into EXO (docs/routing/steps.md, X).

    EXO routes a recipient of an InternalRelay domain unknown to the directory like an
    external one: the most specific outbound connector, else the domain's MX. Either way
    the message must leave the tenant; when it comes back instead, it loops.
    """
    gw = c.topology.gateway
    for domain in c.tenant.accepted_domains:
        if domain.type is not DomainType.INTERNAL_RELAY:
            continue
        name = domain.domain.lower()
        mx = c.tenant.mx_of(name)
        mx_back = mx in ("eop", "gateway") or (mx or "").lower() in gw.identities
        chosen, ambiguous = domain_connector(c.tenant, name, True)
        if chosen is None and not ambiguous and mx_back:
            yield Finding("L-INTERNALRELAY-LOOP", E, f"InternalRelay domain {name} has "
                          f"no connector and its MX leads back ({mx}): 5.4.14 loop", name)
        elif chosen is not None and chosen.name in c.gateway_connectors and (
                c.beside or mx_back or any(is_subdomain(name, d) for d in c.topology.org_domains)):
            # G8: the gateway hands org-domain mail (and in T2/T3 all mail) back to EXO,
            # which picks the same connector again.
            yield Finding("L-INTERNALRELAY-LOOP", E, f"InternalRelay domain {name} is served by "
                          f"'{chosen.name}' to the gateway, which hands it back to Exchange "
                          "Online: loop", name)


def _lockdown(c: LintContext) -> Iterator[Finding]:
    restricting = [x for x in c.tenant.inbound_connectors
                   if x.enabled and x.connector_type is ConnectorType.PARTNER
                   and (x.restrict_domains_to_certificate or x.restrict_domains_to_ip_addresses)]
    if c.topology.gateway.topology in (TopologyKind.T1, TopologyKind.T3) and not restricting:
        yield Finding("L-LOCKDOWN-MISSING", W, "no Partner connector restricts mail to the "
                      "gateway: senders can bypass the MX")
    initial = c.tenant.initial_domain.lower()
    for conn in restricting:
        assoc = [d.lower() for d in conn.associated_accepted_domains]
        if not assoc or initial in assoc:
            yield Finding("L-LOCKDOWN-ONMICROSOFT", E, "lock-down without "
                          "AssociatedAcceptedDomains (or listing the initial domain) rejects "
                          "mail to the onmicrosoft.com domain", conn.name)


def _return_connectors(c: LintContext) -> list[InboundConnector]:
    sans = c.topology.gateway.sans
    return [x for x in c.tenant.inbound_connectors
            if x.connector_type is ConnectorType.ON_PREMISES and x.tls_sender_certificate_name
            and any(cert_name_matches(x.tls_sender_certificate_name, s) for s in sans)]


def _csme(c: LintContext) -> Iterator[Finding]:
    returns = _return_connectors(c)
    outs = [x for x in c.tenant.outbound_connectors if x.name in c.gateway_connectors]
    values = {x.cloud_services_mail_enabled for x in returns} | {
        x.cloud_services_mail_enabled for x in outs}
    if len(values) > 1:
        yield Finding("L-CSME-MISMATCH", W, "CloudServicesMailEnabled differs between the "
                      "mailroute connectors")
    if any(x.cloud_services_mail_enabled for x in returns) and not (
            c.topology.gateway.strip_ms_headers):
        yield Finding("L-CSME-NEEDS-STRIP", E, "CloudServicesMailEnabled on the return "
                      "connector but the gateway keeps forged cross-premises headers")


def _enhanced_filtering(c: LintContext) -> Iterator[Finding]:
    ip_strip = any(c.is_untrusted_strip(r) and r.exceptions.sender_ip_ranges for r in c.rules)
    for conn in _return_connectors(c):
        if conn.enhanced_filtering and ip_strip:
            yield Finding("L-EF-WITH-IP-STRIP", W, "Enhanced Filtering on the return connector "
                          "while rule 01 trusts the last-hop IP", conn.name)
    ef = any(x.enhanced_filtering for x in c.tenant.inbound_connectors)
    for rule in c.rules:
        if ef and rule.actions.set_scl == -1:
            yield Finding("L-SCL-BYPASS-WITH-EF", W, "SetSCL -1 rule while Enhanced Filtering "
                          "is on", rule.name)


def _disclaimer(c: LintContext) -> Iterator[Finding]:
    if not c.beside:
        return
    mark = c.topology.gateway.marker.header.lower()
    consume = next((i for i, r in enumerate(c.rules)
                    if c.removes(r, mark) and not c.is_untrusted_strip(r)), len(c.rules))
    for i, rule in enumerate(c.rules):
        if rule.actions.apply_html_disclaimer is None:
            continue
        exc = rule.exceptions.header_matches
        excepted = exc is not None and exc.header.lower() == mark
        if i > consume or not excepted:
            yield Finding("L-DISCLAIMER-AFTER-GATEWAY", E, "the disclaimer rule can match mail "
                          "on its return pass from the gateway", rule.name)


def _journal(c: LintContext) -> Iterator[Finding]:
    if c.beside and any(j.enabled for j in c.tenant.org.journal_rules):
        yield Finding("L-JOURNAL-DUPLICATES", W, "journal rules produce one report per EXO "
                      "pass (two per message in T2/T3)")


def _t1_inbound(c: LintContext) -> Iterator[Finding]:
    if c.topology.gateway.topology is not TopologyKind.T1:
        return
    for conn in _return_connectors(c):
        yield Finding("L-T1-ONPREM-INBOUND", W, "T1 with an OnPremises inbound connector for "
                      "internet mail", conn.name)
    outs = [x for x in c.tenant.outbound_connectors if x.name in c.gateway_connectors
            and x.enabled and "*" in x.recipient_domains and not x.is_transport_rule_scoped]
    if not outs:
        yield Finding("L-T1-OUTBOUND-MISSING", E, "no enabled '*' outbound connector to the "
                      "gateway: outbound mail skips it")


def _dns(c: LintContext) -> Iterator[Finding]:
    gw = c.topology.gateway
    want = "eop" if gw.topology is TopologyKind.T2 else "gateway"
    for domain in c.topology.org_domains:
        mx = c.tenant.mx_of(domain)
        got = "gateway" if (mx or "").lower() in gw.identities else mx
        if got != want:
            yield Finding("L-MX", E, f"MX of {domain} is {mx or 'unknown'}, {gw.topology} needs "
                          f"{want}", domain)
        spf = dict(c.tenant.spf).get(domain)
        if spf is None:
            continue
        if gw.topology is TopologyKind.T1:
            missing = [ip for ip in gw.egress_ips if ip not in spf]
            if missing:
                yield Finding("L-SPF", W, f"SPF does not list the gateway ({', '.join(missing)})",
                              domain)
        elif "spf.protection.outlook.com" not in spf:
            yield Finding("L-SPF", W, "SPF lacks include:spf.protection.outlook.com (EXO "
                          "sends)", domain)


def _direct_send(c: LintContext) -> Iterator[Finding]:
    if not c.tenant.org.reject_direct_send:
        yield Finding("L-DIRECT-SEND", I_, "consider RejectDirectSend")
        return
    sans = c.topology.gateway.sans
    identified = any(x.enabled and (
        (x.tls_sender_certificate_name and any(
            cert_name_matches(x.tls_sender_certificate_name, s) for s in sans))
        or set(x.sender_ip_addresses) & set(c.topology.gateway.egress_ips))
        for x in c.tenant.inbound_connectors)
    if not identified:
        yield Finding("L-DIRECT-SEND", E, "RejectDirectSend while no connector identifies the "
                      "gateway by certificate or IP")


def _inbound_disabled(c: LintContext) -> Iterator[Finding]:
    for conn in c.tenant.inbound_connectors:
        if conn.name.startswith(PREFIX) and not conn.enabled:
            yield Finding("L-INBOUND-DISABLED", E, "mailroute inbound connector is disabled",
                          conn.name)


def _tls_name(c: LintContext) -> Iterator[Finding]:
    gw = c.topology.gateway
    for conn in c.tenant.inbound_connectors:
        if conn.name.startswith(PREFIX) and (conn.tls_sender_certificate_name or "").startswith(
                "*"):
            yield Finding("L-TLS-NAME", W, "wildcard TlsSenderCertificateName", conn.name)
    for identity in filter(None, (gw.tls_identity, gw.inbound_tls_identity)):
        if not any(cert_name_matches(s, identity) for s in gw.sans):
            yield Finding("L-TLS-NAME", E, f"{identity} is not among the gateway certificate's "
                          "names", "gateway")


def _addr_format(c: LintContext) -> Iterator[Finding]:
    for conn in c.tenant.inbound_connectors:
        for spec in conn.sender_ip_addresses:
            problem = _ipv4_problem(spec)
            if problem:
                yield Finding("L-ADDR-FORMAT", E, f"SenderIPAddresses {spec}: {problem}",
                              conn.name)
        for spec in conn.ef_skip_ips:
            if _private(spec):
                yield Finding("L-ADDR-FORMAT", E, f"EFSkipIPs {spec} is private", conn.name)
    for out in c.tenant.outbound_connectors:
        for host in out.smart_hosts:
            if ":" in host and not _is_ip(host):
                yield Finding("L-ADDR-FORMAT", E, f"smart host {host}: port 25 only", out.name)


def _egress(c: LintContext) -> Iterator[Finding]:
    """The gateway's egress addresses are what rule ``01`` trusts to carry markers."""
    for spec in c.topology.gateway.egress_ips:
        problem = _egress_problem(spec)
        if problem:
            yield Finding("L-EGRESS-IPS", E, f"egress_ips {spec}: {problem}", "gateway")


def _egress_problem(spec: str) -> str:
    try:
        net = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return "not an address or CIDR"
    if any(net.version == n.version and net.subnet_of(n) for n in _NOT_ROUTED):  # type: ignore[arg-type]
        return ("not a public address: Exchange Online sees the address the gateway's "
                "connections leave from, so every marker would be removed")
    if net.prefixlen < (24 if net.version == 4 else 48):
        return "wider than /24 (IPv6 /48): others' mail could keep a marker"
    if any(net.version == 4 and net.overlaps(ipaddress.IPv4Network(r)) for r in EXO_IP_RANGES):
        return "inside Exchange Online's own ranges, which every tenant sends from"
    return ""


def _ipv4_problem(spec: str) -> str:
    try:
        net = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return "not an address or CIDR"
    if net.version != 4:
        return "IPv6 is not accepted"
    return "wider than /24" if net.prefixlen < 24 else ""


def _private(spec: str) -> bool:
    try:
        net = ipaddress.ip_network(spec.partition("-")[0].strip(), strict=False)
    except ValueError:
        return False
    return any(net.version == p.version and net.subnet_of(p) for p in _PRIVATE)  # type: ignore[arg-type]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _limits(c: LintContext) -> Iterator[Finding]:
    if len(c.rules) > 300:
        yield Finding("L-RULE-LIMITS", W, f"{len(c.rules)} rules: the service allows 300")


def _org_domains(c: LintContext) -> Iterator[Finding]:
    for domain in c.topology.org_domains:
        if not any(is_subdomain(domain, d) for d in c.tenant.domains):
            yield Finding("L-ORG-DOMAIN", E, f"{domain} is not an accepted domain", domain)


def _verify_placeholders(c: LintContext) -> Iterator[Finding]:
    """The verify script needs a real external mailbox for Validate-OutboundConnector."""
    probe = c.topology.exo_config.probe_recipient
    if is_placeholder_address(probe):
        yield Finding("L-VERIFY-PLACEHOLDER", W, f"probe_recipient {probe or '(empty)'} is a "
                      "placeholder: the verify script's Validate-OutboundConnector tests "
                      "nothing until [exo_config] probe_recipient names a real external "
                      "mailbox", "exo_config")


CHECKS: tuple[Check, ...] = (
    _cert_domain, _onprem_by_ip, _partner_ip_and_cert, _route_connector, _marker_exception,
    _marker_before_route, _untrusted_strip, _bypass_strip, _shadowed, _foreign_route,
    _multi_route, _not_enforced, _ambiguous, _hcw, _internal_relay_loop, _lockdown, _csme,
    _enhanced_filtering, _disclaimer, _journal, _t1_inbound, _dns, _direct_send,
    _inbound_disabled, _tls_name, _addr_format, _egress, _limits, _org_domains,
    _verify_placeholders,
)


def lint(topology: Topology, tenant: Tenant | None = None, *,
         now: datetime | None = None) -> tuple[Finding, ...]:
    """Run every check over ``tenant`` (default: the topology with its plan deployed)."""
    context = _context(topology, tenant if tenant is not None else deployed(topology), now)
    return tuple(f for check in CHECKS for f in check(context))


def errors(findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """The findings of severity E (which refuse generation)."""
    return tuple(f for f in findings if f.severity is Severity.ERROR)
