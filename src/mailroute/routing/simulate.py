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
from datetime import UTC, datetime
from typing import NamedTuple

from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.item import Envelope, ProcessedStore
from mailroute.records import field, record
from mailroute.results import Reply
from mailroute.routing.decide import Route, RouteKind, TraceStep
from mailroute.routing.exo import ExoDecision, decide_exo, egress_message, ndr_hop
from mailroute.routing.gateway import (
    Flow,
    GatewayDecision,
    GatewayPolicy,
    GatewayTransform,
    decide_gateway,
    gateway_settings,
)
from mailroute.routing.hop import Connection, Hop, MessageFacts, MessageFlag, Source, set_header
from mailroute.routing.hop import header_values as values_of
from mailroute.routing.markers import MarkerCodec, simulation_markers
from mailroute.routing.match import cert_name_matches, domain_of, ip_in_ranges, is_subdomain
from mailroute.routing.model import ConnectorType, Tenant, parse_reply
from mailroute.routing.scenario import Delay, Scenario, ServiceReturn
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


@record(frozen=True)
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


@record(frozen=True)
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
        service_passes: visits of third-party services (scenario services).
        flags: the message facts at the end (``signed``, ``encrypted`` ...).
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
    service_passes: int = 0
    flags: frozenset[MessageFlag] = frozenset()


@record(frozen=True)
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
    svc: int = 0


@record(frozen=True)
class _Pending:
    node: str  # "exo" | "gateway" | "service:NAME"
    hop: Hop
    tracks: dict[str, _Track]
    states: frozenset[tuple[object, ...]] = field(default=frozenset())
    from_exo_node: bool = False
    org: int = 0   # which tenant (index into _Run.orgs): its EXO, its gateway settings
    now: int = 0   # the clock at this hop (scenario delays advance it)


class _Org(NamedTuple):
    """One tenant of the simulation with its topology and marker codec."""

    topology: Topology
    tenant: Tenant
    markers: MarkerCodec


@record
class _Run:
    orgs: list[_Org]
    policy: GatewayPolicy | None
    transform: GatewayTransform | None
    scenario: Scenario | None
    max_steps: int
    marker_headers: tuple[str, ...]
    multi: bool  # several tenants (the single-tenant path skips every tenant lookup)
    steps: list[SimStep] = field(default_factory=list)
    outcomes: list[JourneyOutcome] = field(default_factory=list)
    processed: ProcessedStore = field(default_factory=InMemoryProcessedStore)
    queue: deque[_Pending] = field(default_factory=deque)
    visits: dict[str, int] = field(default_factory=dict)


def simulate(envelope: Envelope, message: MessageFacts, topology: Topology, *,
             tenant: Tenant | None = None, origin: Origin = Origin.MAILBOX,
             connection: Connection | None = None, now: int = 1_800_000_000,
             markers: MarkerCodec | None = None, policy: GatewayPolicy | None = None,
             max_steps: int = 200, scenario: Scenario | None = None,
             transform: GatewayTransform | None = None) -> Simulation:
    """Follow one message from ``origin`` until every recipient's journey ends.

    Args:
        envelope: MAIL FROM and RCPT TO as the origin sends them.
        message: the message facts.
        topology: gateway and options; its tenant is used unless ``tenant`` is given.
        tenant: the tenant to simulate (usually :func:`~.plan.deployed` of the topology).
        origin: where the message starts.
        connection: the connection facts for ``GATEWAY``/``DIRECT``/``INTERNET`` origins.
        now: the clock at the start, Unix seconds (scenario delays advance it).
        markers: the marker codec (default: the real marker over the fixed simulation ring,
            :func:`~.markers.simulation_markers`).
        policy: the gateway's policy verdict per recipient (default: accept).
        max_steps: node visits after which every open journey ends as ``HOP_LIMIT``.
        scenario: facts the topology cannot state (docs/routing/scenario.md): delivery
            failures, the gateway's verdicts and changes per recipient, services, delays,
            further tenants. Its gateway actions replace ``policy`` and ``transform``.
        transform: what the gateway's filters change per recipient (signed, encrypted).

    Raises:
        ValueError: a scenario fact names a mailbox no tenant has.
    """
    base = tenant if tenant is not None else topology.tenant
    codec = markers if markers is not None else _codec(topology)
    if scenario is None:
        run = _Run([_Org(topology, base, codec)], policy, transform, None, max_steps,
                   (topology.gateway.marker.header,), False)
    else:
        pairs = [(topology, base), *scenario.tenants]
        pairs = [(t, scenario.with_failures(ten)) for t, ten in pairs]
        _check_failures(scenario, [ten for _, ten in pairs])
        if scenario.gateway_actions:
            policy, transform = _ScenarioPolicy(scenario), _ScenarioTransform(scenario)
        orgs = [_Org(t, ten, codec if i == 0 else _codec(t)) for i, (t, ten) in enumerate(pairs)]
        run = _Run(orgs, policy, transform, scenario, max_steps,
                   tuple(dict.fromkeys(t.gateway.marker.header for t, _ in pairs)),
                   len(orgs) > 1)
    tracks = {r.lower(): _Track(r.lower(), "message", envelope.mail_from)
              for r in envelope.rcpt_to}
    for pending in _start(run, envelope, message, origin, connection, tracks, now):
        run.queue.append(pending)
    while run.queue:
        _visit(run, run.queue.popleft())
    return Simulation(envelope, origin, tuple(run.steps), tuple(run.outcomes))


