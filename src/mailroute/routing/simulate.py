"""Hop-by-hop simulation of one message through internet, EXO and gateway.

The contract for users is docs/routing/simulator.md.

Every node visit is one :class:`SimStep` produced by :func:`~.exo.decide_exo` or
:func:`~.gateway.decide_gateway`. Recipients are followed separately through every fork
until each ends: delivered (mailbox, internet, journal), rejected, NDR, dropped, quarantined,
loop (a repeated state, or a loop guard's ``5.4.6``) or hop limit. Each end is an
:class:`JourneyOutcome` with the gateway and EXO pass counts and the ``BYPASS`` verdict of the
topology's policy.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.item import Envelope, ProcessedStore
from mailroute.results import Reply
from mailroute.routing.decide import Route, RouteKind, TraceStep
from mailroute.routing.exo import ExoDecision, decide_exo, egress_message, ndr_hop
from mailroute.routing.gateway import (
    GatewayDecision,
    GatewayPolicy,
    decide_gateway,
    gateway_settings,
)
from mailroute.routing.hop import Connection, Hop, MessageFacts, MessageFlag, Source
from mailroute.routing.hop import header_values as values_of
from mailroute.routing.markers import MarkerCodec, simulation_markers
from mailroute.routing.match import domain_of, is_subdomain
from mailroute.routing.model import Tenant
from mailroute.routing.topology import RoutingMode, Topology, TopologyKind

__all__ = [
    "EXO_EGRESS_IP",
    "EXO_TLS_NAME",
    "JourneyOutcome",
    "Origin",
    "SimStep",
    "Simulation",
    "Status",
    "simulate",
]

EXO_EGRESS_IP = "40.107.22.5"
EXO_TLS_NAME = "eur05.mail.protection.outlook.com"
INTERNET_IP = "198.51.100.25"
FLOATING_GATEWAY_IP = "198.18.7.9"
_STATE_LOOP = Reply(554, "5.4.14", "state repeated: routing loop")
_EXEMPT = frozenset({MessageFlag.OOF, MessageFlag.GROUP_FANOUT, MessageFlag.JOURNAL_REPORT})


class Origin(enum.StrEnum):
    """Where the simulated message starts."""

    INTERNET = "internet"  # an internet MTA, following the MX of each recipient domain
    DIRECT = "direct"      # an internet MTA connecting straight to EOP (MX bypass)
    MAILBOX = "mailbox"    # a mailbox submission in EXO
    GATEWAY = "gateway"    # connects to the gateway with the given connection facts


class Status(enum.StrEnum):
    """How one recipient's journey ended."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    NDR = "ndr"
    DROPPED = "dropped"
    QUARANTINED = "quarantined"
    AMBIGUOUS = "ambiguous"
    LOOP = "loop"
    HOP_LIMIT = "hop-limit"


@dataclass(frozen=True, slots=True)
class SimStep:
    """One node visit: where, which message, and what the node decided."""

    index: int
    at: str
    kind: str
    mail_from: str
    recipients: tuple[str, ...]
    routes: tuple[Route, ...]
    rules: tuple[str, ...]
    connector: str | None
    trace: tuple[TraceStep, ...]


@dataclass(frozen=True, slots=True)
class JourneyOutcome:
    """The end of one recipient's journey.

    Attributes:
        recipient: the original recipient (or ``kind:address`` for generated messages).
        address: the address that received (or was refused) at the end.
        kind: ``message`` or the kind of generated message (``ndr``, ``journal report``...).
        status: how it ended; ``final`` names the node (``mailbox:...``, ``internet:...``).
        gateway_passes / exo_passes: node visits on the way.
        flows: the directions the gateway processed it with, in order.
        marker_at_delivery: a marker was still present when delivered (must be ``False``).
        disclaimers: EXO disclaimers the delivered message carries (2 means applied twice).
        bypass: delivered although the topology's policy wanted a gateway pass.
        reply: the SMTP reply for refusals, NDRs and loops.
        steps: indexes of the :class:`SimStep` objects on its path.
    """

    recipient: str
    address: str
    kind: str
    status: Status
    final: str
    gateway_passes: int
    exo_passes: int
    flows: tuple[str, ...]
    marker_at_delivery: bool
    disclaimers: int
    bypass: bool
    reply: Reply | None
    steps: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Simulation:
    """The result of :func:`simulate`."""

    envelope: Envelope
    origin: Origin
    steps: tuple[SimStep, ...]
    outcomes: tuple[JourneyOutcome, ...]

    @property
    def loop(self) -> bool:
        """True when any journey ended in a loop or at the hop limit."""
        return any(o.status in (Status.LOOP, Status.HOP_LIMIT) for o in self.outcomes)

    @property
    def bypass(self) -> bool:
        """True when any recipient got mail that should have passed the gateway."""
        return any(o.bypass for o in self.outcomes)

    def outcome(self, recipient: str, kind: str = "message") -> JourneyOutcome:
        """The first outcome for ``recipient`` (original address) of message ``kind``."""
        for o in self.outcomes:
            if o.recipient == recipient.lower() and o.kind == kind:
                return o
        raise KeyError(recipient)


