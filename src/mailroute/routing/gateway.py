"""The gateway's procedure for one received message in the simulator, G1-G8 of
docs/routing/steps.md.

G1-G3 (source, loop guards, marker verdict, header hygiene) are the one gateway decision,
:func:`mailroute.gateway.decide_arrival`, that the runtime ``marker-verify`` filter makes
too, with the settings :func:`gateway_settings` derives from the topology. This module adds
what only the simulated service does: never bounce a bounce (G4), split recipients by
direction (G5, :func:`mailroute.gateway.flow_of`), ask the policy (G6), mint the marker last
(G7) and pick the next hop (G8). The processed-message store is passed in; the decision
returns the key and fingerprint to record when the message was sent on.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

from mailroute.gateway.decide import (
    TENANT_HEADER,
    Arrival,
    ArrivalDecision,
    ArrivalSource,
    decide_arrival,
    exo_by_connection,
)
from mailroute.gateway.flow import (
    LEAVING,
    RELAY_REFUSAL,
    TENANT_RELAY_REFUSAL,
    Flow,
    direction_of,
    domain_of,
    flow_of,
    is_inside,
    may_relay,
)
from mailroute.gateway.settings import GatewaySettings
from mailroute.gateway.spoof import SpoofAction, SpoofFacts, SpoofPolicy, decide_spoof
from mailroute.marker.binding import normalise_message_id
from mailroute.marker.guard import processed_key
from mailroute.marker.verify import MarkerCheck, Windows
from mailroute.records import record
from mailroute.results import Reply
from mailroute.routing.decide import Route, RouteKind, TraceStep
from mailroute.routing.hop import (
    Hop,
    MessageFacts,
    MessageFlag,
    header_values,
    set_header,
)
from mailroute.routing.markers import MarkerCodec
from mailroute.routing.topology import Topology, TopologyKind

if TYPE_CHECKING:
    from mailroute.item import ProcessedStore

__all__ = [
    "EXO_TLS_NAME",
    "RELAY_REFUSAL",
    "TENANT_RELAY_REFUSAL",
    "Flow",
    "GatewayDecision",
    "GatewayPolicy",
    "GatewaySplit",
    "GatewayTransform",
    "NextHopChoice",
    "ProcessedRecord",
    "decide_gateway",
    "exo_by_connection",
    "gateway_next_hop",
    "gateway_settings",
    "may_relay",
]

EXO_TLS_NAME = "*.mail.protection.outlook.com"
def gateway_settings(topology: Topology) -> GatewaySettings:
    """The gateway settings a topology implies: what ``marker-verify`` must be set to.

    Exchange Online of the topology's tenant is recognised by its certificate name, its
    egress ranges and the tenant id; the marker's windows, the loop guards and the header
    hygiene come from the gateway section.
    """
    return _VIEWS.of(topology)[0]


def _settings_of(topology: Topology) -> GatewaySettings:
    gw = topology.gateway
    return GatewaySettings(
        marker_field=gw.marker.header,
        windows=Windows(max_age=gw.marker.max_age_s, loop_window=gw.loop_window_s,
                        max_future_skew=gw.marker.max_future_skew_s),
        return_path_tls_names=(EXO_TLS_NAME,), return_path_networks=gw.exo_ip_ranges,
        tenant_id=topology.tenant.tenant_id, max_received=gw.max_received,
        processed_limit=gw.processed_limit, processed_ttl=gw.processed_cache_ttl_s,
        strip_ms_headers=gw.strip_ms_headers, strip_tenant_header=True,
        bypass_header=gw.bypass_header)


@record(frozen=True)
class ProcessedRecord:
    """What to record in the processed-message store once the message was sent on."""

    key: str
    fingerprint: str
    ttl: int


class GatewayPolicy(Protocol):
    """The gateway's pipelines, reduced to their verdict: a refusal or ``None``."""

    def __call__(self, flow: Flow, recipients: tuple[str, ...],
                 message: MessageFacts) -> Reply | None:
        """Return the in-session refusal for these recipients, or ``None`` to accept."""
        ...


class GatewayTransform(Protocol):
    """The gateway's pipelines, reduced to what they change: the message facts after them."""

    def __call__(self, flow: Flow, recipient: str, message: MessageFacts) -> MessageFacts:
        """Return the message as the gateway sends it on to ``recipient``."""
        ...