def _codec(topology: Topology) -> MarkerCodec:
    return simulation_markers(topology.gateway.marker.tag, topology.tenant.tenant_id,
                              windows=gateway_settings(topology).windows)


def _check_failures(scenario: Scenario, tenants: list[Tenant]) -> None:
    for failure in scenario.delivery_failures:
        if not any(t.directory.lookup(failure.address) for t in tenants):
            raise ValueError(f"delivery failure for {failure.address}: no tenant has it")


class _ScenarioPolicy:
    """The scenario's ``reject`` actions as the gateway's per-recipient policy."""

    def __init__(self, scenario: Scenario) -> None:
        self._scenario = scenario

    def __call__(self, flow: Flow, recipients: tuple[str, ...],
                 message: MessageFacts) -> Reply | None:
        for rcpt in recipients:
            action = self._scenario.action(flow, rcpt)
            if action is not None and action.reject is not None:
                return parse_reply(action.reject)
        return None


class _ScenarioTransform:
    """The scenario's ``set_flags``/``clear_flags`` actions as the gateway's changes."""

    def __init__(self, scenario: Scenario) -> None:
        self._scenario = scenario

    def __call__(self, flow: Flow, recipient: str, message: MessageFacts) -> MessageFacts:
        action = self._scenario.action(flow, recipient)
        if action is None or not (action.set_flags or action.clear_flags):
            return message
        flags = (message.flags | frozenset(action.set_flags)) - frozenset(action.clear_flags)
        return message.evolve(flags=flags)


def _internet_connection(envelope: Envelope, connection: Connection | None) -> Connection:
    if connection is not None:
        return connection
    names = (envelope.tls_peer_name,) if envelope.tls_peer_name else ()
    return Connection(source=Source.INTERNET, client_ip=envelope.client_address or INTERNET_IP,
                      tls=True, peer_cert_names=names)


def _start(run: _Run, envelope: Envelope, message: MessageFacts, origin: Origin,
           connection: Connection | None, tracks: dict[str, _Track],
           now: int) -> list[_Pending]:
    if origin is Origin.MAILBOX:
        hop = Hop(envelope=envelope, connection=Connection(source=Source.MAILBOX),
                  message=message)
        org = _sender_org(run, envelope.mail_from) if run.multi else 0
        return [_Pending("exo", hop, tracks, frozenset(), False, org, now)]
    conn = _internet_connection(envelope, connection)
    if origin is Origin.GATEWAY:
        return [_Pending("gateway", Hop(envelope=envelope, connection=conn, message=message),
                         tracks, org=_owner(run, envelope.rcpt_to[0], 0) if envelope.rcpt_to
                         else 0, now=now)]
    if origin is Origin.DIRECT:
        return _to_exo(run, Hop(envelope=envelope, connection=conn, message=message), tracks,
                       frozenset(), org=0, now=now)
    by_node: dict[tuple[str, int], list[str]] = {}
    for rcpt in tracks:
        target = _mx_node(run, 0, domain_of(rcpt))
        if target[0] in ("exo", "gateway"):
            by_node.setdefault(target, []).append(rcpt)
        else:
            _end(run, tracks[rcpt], rcpt, Status.DELIVERED, target[0], message)
    out: list[_Pending] = []
    for (node, org), rcpts in by_node.items():
        hop = Hop(envelope=_env(envelope.mail_from, rcpts), connection=conn, message=message)
        sub = {r: tracks[r] for r in rcpts}
        if node == "exo":
            out.extend(_to_exo(run, hop, sub, frozenset(), org=org, now=now))
        else:
            out.append(_Pending(node, hop, sub, org=org, now=now))
    return out