class _Track(NamedTuple):
    """One recipient's journey so far. A copy Exchange makes of the message (forward, group
    fan-out) continues the counts of the journey it came from; ``gw_base`` is the gateway
    count it started with, so the BYPASS check still judges the copy's own legs. (A named
    tuple: every node visit builds one per recipient, see benchmarks/routing.py.)"""

    original: str
    kind: str
    sender: str
    gw: int = 0
    exo: int = 0
    flows: tuple[str, ...] = ()
    steps: tuple[int, ...] = ()
    gw_base: int = 0


@dataclass(frozen=True, slots=True)
class _Pending:
    node: str  # "exo" | "gateway"
    hop: Hop
    tracks: dict[str, _Track]
    states: frozenset[tuple[object, ...]] = field(default=frozenset())
    from_exo_node: bool = False


@dataclass(slots=True)
class _Run:
    topology: Topology
    tenant: Tenant
    markers: MarkerCodec
    policy: GatewayPolicy | None
    now: int
    max_steps: int
    steps: list[SimStep] = field(default_factory=list)
    outcomes: list[JourneyOutcome] = field(default_factory=list)
    processed: ProcessedStore = field(default_factory=InMemoryProcessedStore)
    queue: deque[_Pending] = field(default_factory=deque)


def simulate(envelope: Envelope, message: MessageFacts, topology: Topology, *,
             tenant: Tenant | None = None, origin: Origin = Origin.MAILBOX,
             connection: Connection | None = None, now: int = 1_800_000_000,
             markers: MarkerCodec | None = None, policy: GatewayPolicy | None = None,
             max_steps: int = 200) -> Simulation:
    """Follow one message from ``origin`` until every recipient's journey ends.

    Args:
        envelope: MAIL FROM and RCPT TO as the origin sends them.
        message: the message facts.
        topology: gateway and options; its tenant is used unless ``tenant`` is given.
        tenant: the tenant to simulate (usually :func:`~.plan.deployed` of the topology).
        origin: where the message starts.
        connection: the connection facts for ``GATEWAY``/``DIRECT``/``INTERNET`` origins.
        now: the clock, Unix seconds (constant during the simulation).
        markers: the marker codec (default: the real marker over the fixed simulation ring,
            :func:`~.markers.simulation_markers`).
        policy: the gateway's policy verdict (default: accept).
        max_steps: node visits after which every open journey ends as ``HOP_LIMIT``.
    """
    codec = markers if markers is not None else simulation_markers(
        topology.gateway.marker.tag, topology.tenant.tenant_id,
        windows=gateway_settings(topology).windows)
    run = _Run(topology, tenant if tenant is not None else topology.tenant, codec, policy, now,
               max_steps)
    tracks = {r.lower(): _Track(r.lower(), "message", envelope.mail_from)
              for r in envelope.rcpt_to}
    for pending in _start(run, envelope, message, origin, connection, tracks):
        run.queue.append(pending)
    while run.queue:
        _visit(run, run.queue.popleft())
    return Simulation(envelope, origin, tuple(run.steps), tuple(run.outcomes))


def _internet_connection(envelope: Envelope, connection: Connection | None) -> Connection:
    if connection is not None:
        return connection
    names = (envelope.tls_peer_name,) if envelope.tls_peer_name else ()
    return Connection(source=Source.INTERNET, client_ip=envelope.client_address or INTERNET_IP,
                      tls=True, peer_cert_names=names)