def _changes(transform: GatewayTransform, flow: Flow, rcpts: list[str],
             message: MessageFacts, trace: list[TraceStep],
             ) -> list[tuple[MessageFacts, tuple[str, ...]]]:
    """The recipients grouped by the message the transform makes for them (G5/G6)."""
    groups: dict[frozenset[MessageFlag], tuple[MessageFacts, list[str]]] = {}
    for rcpt in rcpts:
        changed = transform(flow, rcpt, message)
        groups.setdefault(changed.flags, (changed, []))[1].append(rcpt)
    for changed, members in groups.values():
        if changed.flags != message.flags:
            gained = ", ".join(sorted(changed.flags - message.flags)) or "none"
            lost = ", ".join(sorted(message.flags - changed.flags)) or "none"
            trace.append(TraceStep("G6", f"{', '.join(members)}: message changed (flags "
                                         f"set: {gained}; cleared: {lost})"))
    return [(changed, tuple(members)) for changed, members in groups.values()]


@record(frozen=True)
class GatewaySplit:
    """One message the gateway sends on (G5/G8).

    Attributes:
        recipients: its envelope recipients.
        flow: the direction it was processed with.
        route: ``EXO`` (to ``exo_smart_host``) or ``MX`` (recipient domain, T1 only).
        next_hop: host or ``mx:domain``.
        client_identity: the certificate name presented to EXO, if EXO is the next hop.
        message: the outgoing message, marker included when minted.
    """

    recipients: tuple[str, ...]
    flow: Flow
    route: RouteKind
    next_hop: str
    client_identity: str | None
    message: MessageFacts


@record(frozen=True)
class GatewayDecision:
    """What the gateway did with one received message.

    Attributes:
        from_exo: G1 classification.
        marker: the verdict on the marker field(s) received.
        rejected: recipients refused in the session (kind ``REJECT``, with reply).
        splits: the messages sent on.
        record: what to record as processed once a marker was minted, else ``None``.
        trace: the explained steps.
        arrival: the shared gateway decision on the arrival (G1-G3).
    """

    from_exo: bool
    marker: MarkerCheck
    rejected: tuple[Route, ...]
    splits: tuple[GatewaySplit, ...]
    record: ProcessedRecord | None
    trace: tuple[TraceStep, ...]
    arrival: ArrivalDecision

    @property
    def routes(self) -> tuple[Route, ...]:
        """Per-recipient routes: every split's recipients, then the refusals."""
        sent = (Route(r, s.route, s.next_hop) for s in self.splits for r in s.recipients)
        return (*sent, *self.rejected)