def _env(mail_from: str, rcpts: list[str] | tuple[str, ...]) -> Envelope:
    return Envelope(mail_from=mail_from, rcpt_to=tuple(rcpts))


def _owner(run: _Run, address: str, default: int) -> int:
    """The tenant that accepts the domain of ``address`` (``default`` when none does)."""
    if not run.multi:
        return default
    domain = domain_of(address)
    for i, org in enumerate(run.orgs):
        if org.tenant.accepted_domain(domain) is not None:
            return i
    return default


def _sender_org(run: _Run, sender: str) -> int:
    return _owner(run, sender, 0)


def _mx_node(run: _Run, org: int, domain: str) -> tuple[str, int]:
    owner = _owner(run, "@" + domain, org)
    tenant, topology = run.orgs[owner].tenant, run.orgs[owner].topology
    fact = tenant.mx_of(domain)
    if fact is None and run.multi:
        fact = next((f for o in run.orgs if (f := o.tenant.mx_of(domain)) is not None), None)
    if fact == "eop":
        return "exo", owner
    if fact == "gateway" or (fact or "").lower() in topology.gateway.identities:
        return "gateway", owner
    if fact is not None and (run.scenario is not None or run.multi):
        return _host_node(run, owner, fact)
    return f"internet:{fact or domain}", owner


def _host_node(run: _Run, org: int, host: str) -> tuple[str, int]:
    if host.startswith("mx:"):
        return _mx_node(run, org, host[3:])
    name = host.lower()
    if name in run.orgs[org].topology.gateway.identities:
        return "gateway", org
    for i, other in enumerate(run.orgs):
        if name == other.tenant.exo_smart_host.lower():
            return "exo", i
    if run.scenario is not None:
        service = run.scenario.service_for(name)
        if service is not None:
            return f"service:{service.name}", org
    for i, other in enumerate(run.orgs):
        if name in other.topology.gateway.identities:
            return "gateway", i
    return f"internet:{host}", org


def _to_exo(run: _Run, hop: Hop, tracks: dict[str, _Track],
            states: frozenset[tuple[object, ...]], *, org: int, now: int,
            from_exo_node: bool = False) -> list[_Pending]:
    """Pendings for EOP receiving ``hop`` over SMTP: with several tenants, EOP decides which
    tenant the message belongs to (E2 across tenants: an OnPremises connector of a tenant
    that matches the connection and attributes it by certificate or sender domain claims
    it; otherwise each recipient's domain decides)."""
    if not run.multi:
        return [_Pending("exo", hop, tracks, states, from_exo_node, 0, now)]
    claimed = _claiming_org(run, hop)
    if claimed is not None:
        return [_Pending("exo", hop, tracks, states, from_exo_node, claimed, now)]
    by_org: dict[int, list[str]] = {}
    for rcpt in hop.envelope.rcpt_to:
        by_org.setdefault(_owner(run, rcpt, org), []).append(rcpt.lower())
    if len(by_org) == 1:
        return [_Pending("exo", hop, tracks, states, from_exo_node, next(iter(by_org)), now)]
    return [_Pending("exo", Hop(envelope=_env(hop.envelope.mail_from, rcpts),
                                connection=hop.connection, message=hop.message,
                                pass_no=hop.pass_no),
                     {r: tracks[r] for r in rcpts if r in tracks}, states, from_exo_node, i, now)
            for i, rcpts in by_org.items()]


def _claiming_org(run: _Run, hop: Hop) -> int | None:
    conn = hop.connection
    sender_domain = domain_of(hop.envelope.mail_from)
    for i, org in enumerate(run.orgs):
        tenant = org.tenant
        for c in tenant.inbound_connectors:
            if not c.enabled or c.connector_type is not ConnectorType.ON_PREMISES:
                continue
            by_cert = conn.tls and c.tls_sender_certificate_name is not None and any(
                cert_name_matches(c.tls_sender_certificate_name, n) for n in conn.peer_cert_names)
            by_ip = bool(c.sender_ip_addresses) and ip_in_ranges(conn.client_ip,
                                                                 c.sender_ip_addresses)
            if not (by_cert or by_ip):
                continue
            cert_domain = by_cert and any(tenant.accepted_domain(n.lstrip("*.")) is not None
                                          for n in conn.peer_cert_names)
            if cert_domain or tenant.accepted_domain(sender_domain) is not None:
                return i
    return None


