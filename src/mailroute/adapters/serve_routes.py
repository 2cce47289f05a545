"""Where ``mailroute serve`` sends each recipient: one fixed next hop, or the gateway
decision of a topology (the same G1, G5 and G8 that ``mailroute simulate`` shows).

A route is a :class:`NextHop` and the direction the policy runs with for that recipient, or
an SMTP reply refusing the recipient. Recipients with the same route share one next-hop
transaction; recipients with different directions get separate ones, so each group is
processed with its own direction (and marker) as G5 requires.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Protocol

from mailroute.errors import TemporaryError
from mailroute.gateway.decide import Arrival, ArrivalSource, classify_source
from mailroute.gateway.flow import Flow, direction_of, domain_of, flow_of, is_inside
from mailroute.item import Direction
from mailroute.marker.verify import MarkerCheck
from mailroute.records import field, record, replace
from mailroute.results import MarkerVerdict
from mailroute.routing.decide import RouteKind
from mailroute.routing.gateway import gateway_next_hop, gateway_settings
from mailroute.routing.topology import Topology

__all__ = ["ConnectionFacts", "FixedRouter", "NextHop", "Route", "Router", "TopologyRouter"]

RELAY_REFUSED = "550 5.7.1 mailroute: relay not permitted"
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


@record(frozen=True)
class FixedRouter:
    """Every recipient to one next hop (``--next-hop``)."""

    fixed: NextHop
    blocking: bool = False

    def route(self, sender: str, recipient: str, conn: ConnectionFacts) -> Route | str:
        """Always the fixed next hop."""
        return Route(self.fixed)


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
        # Before DATA the tenant header cannot be read; marker-verify checks it later.
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
        if flow is Flow.RELAY and not from_exo:
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

    def smart_host(self) -> NextHop:
        """The tenant's smart host as a next hop (for the health probe)."""
        return self._hop(self.topology.tenant.exo_smart_host)

    def _hop(self, name: str, identity: str | None = None) -> NextHop:
        host, port = self.overrides.get(name.lower().rstrip("."), (name, self.port))
        tls = self.identities.get((identity or "").lower(), self.tls)
        return NextHop(host, port, tls, name if tls else None, name,
                       identity if tls else None)