def decide_gateway(hop: Hop, topology: Topology, *, markers: MarkerCodec, now: int,
                   processed: ProcessedStore | None = None,
                   policy: GatewayPolicy | None = None,
                   transform: GatewayTransform | None = None) -> GatewayDecision:
    """Run G1-G8 for ``hop`` arriving at the gateway of ``topology``.

    Args:
        hop: the message as received.
        topology: tenant, gateway and options.
        markers: verifies and mints markers (docs/marker.md).
        now: the clock, Unix seconds.
        processed: the processed-message store (G2); ``None`` counts and records nothing.
        policy: the gateway's policy verdict per recipient (G6); ``None`` accepts everything.
        transform: what the gateway's filters make of the message per recipient (G6: it
            signs or encrypts); recipients with different results leave as separate
            messages, each with its own marker (G5).
    """
    settings, domains = _VIEWS.of(topology)
    message = hop.message
    rcpts = tuple(r.lower() for r in hop.envelope.rcpt_to)
    flows = {r: flow_of(hop.envelope.mail_from, r, domains) for r in rcpts}
    check = markers.verify(header_values(message.headers, settings.marker_field), message, now)
    key = _processed_key(hop, flows, domains) if processed is not None else None
    fingerprint = f"received:{message.received_count}"
    seen = 0
    if processed is not None and key is not None and settings.processed_limit:
        seen = processed.count(key, now, settings.processed_ttl, other_than=fingerprint)
    conn = hop.connection
    facts = Arrival(
        tls_peer_names=conn.peer_cert_names if conn.tls else (), client_address=conn.client_ip,
        tenant_ids=tuple(header_values(message.headers, TENANT_HEADER)),
        received_count=message.received_count, processed_count=seen, marker=check)
    arrival = decide_arrival(facts, settings)
    from_exo = arrival.source is ArrivalSource.RETURN_PATH
    trace = list(arrival.trace)
    if arrival.refusal is not None:
        refused = tuple(Route(r, RouteKind.REJECT, reply=arrival.refusal) for r in rcpts)
        return GatewayDecision(from_exo, check, refused, (), None, tuple(trace), arrival)
    message = _hygiene(message, topology, arrival, trace)
    spoof = _spoof_refusal(message, topology, domains, from_exo, trace)
    if spoof is not None:
        refused = tuple(Route(r, RouteKind.REJECT, reply=spoof) for r in rcpts)
        return GatewayDecision(from_exo, check, refused, (), None, tuple(trace), arrival)
    tenant_refusal = _tenant_relay_refusal(facts, settings, flows, from_exo, trace)
    if tenant_refusal is not None:
        refused = tuple(Route(r, RouteKind.REJECT, reply=tenant_refusal) for r in rcpts)
        return GatewayDecision(from_exo, check, refused, (), None, tuple(trace), arrival)
    rejected: list[Route] = []
    groups: dict[Flow, list[str]] = {}
    for rcpt in rcpts:
        flow = flows[rcpt]
        if not may_relay(flow, from_exo=from_exo):
            rejected.append(Route(rcpt, RouteKind.REJECT, reply=RELAY_REFUSAL))
            trace.append(TraceStep("G5", f"{rcpt}: {flow} mail from the internet: relay "
                                         "refused"))
            continue
        groups.setdefault(flow, []).append(rcpt)
    is_dsn = not hop.envelope.mail_from or message.has(MessageFlag.DSN)
    if is_dsn:
        trace.append(TraceStep("G4", "bounce (null sender or report): no policy refusal"))
    splits: list[GatewaySplit] = []
    for flow, members in groups.items():
        accepted = members
        if policy is not None and not is_dsn:
            accepted = []
            for rcpt in members:  # per recipient: "encrypt or reject" refuses one of several
                verdict = policy(flow, (rcpt,), message)
                if verdict is None:
                    accepted.append(rcpt)
                    continue
                rejected.append(Route(rcpt, RouteKind.REJECT, reply=verdict))
                trace.append(TraceStep("G6", f"{rcpt}: policy refuses {flow} mail: {verdict}"))
        if not accepted:
            continue
        if transform is None or is_dsn:
            splits.extend(_send(topology, markers, now, flow, tuple(accepted), message,
                                from_exo, trace))
            continue
        for changed, rcpts in _changes(transform, flow, accepted, message, trace):
            splits.extend(_send(topology, markers, now, flow, rcpts, changed, from_exo,
                                trace))
    # Recorded where the runtime's marker-set records: when a marker was minted.
    minted = any(s.route is RouteKind.EXO for s in splits)
    record = (ProcessedRecord(key, fingerprint, settings.processed_ttl)
              if minted and key is not None else None)
    return GatewayDecision(from_exo, check, tuple(rejected), tuple(splits), record,
                           tuple(trace), arrival)


class _TopologyView:
    """The settings and domains of the topologies seen last, found by identity.

    Hashing a topology walks the whole tenant; the simulator asks for the same object at
    every gateway pass, so an identity check is all a hit costs.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._seen: OrderedDict[int, tuple[Topology, GatewaySettings, tuple[str, ...]]] = (
            OrderedDict())
        self._lock = threading.Lock()

    def of(self, topology: Topology) -> tuple[GatewaySettings, tuple[str, ...]]:
        found = self._seen.get(id(topology))  # a dict read is atomic; writes take the lock
        if found is not None and found[0] is topology:
            return found[1], found[2]
        view = (topology, _settings_of(topology), topology.org_domains)
        with self._lock:
            self._seen[id(topology)] = view
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
        return view[1], view[2]


_VIEWS = _TopologyView()


def _spoof_refusal(message: MessageFacts, topology: Topology, domains: tuple[str, ...],
                   from_exo: bool, trace: list[TraceStep]) -> Reply | None:
    """The anti-spoofing step the ``dkim-verify`` filter takes (:func:`decide_spoof`)."""
    policy = topology.gateway.on_spoof
    if policy is SpoofPolicy.OFF or not message.from_addrs:
        return None
    facts = SpoofFacts(from_domain=domain_of(message.from_addrs[0]), from_internet=not from_exo,
                       aligned=message.has(MessageFlag.DMARC_ALIGNED))
    action, reply = decide_spoof(facts, domains, policy)
    if action is SpoofAction.PASS:
        return None
    trace.append(TraceStep("G6", f"own domain {facts.from_domain} from the internet without an "
                                 f"aligned DMARC pass: {action}"))
    return reply if action in (SpoofAction.REJECT, SpoofAction.TEMPFAIL) else None


def _processed_key(hop: Hop, flows: dict[str, Flow], domains: tuple[str, ...]) -> str | None:
    """The runtime's processed-message key: Message-ID, recipients, message direction."""
    if not hop.message.message_id:
        return None
    direction = direction_of(flows.values(),
                             sender_inside=is_inside(domain_of(hop.envelope.mail_from), domains))
    return processed_key(normalise_message_id(hop.message.message_id), hop.envelope.mail_from,
                         hop.envelope.rcpt_to, direction)


