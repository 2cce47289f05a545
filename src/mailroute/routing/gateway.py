"""The gateway's procedure for one received message, G1-G8 of section 2.8, as a pure function.

``decide_gateway`` classifies the source (G1), applies the loop guards (G2), cleans headers
and verifies markers (G3, verdicts of section 5.7 from a :class:`~.markers.MarkerCodec`),
never bounces a bounce (G4), splits recipients by direction (G5), asks the policy (G6),
mints the marker last (G7) and picks the next hop (G8). The processed-ID cache is passed in
as a mapping of counts; the decision returns the key to count.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mailroute.results import MarkerVerdict, Reply
from mailroute.routing.decide import Route, RouteKind, TraceStep
from mailroute.routing.hop import (
    Hop,
    MessageFacts,
    MessageFlag,
    header_values,
    remove_headers,
    set_header,
)
from mailroute.routing.markers import MarkerCheck, MarkerCodec
from mailroute.routing.match import cert_name_matches, domain_of, ip_in_ranges, is_subdomain
from mailroute.routing.topology import Topology, TopologyKind

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CacheKey",
    "Flow",
    "GatewayDecision",
    "GatewayPolicy",
    "GatewaySplit",
    "decide_gateway",
]

CacheKey = tuple[str, tuple[str, ...], str]
EXO_TLS_NAME = "*.mail.protection.outlook.com"
_MS_PREFIXES = ("x-ms-exchange-organization-", "x-ms-exchange-crosspremises-")
_LOOP = Reply(554, "5.4.6", "mailroute: routing loop detected")


class Flow(enum.StrEnum):
    """Direction of one recipient relative to the organisation (G5)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    RELAY = "relay"

    @property
    def letter(self) -> str:
        """The marker's direction field (``i``, ``o``, ``n``, ``x``)."""
        return {"inbound": "i", "outbound": "o", "internal": "n"}.get(self.value, "x")


class GatewayPolicy(Protocol):
    """The gateway's pipelines, reduced to their verdict: a refusal or ``None``."""

    def __call__(self, flow: Flow, recipients: tuple[str, ...],
                 message: MessageFacts) -> Reply | None:
        """Return the in-session refusal for these recipients, or ``None`` to accept."""
        ...


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class GatewayDecision:
    """What the gateway did with one received message.

    Attributes:
        from_exo: G1 classification.
        marker: the verdict on the marker field(s) received.
        rejected: recipients refused in the session (kind ``REJECT``, with reply).
        splits: the messages sent on.
        cache_key: the processed-ID cache key to count, ``None`` without Message-ID.
        trace: the explained steps.
    """

    from_exo: bool
    marker: MarkerCheck
    rejected: tuple[Route, ...]
    splits: tuple[GatewaySplit, ...]
    cache_key: CacheKey | None
    trace: tuple[TraceStep, ...]

    @property
    def routes(self) -> tuple[Route, ...]:
        """Per-recipient routes: every split's recipients, then the refusals."""
        sent = (Route(r, s.route, s.next_hop) for s in self.splits for r in s.recipients)
        return (*sent, *self.rejected)


def decide_gateway(hop: Hop, topology: Topology, *, markers: MarkerCodec, now: int,
                   seen: Mapping[CacheKey, int] | None = None,
                   policy: GatewayPolicy | None = None) -> GatewayDecision:
    """Run G1-G8 for ``hop`` arriving at the gateway of ``topology``.

    Args:
        hop: the message as received.
        topology: tenant, gateway and options.
        markers: verifies and mints markers (section 5).
        now: the clock, Unix seconds.
        seen: processed-ID cache counts within the TTL (G2).
        policy: the gateway's policy verdict (G6); ``None`` accepts everything.
    """
    gw = topology.gateway
    trace: list[TraceStep] = []
    message = hop.message
    rcpts = tuple(r.lower() for r in hop.envelope.rcpt_to)
    from_exo = _from_exo(hop, topology)
    trace.append(TraceStep("G1", "from EXO (TLS name, EOP range, tenant id)" if from_exo else
                           "from the internet (not EXO of this tenant)"))
    values = header_values(message.headers, gw.marker.header)
    check = markers.verify(values, message, now)
    flows = {r: _flow(hop.envelope.mail_from, r, topology) for r in rcpts}
    key: CacheKey | None = None
    if message.message_id:
        key = (message.message_id, tuple(sorted(rcpts)),
               ",".join(sorted({str(f) for f in flows.values()})))
    refusal = _loop_guard(gw.max_received, gw.processed_cache_threshold, message, key, seen,
                          from_exo, check, trace)
    if refusal is not None:
        refused = tuple(Route(r, RouteKind.REJECT, reply=refusal) for r in rcpts)
        return GatewayDecision(from_exo, check, refused, (), key, tuple(trace))
    message = _hygiene(message, topology, from_exo, check, trace)
    rejected: list[Route] = []
    groups: dict[Flow, list[str]] = {}
    for rcpt in rcpts:
        flow = flows[rcpt]
        if flow is Flow.RELAY and not from_exo:
            reply = Reply(550, "5.7.1", "mailroute: relay not permitted")
            rejected.append(Route(rcpt, RouteKind.REJECT, reply=reply))
            trace.append(TraceStep("G5", f"{rcpt}: relay from the internet refused"))
            continue
        groups.setdefault(flow, []).append(rcpt)
    is_dsn = not hop.envelope.mail_from or message.has(MessageFlag.DSN)
    if is_dsn:
        trace.append(TraceStep("G4", "bounce (null sender or report): no policy refusal"))
    splits: list[GatewaySplit] = []
    for flow, members in groups.items():
        verdict = None if is_dsn or policy is None else policy(flow, tuple(members), message)
        if verdict is not None:
            rejected.extend(Route(r, RouteKind.REJECT, reply=verdict) for r in members)
            trace.append(TraceStep("G6", f"policy refuses {flow} mail: {verdict}"))
            continue
        splits.extend(_send(topology, markers, now, flow, tuple(members), message, from_exo,
                            trace))
    return GatewayDecision(from_exo, check, tuple(rejected), tuple(splits), key, tuple(trace))


