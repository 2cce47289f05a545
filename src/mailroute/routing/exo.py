"""One Exchange Online pass as a pure function (steps E1-X of docs/routing/steps.md).

``decide_exo`` runs, in order: connector identification (E1), attribution (E2/E3), partner
restrictions (E4), the Direct Send block (E5), the ingress header firewall (E6), recipient
resolution and group expansion (2.3), transport rules (2.4, :mod:`.rules`) and routing per
recipient of every copy (2.5). It never performs I/O; the clock is an argument.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

from mailroute.gateway.decide import TENANT_HEADER
from mailroute.item import Envelope
from mailroute.records import record
from mailroute.results import Reply
from mailroute.routing.decide import Route, RouteKind, TraceStep
from mailroute.routing.hop import (
    Connection,
    Hop,
    MessageFacts,
    MessageFlag,
    Source,
    remove_headers,
    set_header,
)
from mailroute.routing.match import (
    cert_name_matches,
    domain_of,
    domain_pattern_matches,
    ip_in_ranges,
)
from mailroute.routing.model import (
    ConnectorType,
    DomainType,
    InboundConnector,
    JournalScope,
    OutboundConnector,
    Recipient,
    RecipientKind,
    Tenant,
    parse_reply,
)
from mailroute.routing.rules import Addressee, RuleContext, RuleCopy, run_rules

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "Attribution",
    "ExoCopy",
    "ExoDecision",
    "Generated",
    "decide_exo",
    "domain_connector",
    "egress_message",
    "ndr_hop",
]

ORG_PREFIXES = ("x-ms-exchange-organization-", "x-ms-exchange-forest-")
CROSS_PREFIX = "x-ms-exchange-crosspremises-"
FANOUT_HEADER = "X-MS-Exchange-UnifiedGroup-SubmittedViaGroupAddress"
JOURNAL_HEADER = "X-MS-Exchange-Organization-Journal-Report"
_LOCAL_KINDS = frozenset({RecipientKind.MAILBOX, RecipientKind.PUBLIC_FOLDER,
                          RecipientKind.UNIFIED_GROUP})
_GROUP_KINDS = frozenset({RecipientKind.DISTRIBUTION_GROUP})


class Attribution(enum.StrEnum):
    """``MessageDirectionality`` EXO assigns to the message."""

    ORIGINATING = "Originating"
    INCOMING = "Incoming"


@record(frozen=True)
class ExoCopy:
    """One copy leaving the rule pass: its recipients' routes and the message as it is now."""

    routes: tuple[Route, ...]
    message: MessageFacts
    rules: tuple[str, ...]


@record(frozen=True)
class Generated:
    """A new message EXO creates on this pass (group fan-out, forward, journal report, NDR).

    Attributes:
        kind: ``group fan-out``, ``forward``, ``journal report`` or ``ndr``.
        hop: the new message as it is submitted.
        source: for copies of the message itself (fan-out, forward), the recipient address
            (as the pass received it) whose delivery produced the copy; ``""`` otherwise.
    """

    kind: str
    hop: Hop
    source: str = ""