def _hygiene(message: MessageFacts, topology: Topology, arrival: ArrivalDecision,
             trace: list[TraceStep]) -> MessageFacts:
    names = {n.lower() for n in arrival.remove_fields}
    prefixes = arrival.remove_prefixes
    headers = tuple([kv for kv in message.headers if (key := kv[0].lower()) not in names
                     and not (prefixes and key.startswith(prefixes))])
    message = message.evolve(headers=headers, received_count=message.received_count + 1)
    if not message.message_id:
        digest = hashlib.sha256(repr(message.headers).encode()).hexdigest()[:16]
        new_id = f"<mailroute.{digest}@{topology.gateway.tls_identity}>"
        message = message.evolve(message_id=new_id,
                                 headers=set_header(message.headers, "Message-ID", new_id))
        trace.append(TraceStep("G3", "no Message-ID: one added before minting"))
    return message


@record(frozen=True)
class NextHopChoice:
    """G8 for one recipient: where the gateway sends it and as whom.

    Attributes:
        route: ``EXO`` (the tenant's smart host) or ``MX`` (the recipient domain's MX).
        next_hop: the smart host's name, or ``mx:DOMAIN``.
        client_identity: the certificate name presented to EXO; ``None`` for MX.
    """

    route: RouteKind
    next_hop: str
    client_identity: str | None


def _tenant_relay_refusal(arrival: Arrival, settings: GatewaySettings,
                          flows: dict[str, Flow], from_exo: bool,
                          trace: list[TraceStep]) -> Reply | None:
    """G5 at the end of DATA: the recipients leaving the organisation were taken at RCPT on
    the connection's word (Exchange Online's name and ranges); the tenant id, readable only
    now, says another tenant sent it. The whole message is refused, as ``serve`` must (one
    reply to the final dot)."""
    if from_exo or settings.tenant_id is None or not LEAVING.intersection(flows.values()):
        return None
    if not exo_by_connection(arrival, settings):
        return None
    trace.append(TraceStep("G5", "Exchange Online of another tenant (tenant id): relay refused"))
    return TENANT_RELAY_REFUSAL


def gateway_next_hop(topology: Topology, flow: Flow, recipient: str, *,
                     from_exo: bool) -> NextHopChoice:
    """G8: the next hop of one recipient of ``flow`` (the simulator's and ``serve``'s choice).

    In T1 mail leaving the organisation goes to the recipient's MX (never back to EXO, which
    would send it straight back); everything else goes to the tenant's smart host, with the
    T3 inbound identity for internet mail when one is configured.
    """
    gw = topology.gateway
    if gw.topology is TopologyKind.T1 and flow in (Flow.OUTBOUND, Flow.RELAY):
        return NextHopChoice(RouteKind.MX, f"mx:{domain_of(recipient)}", None)
    identity = gw.tls_identity
    if gw.topology is TopologyKind.T3 and not from_exo and gw.inbound_tls_identity:
        identity = gw.inbound_tls_identity
    return NextHopChoice(RouteKind.EXO, topology.tenant.exo_smart_host, identity)


def _send(topology: Topology, markers: MarkerCodec, now: int, flow: Flow,
          rcpts: tuple[str, ...], message: MessageFacts, from_exo: bool,
          trace: list[TraceStep]) -> list[GatewaySplit]:
    choices = {r: gateway_next_hop(topology, flow, r, from_exo=from_exo) for r in rcpts}
    mx = [r for r in rcpts if choices[r].route is RouteKind.MX]
    if mx:
        out: list[GatewaySplit] = []
        by_hop: dict[str, list[str]] = {}
        for r in mx:
            by_hop.setdefault(choices[r].next_hop, []).append(r)
        for hop, members in by_hop.items():
            trace.append(TraceStep("G8", f"{flow} to {hop[3:]}: recipient MX, marker removed"))
            out.append(GatewaySplit(tuple(members), flow, RouteKind.MX, hop, None, message))
        return out
    choice = choices[rcpts[0]]
    gw = topology.gateway
    token = markers.mint(message, flow.letter, now)
    marked = message.with_headers(set_header(message.headers, gw.marker.header, token))
    trace.append(TraceStep("G7", f"{flow} processed; marker minted ({flow.letter})"))
    trace.append(TraceStep("G8", f"to {choice.next_hop} as {choice.client_identity}"))
    return [GatewaySplit(rcpts, flow, RouteKind.EXO, choice.next_hop, choice.client_identity,
                         marked)]
