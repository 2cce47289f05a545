"""The gateway, its marker settings, the generator options, and the whole topology file.

Every key is described in docs/routing/topology-reference.md.
"""

from __future__ import annotations

import enum

from mailroute.gateway.spoof import SpoofPolicy
from mailroute.records import field, record
from mailroute.routing.model import Tenant

__all__ = [
    "EXO_IP_RANGES",
    "ExoConfigOptions",
    "GatewayConfig",
    "MarkerConfig",
    "Placement",
    "RoutingMode",
    "Topology",
    "TopologyKind",
]

#: EOP/EXO egress ranges the gateway accepts as "from EXO" (published by Microsoft; injected).
EXO_IP_RANGES: tuple[str, ...] = ("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14",
                                  "104.47.0.0/17")


class TopologyKind(enum.StrEnum):
    """Where the gateway sits relative to Exchange Online."""

    T1 = "T1"  # in front: MX on the gateway, gateway sends to the internet
    T2 = "T2"  # beside, MX on EOP
    T3 = "T3"  # beside, MX on the gateway


class Placement(enum.StrEnum):
    """Where the mailroute rule block goes among existing rules."""

    TOP = "top"
    BOTTOM = "bottom"


class RoutingMode(enum.StrEnum):
    """T2/T3: route all mail through the gateway, or inbound and outbound only."""

    ALL = "all"
    DIRECTIONAL = "directional"


@record(frozen=True, kw_only=True)
class MarkerConfig:
    """The loop marker (docs/marker.md): header name, deployment tag and time windows."""

    tag: str
    header: str = "X-Mailroute-Mark"
    max_age_s: int = 7 * 86400
    max_future_skew_s: int = 300


@record(frozen=True, kw_only=True)
class GatewayConfig:
    """The mailroute gateway as EXO and the simulator see it (docs/routing/topology-reference.md).

    Args:
        topology: T1, T2 or T3.
        hostname: the smart host EXO delivers to (``SmartHosts``, ``TlsDomain``).
        tls_identity: the certificate name the gateway presents to EXO.
        certificate_names: the SANs of that certificate (default: ``tls_identity``).
        inbound_tls_identity: optional second identity for internet-to-EXO hops (T3).
        org_domains: the domains the gateway treats as local (default: the tenant's
            non-initial accepted domains).
        egress_ips: static egress addresses (rule ``01`` uses them).
        egress_ips_shared: the egress addresses are shared with others (cloud relay, NAT).
        exo_ip_ranges: ranges accepted as "from EXO".
        loop_window_s: a valid own marker younger than this, arriving from EXO, is a loop.
        processed_cache_ttl_s / processed_limit: the processed-message loop guard: an arrival
            is a loop when the gateway sent the same message (Message-ID, recipients,
            direction) on ``processed_limit`` times within the TTL (``marker-verify``'s
            ``processed_ttl`` and ``processed_limit``).
        max_received: ``Received`` count above which mail is refused as a loop.
        strip_ms_headers: remove ``X-MS-Exchange-Organization-*``/``-CrossPremises-*`` from
            internet mail.
        bypass_header: the per-pass bypass header EXO rules set.
        on_spoof: own-domain mail from the internet without an aligned DMARC pass (the
            ``dkim-verify`` filter's ``on_spoof``): ``reject`` (550 5.7.1), ``quarantine``,
            ``flag`` or ``off`` (the default: a gateway without ``dkim-verify``).
    """

    topology: TopologyKind
    hostname: str
    tls_identity: str
    marker: MarkerConfig
    certificate_names: tuple[str, ...] = ()
    inbound_tls_identity: str | None = None
    org_domains: tuple[str, ...] = ()
    egress_ips: tuple[str, ...] = ()
    egress_ips_shared: bool = False
    exo_ip_ranges: tuple[str, ...] = EXO_IP_RANGES
    loop_window_s: int = 3600
    processed_cache_ttl_s: int = 3600
    processed_limit: int = 1
    max_received: int = 100
    strip_ms_headers: bool = True
    bypass_header: str = "X-Mailroute-Bypass"
    on_spoof: SpoofPolicy = SpoofPolicy.OFF

    @property
    def identities(self) -> tuple[str, ...]:
        """Every host name that reaches the gateway (smart host and TLS identities)."""
        names = [self.hostname, self.tls_identity]
        if self.inbound_tls_identity:
            names.append(self.inbound_tls_identity)
        return tuple(dict.fromkeys(n.lower() for n in names))

    @property
    def sans(self) -> tuple[str, ...]:
        """The gateway certificate's names (``certificate_names`` or the TLS identity)."""
        return self.certificate_names or (self.tls_identity,)


@record(frozen=True, kw_only=True)
class ExoConfigOptions:
    """Options of the generated tenant configuration (docs/routing/topology-reference.md).

    Args:
        placement: the mailroute rules at the top (priorities 0..n) or below existing rules.
        mode: T2/T3 all-mail routing or directional (inbound and outbound only).
        route_calendaring: send meeting requests through the gateway (else a bypass rule).
        cloud_services_mail_enabled: ``CloudServicesMailEnabled`` on both mailroute connectors.
        inbound_scl_exception: directional mode: ``-ExceptIfSCLOver`` on the inbound rule.
        t1_onpremises_inbound: T1: also create the OnPremises inbound connector variant.
        accept_forged_marker_risk: T2/T3 without static egress IPs: use the directionality
            header instead of the egress IP in rule ``01``.
        reject_direct_send: emit ``Set-OrganizationConfig -RejectDirectSend $true``.
        probe_recipient: the external address ``Validate-OutboundConnector`` sends to.
    """

    placement: Placement = Placement.TOP
    mode: RoutingMode = RoutingMode.ALL
    route_calendaring: bool = False
    cloud_services_mail_enabled: bool = False
    inbound_scl_exception: int | None = None
    t1_onpremises_inbound: bool = False
    accept_forged_marker_risk: bool = False
    reject_direct_send: bool = False
    probe_recipient: str = "probe@example.com"


@record(frozen=True, kw_only=True)
class Topology:
    """A topology file: the tenant as it is, the gateway, and the generator options."""

    tenant: Tenant
    gateway: GatewayConfig
    exo_config: ExoConfigOptions = field(default_factory=ExoConfigOptions)

    @property
    def org_domains(self) -> tuple[str, ...]:
        """The gateway's local domains (configured, else the non-initial accepted domains)."""
        if self.gateway.org_domains:
            return self.gateway.org_domains
        own = self.gateway.identities
        return tuple(d.domain for d in self.tenant.accepted_domains
                     if not d.is_initial and d.domain.lower() not in own)