def _state(pending: _Pending, run: _Run) -> tuple[object, ...]:
    gw = run.orgs[pending.org].topology.gateway
    message = pending.hop.message
    mark = tuple(v.strip()[:10] for v in values_of(message.headers, gw.marker.header))
    bypass = tuple(values_of(message.headers, gw.bypass_header))
    conn = pending.hop.connection
    # The clock is part of the state: after a delay, marker age and rule windows differ.
    return (pending.node, pending.org, pending.now, frozenset(pending.tracks),
            pending.hop.envelope.mail_from, mark, bypass, message.flags, message.wrapped,
            conn.source, conn.client_ip, conn.peer_cert_names)


def _delayed(run: _Run, pending: _Pending, delays: tuple[Delay, ...]) -> _Pending:
    kind = pending.node
    count = run.visits.get(kind, 0) + 1
    run.visits[kind] = count
    extra = sum(d.seconds for d in delays if d.at == kind and d.visit == count)
    if not extra:
        return pending
    return _Pending(pending.node, pending.hop, pending.tracks, pending.states,
                    pending.from_exo_node, pending.org, pending.now + extra)


def _visit(run: _Run, pending: _Pending) -> None:
    if run.scenario is not None and run.scenario.delays:
        pending = _delayed(run, pending, run.scenario.delays)
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
    limit = run.orgs[pending.org].tenant.org.hop_limit
    if len(run.steps) >= run.max_steps or any(t.exo >= limit for t in pending.tracks.values()):
        for rcpt, track in pending.tracks.items():
            _end(run, track, rcpt, Status.HOP_LIMIT, pending.node, pending.hop.message,
                 reply=Reply(554, "5.4.14", "Hop count exceeded - possible mail loop"))
        return
    pending = _Pending(pending.node, pending.hop, pending.tracks, pending.states | {state},
                       pending.from_exo_node, pending.org, pending.now)
    if pending.node == "exo":
        _visit_exo(run, pending)
    elif pending.node == "gateway":
        _visit_gateway(run, pending, repeated=repeated)
    else:
        _visit_service(run, pending)


def _record(run: _Run, pending: _Pending, at: str, routes: tuple[Route, ...],
            rules: tuple[str, ...], connector: str | None, trace: tuple[TraceStep, ...]) -> int:
    index = len(run.steps)
    kind = next(iter(pending.tracks.values())).kind if pending.tracks else "message"
    if run.multi:
        at = f"{at} ({run.orgs[pending.org].tenant.name})"
    run.steps.append(SimStep(index, at, kind, pending.hop.envelope.mail_from,
                             tuple(pending.tracks), routes, rules, connector, trace))
    return index


def _visit_exo(run: _Run, pending: _Pending) -> None:
    org = run.orgs[pending.org]
    when = datetime.fromtimestamp(pending.now, UTC)
    decision: ExoDecision = decide_exo(pending.hop, org.tenant, now=when)
    passes = 1 + max((t.exo for t in pending.tracks.values()), default=0)
    rules = tuple(dict.fromkeys(r for c in decision.copies for r in c.rules))
    index = _record(run, pending, f"EXO pass {passes}", decision.routes, rules,
                    decision.connector, decision.trace)
    tracks = {r: _advance(t, index, exo=1) for r, t in pending.tracks.items()}
    for route in decision.rejected:
        _end(run, tracks[route.recipient], route.recipient, Status.REJECTED, "exo",
             pending.hop.message, reply=route.reply)
    for copy in decision.copies:
        onward: dict[tuple[tuple[str, int], str | None], list[Route]] = {}
        for route in copy.routes:
            track = _track_for(tracks, route)
            if route.kind in (RouteKind.CONNECTOR, RouteKind.MX):
                onward.setdefault((_host_node(run, pending.org, route.next_hop), route.connector),
                                  []).append(route)
                continue
            status, final = _exo_end(route)
            _end(run, track, route.recipient, status, final, copy.message, reply=route.reply)
        for (node, connector_name), routes in onward.items():
            connector = org.tenant.outbound_connector(connector_name) if connector_name else None
            out = egress_message(org.tenant, copy.message, connector)
            _forward(run, pending, node, out, routes, tracks)
    for generated in decision.generated:
        rcpts = generated.hop.envelope.rcpt_to
        base = tracks.get(generated.source) if generated.source else None
        sender = generated.hop.envelope.mail_from
        new = {r.lower(): _Track(f"{generated.kind}:{r.lower()}", generated.kind, sender,
                                 steps=(index,)) if base is None else
               _Track(f"{generated.kind}:{r.lower()}", generated.kind, sender, base.gw,
                      base.exo, base.flows, base.steps, base.gw, base.svc)
               for r in rcpts}
        run.queue.append(_Pending("exo", generated.hop, new, frozenset(), False, pending.org,
                                  pending.now))


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
                  first.steps, first.gw_base, first.svc)