@record(frozen=True)
class ExoDecision:
    """Everything one EXO pass decided, with its trace.

    Attributes:
        rejected: recipients refused in the SMTP session (kind ``REJECT``).
        attribution: Originating or Incoming (``None`` when every recipient was refused).
        connector: the inbound connector that attributed or matched the session.
        authenticated: whether FromScope/SentToScope count the connection as authenticated.
        auth_as: the ``AuthAs`` value stamped.
        copies: the forks after the rules, each with per-recipient routes.
        generated: messages EXO creates on this pass.
        trace: the explained steps.
    """

    rejected: tuple[Route, ...]
    attribution: Attribution | None
    connector: str | None
    authenticated: bool
    auth_as: str
    copies: tuple[ExoCopy, ...]
    generated: tuple[Generated, ...]
    trace: tuple[TraceStep, ...]

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every route of every copy, then the SMTP rejections."""
        return (*(r for c in self.copies for r in c.routes), *self.rejected)


class _Session(NamedTuple):
    attribution: Attribution
    connector: InboundConnector | None
    authenticated: bool
    auth_as: str
    accepted: tuple[str, ...]
    rejected: tuple[Route, ...]


def decide_exo(hop: Hop, tenant: Tenant, *, now: datetime | None = None) -> ExoDecision:
    """Decide one EXO pass of ``hop`` in ``tenant``.

    Args:
        hop: the message as it arrives (envelope, connection, message facts).
        tenant: the tenant model.
        now: the clock, for rule activation windows (``None``: every enabled rule is active).

    Returns:
        The decision with SMTP rejections, forks, per-recipient routes and the trace.
    """
    trace: list[TraceStep] = []
    session = _receive(hop, tenant, trace)
    if not session.accepted:
        return ExoDecision(session.rejected, None, _name(session.connector), False, "", (),
                           (), tuple(trace))
    message = _firewall(hop, session, trace)
    generated: list[Generated] = []
    addressees, entries = _resolve(tenant, session.accepted, trace)
    ctx = RuleContext(tenant, hop.envelope.mail_from, session.authenticated,
                      hop.connection.client_ip, now)
    rule_copies = run_rules(ctx, addressees, message, trace)
    copies = tuple(_route_copy(tenant, c, entries, trace) for c in rule_copies)
    for copy in copies:
        generated.extend(_after_routing(tenant, hop, copy))
    return ExoDecision(session.rejected, session.attribution, _name(session.connector),
                       session.authenticated, session.auth_as, copies, tuple(generated),
                       tuple(trace))


def _name(connector: InboundConnector | None) -> str | None:
    return connector.name if connector is not None else None


# --- E1-E5: receiving ------------------------------------------------------------------------

def _receive(hop: Hop, tenant: Tenant, trace: list[TraceStep]) -> _Session:
    source = hop.connection.source
    rcpts = tuple(r.lower() for r in hop.envelope.rcpt_to)
    if source in (Source.MAILBOX, Source.EXO):
        what = "mailbox submission" if source is Source.MAILBOX else "EXO-generated copy"
        trace.append(TraceStep("E2", f"{what}: Originating, authenticated"))
        return _Session(Attribution.ORIGINATING, None, True, "Internal", rcpts, ())
    cert_hits, ip_hits = _identify(hop.connection, tenant)
    onprem = _pick_onprem(cert_hits, ip_hits)
    for c in (*cert_hits, *ip_hits):
        by = "certificate" if c in cert_hits else "IP"
        trace.append(TraceStep("E1", f"{c.connector_type} connector matches by {by}",
                               connector=c.name))
    if not cert_hits and not ip_hits:
        trace.append(TraceStep("E1", "no inbound connector matches the connection"))
    how = _attribute(hop, tenant, onprem, cert_hits) if onprem is not None else None
    if onprem is not None and how is not None:
        trace.append(TraceStep("E2", f"Originating via OnPremises connector ({how}-attributed)",
                               connector=onprem.name))
        return _originating(hop, tenant, onprem, how, rcpts, trace)
    if onprem is not None:
        trace.append(TraceStep("E2", "OnPremises connector matched but cannot attribute: "
                               "neither certificate, sender nor recipients in accepted domains",
                               connector=onprem.name))
    return _incoming(hop, tenant, onprem, cert_hits, ip_hits, rcpts, trace)


def _identify(conn: Connection, tenant: Tenant,
              ) -> tuple[tuple[InboundConnector, ...], tuple[InboundConnector, ...]]:
    cert: list[InboundConnector] = []
    ips: list[InboundConnector] = []
    for c in tenant.inbound_connectors:
        if not c.enabled:
            continue
        if (conn.tls and c.tls_sender_certificate_name
                and any(cert_name_matches(c.tls_sender_certificate_name, n)
                        for n in conn.peer_cert_names)):
            cert.append(c)
        elif c.sender_ip_addresses and ip_in_ranges(conn.client_ip, c.sender_ip_addresses):
            ips.append(c)
    return tuple(cert), tuple(ips)


def _specificity(c: InboundConnector) -> tuple[int, int]:
    name = c.tls_sender_certificate_name or ""
    return (0 if name.startswith("*") else 1, len(name))


def _pick_onprem(cert_hits: tuple[InboundConnector, ...],
                 ip_hits: tuple[InboundConnector, ...]) -> InboundConnector | None:
    onprem_cert = [c for c in cert_hits if c.connector_type is ConnectorType.ON_PREMISES]
    if onprem_cert:
        return max(onprem_cert, key=_specificity)
    onprem_ip = [c for c in ip_hits if c.connector_type is ConnectorType.ON_PREMISES]
    return onprem_ip[0] if onprem_ip else None


def _attribute(hop: Hop, tenant: Tenant, onprem: InboundConnector,
               cert_hits: tuple[InboundConnector, ...]) -> str | None:
    if onprem in cert_hits and any(tenant.accepted_domain(n.lstrip("*.")) is not None
                                   for n in hop.connection.peer_cert_names):
        return "certificate"
    if tenant.accepted_domain(domain_of(hop.envelope.mail_from)) is not None:
        return "sender"
    if all(tenant.accepted_domain(domain_of(r)) is not None for r in hop.envelope.rcpt_to):
        return "recipient"
    return None


def _originating(hop: Hop, tenant: Tenant, onprem: InboundConnector, how: str,
                 rcpts: tuple[str, ...], trace: list[TraceStep]) -> _Session:
    accepted: list[str] = []
    rejected: list[Route] = []
    relay_ok = how in ("certificate", "sender")
    for rcpt in rcpts:
        if relay_ok or tenant.accepted_domain(domain_of(rcpt)) is not None:
            accepted.append(rcpt)
        else:
            reply = Reply(550, "5.7.64", "TenantAttribution; Relay Access Denied")
            rejected.append(Route(rcpt, RouteKind.REJECT, reply=reply))
            trace.append(TraceStep("E2", f"{rcpt}: relay refused ({how}-attributed)",
                                   connector=onprem.name))
    auth_as = "Anonymous"
    if onprem.treat_messages_as_internal and not onprem.cloud_services_mail_enabled and (
            tenant.accepted_domain(domain_of(hop.envelope.mail_from)) is not None):
        auth_as = "Internal"
    if onprem.cloud_services_mail_enabled and any(
            k.lower() == CROSS_PREFIX + "authas" and v.lower() == "internal"
            for k, v in hop.message.headers):
        auth_as = "Internal"
    return _Session(Attribution.ORIGINATING, onprem, True, auth_as, tuple(accepted),
                    tuple(rejected))


def _incoming(hop: Hop, tenant: Tenant, onprem: InboundConnector | None,
              cert_hits: tuple[InboundConnector, ...], ip_hits: tuple[InboundConnector, ...],
              rcpts: tuple[str, ...], trace: list[TraceStep]) -> _Session:
    accepted: list[str] = []
    rejected: list[Route] = []
    sender_domain = domain_of(hop.envelope.mail_from)
    direct_send = (tenant.org.reject_direct_send and not cert_hits and not ip_hits
                   and tenant.accepted_domain(sender_domain) is not None)
    for rcpt in rcpts:
        reply = _incoming_refusal(hop, tenant, onprem, cert_hits, ip_hits, rcpt, direct_send)
        if reply is None:
            accepted.append(rcpt)
            continue
        rejected.append(Route(rcpt, RouteKind.REJECT, reply=reply))
        trace.append(TraceStep(_REFUSAL_STEP.get(reply.status, "E3"), f"{rcpt}: {reply}"))
    partner = next((c for c in (*cert_hits, *ip_hits)), None)
    if accepted:
        trace.append(TraceStep("E3", "Incoming for the tenant (anonymous)", connector=_name(
            partner)))
    return _Session(Attribution.INCOMING, partner, False, "Anonymous", tuple(accepted),
                    tuple(rejected))


_REFUSAL_STEP = {"5.7.51": "E4", "5.7.68": "E5"}


def _incoming_refusal(hop: Hop, tenant: Tenant, onprem: InboundConnector | None,
                      cert_hits: tuple[InboundConnector, ...],
                      ip_hits: tuple[InboundConnector, ...], rcpt: str,
                      direct_send: bool) -> Reply | None:
    domain = domain_of(rcpt)
    accepted = tenant.accepted_domain(domain)
    if accepted is None:
        if onprem is not None:
            return Reply(550, "5.7.64", "TenantAttribution; Relay Access Denied")
        return Reply(550, "5.7.1", "Unable to relay")
    if accepted.type is DomainType.AUTHORITATIVE and tenant.directory.lookup(rcpt) is None:
        return Reply(550, "5.4.1", "Recipient address rejected: Access denied")
    sender_domain = domain_of(hop.envelope.mail_from)
    for c in tenant.inbound_connectors:
        if not (c.enabled and c.connector_type is ConnectorType.PARTNER):
            continue
        if not (c.restrict_domains_to_certificate or c.restrict_domains_to_ip_addresses):
            continue
        if not _sender_domain_applies(c, sender_domain):
            continue
        if c.associated_accepted_domains and domain not in (
                d.lower() for d in c.associated_accepted_domains):
            continue
        # each restriction on its own (New-InboundConnector): a certificate match does not
        # stand in for an address the connector does not list
        ok_cert = not c.restrict_domains_to_certificate or c in cert_hits
        ok_ip = not c.restrict_domains_to_ip_addresses or ip_in_ranges(
            hop.connection.client_ip, c.sender_ip_addresses)
        if not (ok_cert and ok_ip):
            return Reply(550, "5.7.51", f"TenantInboundAttribution; rejected by connector "
                         f"'{c.name}'")
    for c in (*cert_hits, *ip_hits):
        if c.require_tls and not hop.connection.tls:
            return Reply(550, "5.7.51", f"TenantInboundAttribution; TLS required by '{c.name}'")
    if direct_send:
        return Reply(550, "5.7.68", "TenantInboundAttribution; Direct Send not allowed for "
                     "this organization")
    return None


def _sender_domain_applies(c: InboundConnector, sender_domain: str) -> bool:
    # "*" is taken to match the null sender too (assumption 10 of docs/routing/assumptions.md).
    return any(p == "*" or (sender_domain and domain_pattern_matches(p, sender_domain,
                                                                     apex=True))
               for p in c.sender_domains)


# --- E6: header firewall -------------------------------------------------------------------

def _firewall(hop: Hop, session: _Session, trace: list[TraceStep]) -> MessageFacts:
    message = hop.message
    if hop.connection.source is Source.EXO:
        return message
    headers = message.headers
    if hop.connection.source is Source.MAILBOX:
        headers = remove_headers(headers, prefixes=(*ORG_PREFIXES, CROSS_PREFIX))
        trace.append(TraceStep("E6", "submission: organization, forest and cross-premises "
                               "headers removed"))
    else:
        headers = remove_headers(headers, prefixes=ORG_PREFIXES)
        connector = session.connector
        promote = (connector is not None and connector.connector_type is ConnectorType.ON_PREMISES
                   and connector.cloud_services_mail_enabled
                   and session.attribution is Attribution.ORIGINATING)
        if promote:
            # AuthAs and MessageDirectionality are stamped below from this decision.
            cross = [(k, v) for k, v in headers if k.lower().startswith(CROSS_PREFIX)
                     and k.lower()[len(CROSS_PREFIX):] not in ("authas",
                                                               "messagedirectionality")]
            headers = remove_headers(headers, prefixes=(CROSS_PREFIX,))
            headers = (*headers, *(("X-MS-Exchange-Organization-" + k[len(CROSS_PREFIX):], v)
                                   for k, v in cross))
            trace.append(TraceStep("E6", f"CrossPremises headers promoted ({len(cross)})",
                                   connector=connector.name if connector else None))
        else:
            headers = remove_headers(headers, prefixes=(CROSS_PREFIX,))
        trace.append(TraceStep("E6", "organization/forest headers removed at ingress"))
    # Organization headers were removed above, so the stamps can simply be appended.
    headers = (*headers, ("X-MS-Exchange-Organization-MessageDirectionality",
                          str(session.attribution)),
               ("X-MS-Exchange-Organization-AuthAs", session.auth_as))
    return message.with_headers(headers)


# --- RES: recipient resolution -------------------------------------------------------------

def _resolve(tenant: Tenant, accepted: tuple[str, ...], trace: list[TraceStep],
             ) -> tuple[tuple[Addressee, ...], dict[str, Recipient | None]]:
    out: dict[str, Addressee] = {}
    entries: dict[str, Recipient | None] = {}
    pending = [(r, r) for r in accepted]
    seen: set[str] = set()
    while pending:
        address, original = pending.pop(0)
        if address in seen:
            continue
        seen.add(address)
        entry = tenant.directory.lookup(address)
        if entry is not None and entry.kind in _GROUP_KINDS:
            trace.append(TraceStep("RES", f"group {entry.primary} expanded to "
                                   f"{len(entry.members)} member(s)"))
            pending.extend((m.lower(), original) for m in entry.members)
            continue
        if entry is not None and entry.kind is RecipientKind.UNIFIED_GROUP:
            trace.append(TraceStep("RES", f"Microsoft 365 group {entry.primary}: group mailbox "
                                   "receives; member copies are new submissions once it is "
                                   "delivered"))
        target = _target(entry, address)
        in_org = (entry is not None and entry.kind in _LOCAL_KINDS) or (
            tenant.accepted_domain(domain_of(target)) is not None)
        out.setdefault(target, Addressee(target, original, in_org))
        entries[target] = entry
    return tuple(out.values()), entries


def _target(entry: Recipient | None, address: str) -> str:
    if entry is None:
        return address
    if entry.kind in (RecipientKind.MAIL_CONTACT, RecipientKind.MAIL_USER) and (
            entry.external_address):
        return entry.external_address.lower()
    return entry.primary.lower()


def _fanout(hop: Hop, group: Recipient, message: MessageFacts,
            source: str) -> list[Generated]:
    headers = set_header(message.headers, FANOUT_HEADER, group.primary)
    facts = message.evolve(headers=headers, flags=message.flags | {MessageFlag.GROUP_FANOUT})
    members = tuple(m.lower() for m in group.members)
    if not members:
        return []
    env = Envelope(mail_from=hop.envelope.mail_from, rcpt_to=members)
    return [Generated("group fan-out", Hop(envelope=env, connection=_EXO_SELF, message=facts,
                                           pass_no=hop.pass_no + 1), source)]


_EXO_SELF = Connection(source=Source.EXO)


# --- X: routing ------------------------------------------------------------------------------

def _route_copy(tenant: Tenant, copy: RuleCopy, entries: dict[str, Recipient | None],
                trace: list[TraceStep]) -> ExoCopy:
    routes = tuple(_route_one(tenant, copy, a, entries[a.address] if a.address in entries
                              else tenant.directory.lookup(a.address))
                   for a in copy.recipients)
    for route in routes:
        where = f" -> {route.next_hop}" if route.next_hop else ""
        why = f" ({route.reply})" if route.reply else ""
        trace.append(TraceStep("X", f"{route.recipient}: {route.kind}{where}{why}",
                               connector=route.connector))
    return ExoCopy(routes, copy.message, copy.applied)


def _route_one(tenant: Tenant, copy: RuleCopy, who: Addressee,
               entry: Recipient | None) -> Route:
    route = _route_kind(tenant, copy, who, entry)
    return route if who.original == who.address else route._replace(original=who.original)


def _route_kind(tenant: Tenant, copy: RuleCopy, who: Addressee,
                entry: Recipient | None) -> Route:
    address = who.address
    if copy.terminal is not None:
        return Route(address, copy.terminal.kind, reply=copy.terminal.reply)
    if copy.connector:
        return _via_rule_connector(tenant, copy.connector, address)
    if entry is not None and entry.kind in _LOCAL_KINDS and address == entry.primary.lower():
        if entry.delivery_failure:
            return Route(address, RouteKind.NDR, f"mailbox:{address}",
                         reply=parse_reply(entry.delivery_failure))
        if entry.forwarding_smtp and not entry.deliver_and_forward:
            return Route(address, RouteKind.FORWARD, f"forward:{entry.forwarding_smtp.lower()}")
        return Route(address, RouteKind.LOCAL, f"mailbox:{address}")
    domain = domain_of(address)
    accepted = tenant.accepted_domain(domain)
    if accepted is not None and accepted.type is DomainType.AUTHORITATIVE:
        return Route(address, RouteKind.NDR, reply=Reply(
            550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found"))
    chosen, ambiguous = domain_connector(tenant, domain, accepted is not None)
    if ambiguous:
        return Route(address, RouteKind.AMBIGUOUS, reply=Reply(
            451, "4.4.0", "two outbound connectors of equal specificity (model picks none)"))
    if chosen is not None:
        return Route(address, RouteKind.CONNECTOR, _next_hop(chosen, domain), chosen.name)
    return Route(address, RouteKind.MX, f"mx:{domain}")


def _via_rule_connector(tenant: Tenant, name: str, address: str) -> Route:
    connector = tenant.outbound_connector(name)
    if connector is None or not connector.enabled or not connector.is_transport_rule_scoped:
        state = ("missing" if connector is None else
                 "disabled" if not connector.enabled else "not rule-scoped")
        return Route(address, RouteKind.NDR, connector=name, reply=Reply(
            550, "5.4.4", f"rule routes to a connector that is {state} (model)"))
    return Route(address, RouteKind.CONNECTOR, _next_hop(connector, domain_of(address)), name)


def _next_hop(connector: OutboundConnector, domain: str) -> str:
    if not connector.use_mx_record and connector.smart_hosts:
        return connector.smart_hosts[0].lower()
    return f"mx:{domain}"


def _rank(connector: OutboundConnector, domain: str, accepted: bool) -> tuple[int, int] | None:
    best: tuple[int, int] | None = None
    for pattern in connector.recipient_domains:
        if not domain_pattern_matches(pattern, domain):
            continue
        rank = ((3, 0) if pattern.lower() == domain else
                (0, 0) if pattern == "*" else (1, len(pattern)))
        best = rank if best is None or rank > best else best
    if accepted and connector.all_accepted_domains:
        best = max(best or (2, 0), (2, 0))
    return best


def domain_connector(tenant: Tenant, domain: str, accepted: bool,
                     ) -> tuple[OutboundConnector | None, bool]:
    """The enabled, non-rule-scoped outbound connector EXO picks for ``domain`` (step X).

    Exact domain beats AllAcceptedDomains (``accepted`` domains only), which beats the
    longest wildcard, ``*`` last. Returns ``(connector, False)``, ``(None, False)`` when none
    matches (MX), or ``(None, True)`` when two tie (the model picks none).
    """
    ranked = [(rank, c) for c in tenant.outbound_connectors
              if c.enabled and not c.is_transport_rule_scoped
              and (rank := _rank(c, domain, accepted)) is not None]
    if not ranked:
        return None, False
    top = max(rank for rank, _ in ranked)
    best = [c for rank, c in ranked if rank == top]
    return (best[0], False) if len(best) == 1 else (None, True)


# --- after routing: forwarding, journal reports, NDRs ---------------------------------------

def _after_routing(tenant: Tenant, hop: Hop, copy: ExoCopy) -> list[Generated]:
    out: list[Generated] = []
    for route in copy.routes:
        if route.kind not in (RouteKind.LOCAL, RouteKind.FORWARD):
            continue
        entry = tenant.directory.lookup(route.recipient)
        source = route.original or route.recipient
        if entry is not None and entry.kind is RecipientKind.UNIFIED_GROUP:
            # The group mailbox got its copy: only now do the members' copies exist, so a
            # pass that routes the group elsewhere (to the gateway) makes none.
            out.extend(_fanout(hop, entry, copy.message, source))
        if entry is not None and entry.forwarding_smtp:
            env = Envelope(mail_from=entry.primary, rcpt_to=(entry.forwarding_smtp,))
            facts = copy.message.evolve(flags=copy.message.flags | {MessageFlag.AUTO_FORWARD})
            out.append(Generated("forward", Hop(envelope=env, connection=_EXO_SELF,
                                                message=facts, pass_no=hop.pass_no + 1), source))
    ndr = [r for r in copy.routes if r.kind is RouteKind.NDR and r.reply is not None]
    if ndr and ndr[0].reply is not None:
        made = ndr_hop(tenant, hop.envelope, copy.message, ndr[0].reply, hop.pass_no)
        if made is not None:
            out.append(Generated("ndr", made))
    out.extend(_journal(tenant, hop, copy))
    return out


def _journal(tenant: Tenant, hop: Hop, copy: ExoCopy) -> list[Generated]:
    if not tenant.org.journal_rules or copy.message.has(MessageFlag.JOURNAL_REPORT):
        return []
    live = [r for r in copy.routes if r.kind in (RouteKind.LOCAL, RouteKind.CONNECTOR,
                                                 RouteKind.MX, RouteKind.FORWARD)]
    sender_in = tenant.accepted_domain(domain_of(hop.envelope.mail_from)) is not None
    out: list[Generated] = []
    for rule in tenant.org.journal_rules:
        if not rule.enabled:
            continue
        hits = [r for r in live if _journal_scope(rule.scope, sender_in, tenant, r.recipient)
                and (rule.recipient is None
                     or rule.recipient.lower() in (r.recipient, hop.envelope.mail_from.lower()))]
        if not hits:
            continue
        headers = ((JOURNAL_HEADER, "1"), ("Content-Type", "multipart/mixed"))
        facts = MessageFacts(headers=headers, message_id=f"<journal.{copy.message.message_id}>",
                             flags=frozenset({MessageFlag.JOURNAL_REPORT}))
        env = Envelope(mail_from="", rcpt_to=(rule.journal_email_address,))
        out.append(Generated("journal report", Hop(envelope=env, connection=_EXO_SELF,
                                                   message=facts, pass_no=hop.pass_no + 1)))
    return out


def _journal_scope(scope: JournalScope, sender_in: bool, tenant: Tenant, rcpt: str) -> bool:
    rcpt_in = tenant.accepted_domain(domain_of(rcpt)) is not None
    if scope is JournalScope.INTERNAL:
        return sender_in and rcpt_in
    if scope is JournalScope.EXTERNAL:
        return not (sender_in and rcpt_in)
    return True


def ndr_hop(tenant: Tenant, envelope: Envelope, message: MessageFacts, reply: Reply,
            pass_no: int) -> Hop | None:
    """The NDR EXO sends to the sender of ``envelope``; ``None`` for null-sender mail.

    A DSN is never answered with a DSN (RFC 5321 section 4.5.5).
    """
    if not envelope.mail_from or message.has(MessageFlag.DSN):
        return None
    headers = (("From", f"postmaster@{tenant.initial_domain}"),
               ("Content-Type", "multipart/report; report-type=delivery-status"),
               ("X-Mailroute-Ndr-Reason", str(reply)))
    facts = MessageFacts(headers=headers, message_id=f"<ndr.{message.message_id.strip('<>')}>",
                         from_addrs=(f"postmaster@{tenant.initial_domain}",),
                         flags=frozenset({MessageFlag.DSN}))
    env = Envelope(mail_from="", rcpt_to=(envelope.mail_from,))
    return Hop(envelope=env, connection=_EXO_SELF, message=facts, pass_no=pass_no + 1)


def egress_message(tenant: Tenant, message: MessageFacts,
                   connector: OutboundConnector | None) -> MessageFacts:
    """The message as it leaves EXO: header firewall, CrossTenant stamp.

    With ``CloudServicesMailEnabled`` on the connector, organization headers travel as
    ``X-MS-Exchange-CrossPremises-*``; otherwise they are dropped.
    """
    headers = message.headers
    if connector is not None and connector.cloud_services_mail_enabled:
        org = [(k, v) for k, v in headers if k.lower().startswith(ORG_PREFIXES[0])]
        headers = (*headers, *(("X-MS-Exchange-CrossPremises-" + k[len(ORG_PREFIXES[0]):], v)
                               for k, v in org))
    headers = remove_headers(headers, prefixes=ORG_PREFIXES)
    headers = set_header(headers, TENANT_HEADER, tenant.tenant_id)
    return message.evolve(headers=headers, received_count=message.received_count + 1)