def _start(run: _Run, envelope: Envelope, message: MessageFacts, origin: Origin,
           connection: Connection | None, tracks: dict[str, _Track]) -> list[_Pending]:
    if origin is Origin.MAILBOX:
        hop = Hop(envelope=envelope, connection=Connection(source=Source.MAILBOX),
                  message=message)
        return [_Pending("exo", hop, tracks)]
    conn = _internet_connection(envelope, connection)
    if origin is Origin.GATEWAY:
        return [_Pending("gateway", Hop(envelope=envelope, connection=conn, message=message),
                         tracks)]
    if origin is Origin.DIRECT:
        return [_Pending("exo", Hop(envelope=envelope, connection=conn, message=message),
                         tracks)]
    by_node: dict[str, list[str]] = {}
    for rcpt in tracks:
        target = _mx_node(run, domain_of(rcpt))
        if target in ("exo", "gateway"):
            by_node.setdefault(target, []).append(rcpt)
        else:
            _end(run, tracks[rcpt], rcpt, Status.DELIVERED, target, message)
    return [_Pending(node, Hop(envelope=_env(envelope.mail_from, rcpts), connection=conn,
                               message=message), {r: tracks[r] for r in rcpts})
            for node, rcpts in by_node.items()]


def _env(mail_from: str, rcpts: list[str] | tuple[str, ...]) -> Envelope:
    return Envelope(mail_from=mail_from, rcpt_to=tuple(rcpts))


def _mx_node(run: _Run, domain: str) -> str:
    fact = run.tenant.mx_of(domain)
    if fact == "eop":
        return "exo"
    if fact == "gateway" or (fact or "").lower() in run.topology.gateway.identities:
        return "gateway"
    return f"internet:{fact or domain}"


def _host_node(run: _Run, host: str) -> str:
    if host.startswith("mx:"):
        return _mx_node(run, host[3:])
    if host.lower() in run.topology.gateway.identities:
        return "gateway"
    if host.lower() == run.tenant.exo_smart_host.lower():
        return "exo"
    return f"internet:{host}"


def _state(pending: _Pending, run: _Run) -> tuple[object, ...]:
    gw = run.topology.gateway
    message = pending.hop.message
    mark = tuple(v.strip()[:10] for v in values_of(message.headers, gw.marker.header))
    bypass = tuple(values_of(message.headers, gw.bypass_header))
    conn = pending.hop.connection
    return (pending.node, frozenset(pending.tracks), pending.hop.envelope.mail_from, mark,
            bypass, message.flags, message.wrapped, conn.source, conn.client_ip,
            conn.peer_cert_names)


def _visit(run: _Run, pending: _Pending) -> None:
    state = _state(pending, run)
    repeated = state in pending.states
    # A gateway arrival meets the gateway's own loop guards first (processed-message store,
    # Received count, marker): a real deployment refuses there with 554 5.4.6. The state
    # repeat is declared only when the node's own step did not stop the message.
    if repeated and pending.node != "gateway":
        for rcpt, track in pending.tracks.items():
            _end(run, track, rcpt, Status.LOOP, pending.node, pending.hop.message,
                 reply=_STATE_LOOP)
        return
    limit = run.tenant.org.hop_limit
    if len(run.steps) >= run.max_steps or any(t.exo >= limit for t in pending.tracks.values()):
        for rcpt, track in pending.tracks.items():
            _end(run, track, rcpt, Status.HOP_LIMIT, pending.node, pending.hop.message,
                 reply=Reply(554, "5.4.14", "Hop count exceeded - possible mail loop"))
        return
    pending = _Pending(pending.node, pending.hop, pending.tracks, pending.states | {state},
                       pending.from_exo_node)
    if pending.node == "exo":
        _visit_exo(run, pending)
    else:
        _visit_gateway(run, pending, repeated=repeated)


def _record(run: _Run, pending: _Pending, at: str, routes: tuple[Route, ...],
            rules: tuple[str, ...], connector: str | None, trace: tuple[TraceStep, ...]) -> int:
    index = len(run.steps)
    kind = next(iter(pending.tracks.values())).kind if pending.tracks else "message"
    run.steps.append(SimStep(index, at, kind, pending.hop.envelope.mail_from,
                             tuple(pending.tracks), routes, rules, connector, trace))
    return index