def _forward(run: _Run, pending: _Pending, target: tuple[str, int], message: MessageFacts,
             routes: list[Route], tracks: dict[str, _Track]) -> None:
    node, org = target
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
    if node == "exo":
        run.queue.extend(_to_exo(run, hop, next_tracks, pending.states, org=org,
                                 now=pending.now, from_exo_node=True))
        return
    run.queue.append(_Pending(node, hop, next_tracks, pending.states, True, org, pending.now))


def _visit_service(run: _Run, pending: _Pending) -> None:
    """A third-party service: sets its headers and hands the message back (scenario)."""
    name = pending.node.split(":", 1)[1]
    scenario = run.scenario
    service = next(s for s in scenario.services if s.name == name) if scenario else None
    if service is None:  # only reachable through a scenario that names it
        raise ValueError(f"unknown service {name}")
    message = pending.hop.message
    headers = message.headers
    for key, value in service.set_headers:
        headers = set_header(headers, key, value)
    message = message.evolve(headers=headers, received_count=message.received_count + 1)
    passes = 1 + max((t.svc for t in pending.tracks.values()), default=0)
    what = ", ".join(f"{k}: {v}" for k, v in service.set_headers) or "no header"
    trace = (TraceStep("S", f"{name} processed the message ({what}); returns to "
                            f"{service.returns}"),)
    index = _record(run, pending, f"service {name} pass {passes}", (), (), None, trace)
    tracks = {r: _advance(t, index, svc=1) for r, t in pending.tracks.items()}
    rcpts = tuple(tracks)
    if service.returns is ServiceReturn.MX:
        for rcpt in rcpts:
            target = _mx_node(run, pending.org, domain_of(rcpt))
            if target[0].startswith("internet:"):
                _end(run, tracks[rcpt], rcpt, Status.DELIVERED, target[0], message)
                continue
            _hand_on(run, pending, target, (rcpt,), message, tracks,
                     Connection(source=Source.INTERNET, client_ip=service.egress_ip, tls=True,
                                peer_cert_names=(service.tls_identity,)))
        return
    conn = Connection(source=Source.INTERNET, client_ip=service.egress_ip, tls=True,
                      peer_cert_names=(service.tls_identity,))
    _hand_on(run, pending, ("exo", pending.org), rcpts, message, tracks, conn)


def _hand_on(run: _Run, pending: _Pending, target: tuple[str, int], rcpts: tuple[str, ...],
             message: MessageFacts, tracks: dict[str, _Track], conn: Connection) -> None:
    """Queue an SMTP hand-over from a gateway or service to EOP or the gateway."""
    hop = Hop(envelope=_env(pending.hop.envelope.mail_from, rcpts), connection=conn,
              message=message, pass_no=pending.hop.pass_no + 1)
    sub = {r: tracks[r] for r in rcpts}
    if target[0] == "exo":
        run.queue.extend(_to_exo(run, hop, sub, pending.states, org=target[1], now=pending.now))
    else:
        run.queue.append(_Pending(target[0], hop, sub, pending.states, False, target[1],
                                  pending.now))


