"""Where ``mailroute serve`` sends each recipient: one fixed next hop, or the gateway
decision of a topology (the same G1, G5 and G8 that ``mailroute simulate`` shows).

A route is a :class:`NextHop` and the direction the policy runs with for that recipient, or
an SMTP reply refusing the recipient. Recipients with the same route share one next-hop
transaction; recipients with different directions get separate ones, so each group is
processed with its own direction (and marker) as G5 requires.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from mailroute.errors import MailrouteError, TemporaryError
from mailroute.gateway.decide import TENANT_HEADER, Arrival, ArrivalSource, classify_source
from mailroute.gateway.flow import (
    RELAY_REFUSAL,
    TENANT_RELAY_REFUSAL,
    direction_of,
    domain_of,
    flow_of,
    is_inside,
    leaves,
    may_relay,
)
from mailroute.item import Direction
from mailroute.limits import DEFAULT_LIMITS
from mailroute.marker.verify import MarkerCheck
from mailroute.mime.headers import scan_header_block
from mailroute.records import field, record, replace
from mailroute.results import MarkerVerdict
from mailroute.routing.decide import RouteKind
from mailroute.routing.gateway import gateway_next_hop, gateway_settings
from mailroute.routing.topology import Topology

__all__ = ["ConnectionFacts", "FixedRouter", "NextHop", "Route", "Router", "TopologyRouter"]

RELAY_REFUSED = str(RELAY_REFUSAL)
TENANT_RELAY_REFUSED = str(TENANT_RELAY_REFUSAL)
_NO_MARKER = MarkerCheck(MarkerVerdict.MISSING, "not read before DATA")


@record(frozen=True)
class NextHop:
    """Where accepted mail goes: host, port, and TLS (``tls``: STARTTLS required, the
    certificate verified against ``tls_name`` or the host name). ``name`` is what the
    gateway decision called it (the smart host, the MX host), for the log."""

    host: str
    port: int
    tls: ssl.SSLContext | None = field(default=None, compare=False, hash=False)
    tls_name: str | None = None
    name: str | None = field(default=None, compare=False)
    #: the client certificate name presented (connections are reused per identity)
    identity: str | None = None

    def __str__(self) -> str:
        label = f"{self.host}:{self.port}"
        return f"{self.name} ({label})" if self.name and self.name != self.host else label


@record(frozen=True)
class ConnectionFacts:
    """What the session knows about its client before DATA."""

    tls_peer_names: tuple[str, ...] = ()
    client_address: str | None = None


@record(frozen=True)
class Route:
    """One recipient's route: the next hop and the direction its group is processed with
    (``None``: the policy derives it); ``fallbacks`` are tried in order when the next hop
    cannot be reached (a domain's less preferred MX hosts)."""

    hop: NextHop
    direction: Direction | None = None
    fallbacks: tuple[NextHop, ...] = field(default=(), compare=False)

    def candidates(self) -> tuple[NextHop, ...]:
        """The next hop, then its fallbacks."""
        return (self.hop, *self.fallbacks)


class Router(Protocol):
    """Chooses a route per recipient."""

    @property
    def fixed(self) -> NextHop | None:
        """The one next hop when there is only one: the transaction is opened at MAIL."""
        ...

    @property
    def blocking(self) -> bool:
        """True when :meth:`route` may block (DNS): the service runs it in a thread."""
        ...

    def route(self, sender: str, recipient: str, conn: ConnectionFacts) -> Route | str:
        """The route of ``recipient``, or the SMTP reply refusing it."""
        ...

    def admit(self, sender: str, recipients: Sequence[str], conn: ConnectionFacts,
              data: bytes) -> str | None:
        """At the final dot: the reply refusing the message when its content shows that
        the recipients were taken on a premise it disproves, else ``None``."""
        ...


@record(frozen=True)
class FixedRouter:
    """Every recipient to one next hop (``--next-hop``)."""

    fixed: NextHop
    blocking: bool = False

    def route(self, sender: str, recipient: str, conn: ConnectionFacts) -> Route | str:
        """Always the fixed next hop."""
        return Route(self.fixed)

    def admit(self, sender: str, recipients: Sequence[str], conn: ConnectionFacts,
              data: bytes) -> str | None:
        """Nothing to check: relay control is the MTA's in front of us."""
        return None


class TopologyRouter:
    """Routes from the topology's gateway decision.

    Args:
        topology: the loaded topology.
        resolve_mx: ``domain -> MX host names``, most preferred first; raises
            :class:`TemporaryError` on a DNS timeout (``DnsLookup.mx``).
        relay: the relay for mail to the internet instead of the recipient's MX.
        overrides: next-hop names (smart host, MX hosts) to reach at another address,
            e.g. a smart host through a local port.
        tls: the client TLS context for every next hop (``None``: no STARTTLS).
        identities: client TLS contexts by the identity the decision names (G8: in T3
            mail from the internet goes to Exchange as ``inbound_tls_identity``); an
            identity not listed uses ``tls``.
        port: the SMTP port of next hops without an override.
    """

    fixed: NextHop | None = None
    blocking = True

    def __init__(self, topology: Topology, *, resolve_mx: Callable[[str], list[str]],
                 relay: NextHop | None = None,
                 overrides: Mapping[str, tuple[str, int]] | None = None,
                 tls: ssl.SSLContext | None = None,
                 identities: Mapping[str, ssl.SSLContext] | None = None,
                 port: int = 25) -> None:
        self.topology = topology
        self.domains = topology.org_domains
        # Before DATA the tenant header cannot be read: RCPT goes on the connection's word,
        # and admit() checks the tenant id at the final dot.
        self.tenant_id = gateway_settings(topology).tenant_id
        self.settings = replace(gateway_settings(topology), tenant_id=None)
        self.resolve_mx = resolve_mx
        self.relay = relay
        self.overrides = {name.lower(): target for name, target in (overrides or {}).items()}
        self.tls = tls
        self.identities = {k.lower(): v for k, v in (identities or {}).items()}
        self.port = port

    def from_exo(self, conn: ConnectionFacts) -> bool:
        """G1 with the facts of the connection: Exchange Online's name and addresses."""
        arrival = Arrival(_NO_MARKER, conn.tls_peer_names, conn.client_address)
        return classify_source(arrival, self.settings) is ArrivalSource.RETURN_PATH

    def route(self, sender: str, recipient: str, conn: ConnectionFacts) -> Route | str:
        """G5 and G8 for one recipient (G2-G4, G6 and G7 are the policy's, at DATA)."""
        flow = flow_of(sender, recipient, self.domains)
        from_exo = self.from_exo(conn)
        if not may_relay(flow, from_exo=from_exo):
            return RELAY_REFUSED
        direction = direction_of((flow,), sender_inside=is_inside(domain_of(sender),
                                                                  self.domains))
        choice = gateway_next_hop(self.topology, flow, recipient, from_exo=from_exo)
        if choice.route is RouteKind.EXO:
            return Route(self._hop(choice.next_hop, choice.client_identity), direction)
        if self.relay is not None:
            return Route(self.relay, direction)
        domain = choice.next_hop.removeprefix("mx:")
        try:
            hosts = self.resolve_mx(domain)
        except TemporaryError:
            return "451 4.4.3 DNS lookup of the recipient domain failed, try again later"
        if not hosts:
            return Route(self._hop(domain), direction)  # RFC 5321 5.1: the implicit MX
        return Route(self._hop(hosts[0]), direction, tuple(self._hop(h) for h in hosts[1:]))

    def admit(self, sender: str, recipients: Sequence[str], conn: ConnectionFacts,
              data: bytes) -> str | None:
        """G5 with the tenant id: recipients outside the organisation were taken because the
        connection came from Exchange Online, whose name and address ranges every Microsoft
        365 tenant shares; only ``X-MS-Exchange-CrossTenant-Id`` says whose. Another
        tenant's (or none) refuses the message: the gateway is no relay for other tenants."""
        if self.tenant_id is None or not leaves(sender, recipients, self.domains):
            return None
        if self.tenant_id in (t.strip().lower() for t in tenant_ids(data)):
            return None
        return TENANT_RELAY_REFUSED

    def smart_host(self) -> NextHop:
        """The tenant's smart host as a next hop (for the health probe)."""
        return self._hop(self.topology.tenant.exo_smart_host)

    def _hop(self, name: str, identity: str | None = None) -> NextHop:
        host, port = self.overrides.get(name.lower().rstrip("."), (name, self.port))
        tls = self.identities.get((identity or "").lower(), self.tls)
        return NextHop(host, port, tls, name if tls else None, name,
                       identity if tls else None)


def tenant_ids(data: bytes) -> tuple[str, ...]:
    """The ``X-MS-Exchange-CrossTenant-Id`` values of the message's top-level header (none
    when the header cannot be read within the limits)."""
    try:
        scanned = scan_header_block(data, 0, len(data), DEFAULT_LIMITS, ())
    except MailrouteError:
        return ()
    return tuple(f.value for f in scanned.block.get_all(TENANT_HEADER))