def _visit_exo(run: _Run, pending: _Pending) -> None:
    when = datetime.fromtimestamp(run.now, UTC)
    decision: ExoDecision = decide_exo(pending.hop, run.tenant, now=when)
    passes = 1 + max((t.exo for t in pending.tracks.values()), default=0)
    rules = tuple(dict.fromkeys(r for c in decision.copies for r in c.rules))
    index = _record(run, pending, f"EXO pass {passes}", decision.routes, rules,
                    decision.connector, decision.trace)
    tracks = {r: _advance(t, index, exo=1) for r, t in pending.tracks.items()}
    for route in decision.rejected:
        _end(run, tracks[route.recipient], route.recipient, Status.REJECTED, "exo",
             pending.hop.message, reply=route.reply)
    for copy in decision.copies:
        onward: dict[tuple[str, str | None], list[Route]] = {}
        for route in copy.routes:
            track = _track_for(tracks, route)
            if route.kind in (RouteKind.CONNECTOR, RouteKind.MX):
                onward.setdefault((_host_node(run, route.next_hop), route.connector),
                                  []).append(route)
                continue
            status, final = _exo_end(route)
            _end(run, track, route.recipient, status, final, copy.message, reply=route.reply)
        for (node, connector_name), routes in onward.items():
            connector = run.tenant.outbound_connector(connector_name) if connector_name else None
            out = egress_message(run.tenant, copy.message, connector)
            _forward(run, pending, node, out, routes, tracks)
    for generated in decision.generated:
        rcpts = generated.hop.envelope.rcpt_to
        base = tracks.get(generated.source) if generated.source else None
        sender = generated.hop.envelope.mail_from
        new = {r.lower(): _Track(f"{generated.kind}:{r.lower()}", generated.kind, sender,
                                 steps=(index,)) if base is None else
               _Track(f"{generated.kind}:{r.lower()}", generated.kind, sender, base.gw,
                      base.exo, base.flows, base.steps, gw_base=base.gw)
               for r in rcpts}
        run.queue.append(_Pending("exo", generated.hop, new))


def _exo_end(route: Route) -> tuple[Status, str]:
    if route.kind is RouteKind.LOCAL:
        return Status.DELIVERED, route.next_hop
    if route.kind is RouteKind.FORWARD:
        return Status.DELIVERED, route.next_hop
    table = {RouteKind.NDR: Status.NDR, RouteKind.DROP: Status.DROPPED,
             RouteKind.QUARANTINE: Status.QUARANTINED, RouteKind.AMBIGUOUS: Status.AMBIGUOUS}
    return table.get(route.kind, Status.REJECTED), "exo"


def _track_for(tracks: dict[str, _Track], route: Route) -> _Track:
    key = route.original or route.recipient
    if key in tracks:
        return tracks[key]
    if route.recipient in tracks:
        return tracks[route.recipient]
    first = next(iter(tracks.values()))
    return _Track(route.recipient, first.kind, first.sender, first.gw, first.exo, first.flows,
                  first.steps, first.gw_base)


def _forward(run: _Run, pending: _Pending, node: str, message: MessageFacts,
             routes: list[Route], tracks: dict[str, _Track]) -> None:
    rcpts = tuple(r.recipient for r in routes)
    next_tracks = {r.recipient: _track_for(tracks, r) for r in routes}
    if node.startswith("internet:"):
        for route in routes:
            _end(run, next_tracks[route.recipient], route.recipient, Status.DELIVERED, node,
                 message)
        return
    conn = (Connection(source=Source.EXO, client_ip=EXO_EGRESS_IP, tls=True,
                       peer_cert_names=(EXO_TLS_NAME,)) if node == "gateway" else
            Connection(source=Source.INTERNET, client_ip=EXO_EGRESS_IP, tls=True,
                       peer_cert_names=(EXO_TLS_NAME,)))
    hop = Hop(envelope=_env(pending.hop.envelope.mail_from, rcpts), connection=conn,
              message=message, pass_no=pending.hop.pass_no + 1)
    run.queue.append(_Pending(node, hop, next_tracks, pending.states, from_exo_node=True))