def _from_exo(hop: Hop, topology: Topology) -> bool:
    conn = hop.connection
    name_ok = conn.tls and any(cert_name_matches(EXO_TLS_NAME, n) for n in conn.peer_cert_names)
    ip_ok = ip_in_ranges(conn.client_ip, topology.gateway.exo_ip_ranges)
    ids = header_values(hop.message.headers, "X-MS-Exchange-CrossTenant-Id")
    return name_ok and ip_ok and topology.tenant.tenant_id.lower() in (i.lower() for i in ids)


def _flow(sender: str, rcpt: str, topology: Topology) -> Flow:
    domains = topology.org_domains
    rcpt_in = any(is_subdomain(domain_of(rcpt), d) for d in domains)
    sender_domain = domain_of(sender)
    if not sender_domain:
        return Flow.INBOUND if rcpt_in else Flow.OUTBOUND
    sender_in = any(is_subdomain(sender_domain, d) for d in domains)
    if sender_in:
        return Flow.INTERNAL if rcpt_in else Flow.OUTBOUND
    return Flow.INBOUND if rcpt_in else Flow.RELAY


def _loop_guard(max_received: int, threshold: int, message: MessageFacts,
                key: CacheKey | None, seen: Mapping[CacheKey, int] | None, from_exo: bool,
                check: MarkerCheck, trace: list[TraceStep]) -> Reply | None:
    if message.received_count > max_received:
        trace.append(TraceStep("G2", f"{message.received_count} Received fields: loop"))
        return _LOOP.with_text("mailroute: too many hops")
    if key is not None and seen is not None and seen.get(key, 0) + 1 >= threshold:
        trace.append(TraceStep("G2", "processed-ID cache: same message, recipients and "
                               "direction seen before: loop"))
        return _LOOP
    if from_exo and check.verdict is MarkerVerdict.VALID_FRESH:
        trace.append(TraceStep("G3", f"own fresh marker from EXO (age {check.age_seconds} s): "
                               "already processed, loop"))
        return _LOOP.with_text(f"mailroute: message already processed (age "
                               f"{check.age_seconds} s)")
    return None


def _hygiene(message: MessageFacts, topology: Topology, from_exo: bool, check: MarkerCheck,
             trace: list[TraceStep]) -> MessageFacts:
    gw = topology.gateway
    headers = remove_headers(message.headers, name=gw.bypass_header)
    if check.verdict is not MarkerVerdict.MISSING:
        where = "EXO" if from_exo else "the internet"
        trace.append(TraceStep("G3", f"marker from {where}: {check.verdict}; removed"))
        headers = remove_headers(headers, name=gw.marker.header)
    if not from_exo and gw.strip_ms_headers:
        headers = remove_headers(headers, prefixes=_MS_PREFIXES)
        trace.append(TraceStep("G3", "internet mail: X-MS-Exchange organization and "
                               "cross-premises headers removed"))
    headers = remove_headers(headers, name="X-MS-Exchange-CrossTenant-Id")
    message = message.evolve(headers=headers, received_count=message.received_count + 1)
    if not message.message_id:
        digest = hashlib.sha256(repr(message.headers).encode()).hexdigest()[:16]
        new_id = f"<mailroute.{digest}@{gw.tls_identity}>"
        message = message.evolve(message_id=new_id,
                                 headers=set_header(message.headers, "Message-ID", new_id))
        trace.append(TraceStep("G3", "no Message-ID: one added before minting"))
    return message


def _send(topology: Topology, markers: MarkerCodec, now: int, flow: Flow,
          rcpts: tuple[str, ...], message: MessageFacts, from_exo: bool,
          trace: list[TraceStep]) -> list[GatewaySplit]:
    gw = topology.gateway
    if gw.topology is TopologyKind.T1 and flow in (Flow.OUTBOUND, Flow.RELAY):
        out: list[GatewaySplit] = []
        by_domain: dict[str, list[str]] = {}
        for r in rcpts:
            by_domain.setdefault(domain_of(r), []).append(r)
        for domain, members in by_domain.items():
            trace.append(TraceStep("G8", f"{flow} to {domain}: recipient MX, marker removed"))
            out.append(GatewaySplit(tuple(members), flow, RouteKind.MX, f"mx:{domain}", None,
                                    message))
        return out
    identity = gw.tls_identity
    if gw.topology is TopologyKind.T3 and not from_exo and gw.inbound_tls_identity:
        identity = gw.inbound_tls_identity
    token = markers.mint(message, flow.letter, now)
    marked = message.with_headers(set_header(message.headers, gw.marker.header, token))
    trace.append(TraceStep("G7", f"{flow} processed; marker minted ({flow.letter})"))
    trace.append(TraceStep("G8", f"to {topology.tenant.exo_smart_host} as {identity}"))
    return [GatewaySplit(rcpts, flow, RouteKind.EXO, topology.tenant.exo_smart_host, identity,
                         marked)]