def _visit_gateway(run: _Run, pending: _Pending, *, repeated: bool = False) -> None:
    org = run.orgs[pending.org]
    now = pending.now
    decision: GatewayDecision = decide_gateway(pending.hop, org.topology, markers=org.markers,
                                               now=now, processed=run.processed,
                                               policy=run.policy, transform=run.transform)
    if decision.record is not None:
        record = decision.record
        run.processed.record(record.key, now, record.ttl, fingerprint=record.fingerprint)
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
        ndr = ndr_hop(org.tenant, pending.hop.envelope, pending.hop.message,
                      decision.rejected[0].reply, pending.hop.pass_no)
        if ndr is not None:
            new = {r.lower(): _Track(f"ndr:{r.lower()}", "ndr", "", steps=(index,))
                   for r in ndr.envelope.rcpt_to}
            run.queue.append(_Pending("exo", ndr, new, org=pending.org, now=now))
    gw = org.topology.gateway
    for split in decision.splits:
        split_tracks = {r: _advance(tracks[r], None, flow=str(split.flow))
                        for r in split.recipients}
        if repeated and split.route is not RouteKind.MX:
            for rcpt in split.recipients:
                _end(run, split_tracks[rcpt], rcpt, Status.LOOP, "gateway", split.message,
                     reply=_STATE_LOOP)
            continue
        ip = gw.egress_ips[0] if gw.egress_ips else FLOATING_GATEWAY_IP
        if split.route is RouteKind.MX:
            for rcpt in split.recipients:
                target = _mx_node(run, pending.org, domain_of(rcpt))
                if target[0].startswith("internet:") or not run.multi:
                    _end(run, split_tracks[rcpt], rcpt, Status.DELIVERED, target[0],
                         split.message)
                    continue
                # Another tenant's MX (EOP or a shared gateway): the hand-over continues.
                _hand_on(run, pending, target, (rcpt,), split.message, split_tracks,
                         Connection(source=Source.INTERNET, client_ip=ip, tls=True,
                                    peer_cert_names=(gw.tls_identity,)))
            continue
        conn = Connection(source=Source.GATEWAY, client_ip=ip, tls=True,
                          peer_cert_names=(split.client_identity or gw.tls_identity,))
        hop = Hop(envelope=_env(pending.hop.envelope.mail_from, split.recipients),
                  connection=conn, message=split.message, pass_no=pending.hop.pass_no + 1)
        if not run.multi:
            run.queue.append(_Pending("exo", hop, split_tracks, pending.states, False, 0, now))
            continue
        target = _host_node(run, pending.org, split.next_hop)
        run.queue.extend(_to_exo(run, hop, split_tracks, pending.states,
                                 org=target[1] if target[0] == "exo" else pending.org,
                                 now=now))


def _advance(track: _Track, index: int | None, *, gw: int = 0, exo: int = 0, svc: int = 0,
             flow: str | None = None) -> _Track:
    return _Track(track.original, track.kind, track.sender, track.gw + gw, track.exo + exo,
                  (*track.flows, flow) if flow else track.flows,
                  (*track.steps, index) if index is not None else track.steps, track.gw_base,
                  track.svc + svc)


def _end(run: _Run, track: _Track, address: str, status: Status, final: str,
         message: MessageFacts, *, reply: Reply | None = None) -> None:
    delivered = status is Status.DELIVERED
    headers = run.marker_headers
    marker = delivered and (bool(values_of(message.headers, headers[0])) if len(headers) == 1
                            else any(values_of(message.headers, h) for h in headers))
    bypass = delivered and track.gw - track.gw_base < _required_passes(run, track, address,
                                                                       message)
    run.outcomes.append(JourneyOutcome(track.original, address.lower(), track.kind, status, final,
                                track.gw, track.exo, track.flows, marker,
                                message.disclaimers, bypass, reply, track.steps, track.svc,
                                message.flags))


def _policy_topology(run: _Run, address: str, sender: str) -> Topology:
    if not run.multi:
        return run.orgs[0].topology
    for candidate in (address, sender):
        domain = domain_of(candidate)
        for org in run.orgs:
            if domain and any(is_subdomain(domain, d) for d in org.topology.org_domains):
                return org.topology
    return run.orgs[0].topology


def _required_passes(run: _Run, track: _Track, address: str, message: MessageFacts) -> int:
    """The gateway passes the topology's policy requires here (docs/routing/simulator.md)."""
    topology = (_policy_topology(run, address, track.sender) if run.multi
                else run.orgs[0].topology)
    gw, opts = topology.gateway, topology.exo_config
    domains = topology.org_domains
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