def _visit_gateway(run: _Run, pending: _Pending, *, repeated: bool = False) -> None:
    decision: GatewayDecision = decide_gateway(pending.hop, run.topology, markers=run.markers,
                                               now=run.now, processed=run.processed,
                                               policy=run.policy)
    if decision.record is not None:
        record = decision.record
        run.processed.record(record.key, run.now, record.ttl, fingerprint=record.fingerprint)
    passes = 1 + max((t.gw for t in pending.tracks.values()), default=0)
    index = _record(run, pending, f"gateway pass {passes}", decision.routes, (), None,
                    decision.trace)
    tracks = {r: _advance(t, index, gw=1) for r, t in pending.tracks.items()}
    for route in decision.rejected:
        loop = route.reply is not None and route.reply.status == "5.4.6"
        _end(run, tracks[route.recipient], route.recipient,
             Status.LOOP if loop else Status.REJECTED, "gateway", pending.hop.message,
             reply=route.reply)
    if decision.rejected and pending.from_exo_node and decision.rejected[0].reply is not None:
        ndr = ndr_hop(run.tenant, pending.hop.envelope, pending.hop.message,
                      decision.rejected[0].reply, pending.hop.pass_no)
        if ndr is not None:
            new = {r.lower(): _Track(f"ndr:{r.lower()}", "ndr", "", steps=(index,))
                   for r in ndr.envelope.rcpt_to}
            run.queue.append(_Pending("exo", ndr, new))
    gw = run.topology.gateway
    for split in decision.splits:
        split_tracks = {r: _advance(tracks[r], None, flow=str(split.flow))
                        for r in split.recipients}
        if repeated and split.route is not RouteKind.MX:
            for rcpt in split.recipients:
                _end(run, split_tracks[rcpt], rcpt, Status.LOOP, "gateway", split.message,
                     reply=_STATE_LOOP)
            continue
        if split.route is RouteKind.MX:
            for rcpt in split.recipients:
                _end(run, split_tracks[rcpt], rcpt, Status.DELIVERED,
                     _mx_node(run, domain_of(rcpt)), split.message)
            continue
        ip = gw.egress_ips[0] if gw.egress_ips else FLOATING_GATEWAY_IP
        conn = Connection(source=Source.GATEWAY, client_ip=ip, tls=True,
                          peer_cert_names=(split.client_identity or gw.tls_identity,))
        hop = Hop(envelope=_env(pending.hop.envelope.mail_from, split.recipients),
                  connection=conn, message=split.message, pass_no=pending.hop.pass_no + 1)
        run.queue.append(_Pending("exo", hop, split_tracks, pending.states))


def _advance(track: _Track, index: int | None, *, gw: int = 0, exo: int = 0,
             flow: str | None = None) -> _Track:
    return _Track(track.original, track.kind, track.sender, track.gw + gw, track.exo + exo,
                  (*track.flows, flow) if flow else track.flows,
                  (*track.steps, index) if index is not None else track.steps, track.gw_base)


def _end(run: _Run, track: _Track, address: str, status: Status, final: str,
         message: MessageFacts, *, reply: Reply | None = None) -> None:
    delivered = status is Status.DELIVERED
    marker = delivered and bool(values_of(message.headers, run.topology.gateway.marker.header))
    bypass = delivered and track.gw - track.gw_base < _required_passes(run, track, address,
                                                                       message)
    run.outcomes.append(JourneyOutcome(track.original, address.lower(), track.kind, status, final,
                                track.gw, track.exo, track.flows, marker,
                                message.disclaimers, bypass, reply, track.steps))


def _required_passes(run: _Run, track: _Track, address: str, message: MessageFacts) -> int:
    """The gateway passes the topology's policy requires here (docs/routing/simulator.md)."""
    gw, opts = run.topology.gateway, run.topology.exo_config
    domains = run.topology.org_domains
    rcpt_in = any(is_subdomain(domain_of(address), d) for d in domains)
    sender_domain = domain_of(track.sender)
    sender_in = bool(sender_domain) and any(is_subdomain(sender_domain, d) for d in domains)
    if gw.topology is TopologyKind.T1:
        # One pass per external leg: to an external recipient, or from an external sender
        # into the tenant. Copies EXO makes inside the tenant (fan-out, forward, NDR) start
        # no new inbound leg.
        if not rcpt_in:
            return 1
        return 0 if (sender_in or not track.sender or track.kind != "message") else 1
    exempt = set(_EXEMPT)
    if not opts.route_calendaring:
        exempt.add(MessageFlag.CALENDARING)
    if message.flags & exempt or track.kind in ("journal report", "group fan-out"):
        return 0
    if opts.mode is RoutingMode.DIRECTIONAL and sender_in == rcpt_in:
        return 0
    return 1
