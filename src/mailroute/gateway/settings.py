"""The gateway's settings: one frozen object for the runtime filter and the simulator alike.

``marker-verify`` builds it from its policy options, the routing simulator from the topology
file (:func:`mailroute.routing.gateway_settings`); both then call the same decision. Values
are validated when the object is built, so an invalid setting never reaches a message.
"""

from __future__ import annotations

import enum

from mailroute.gateway.match import check_ranges
from mailroute.marker.mint import DEFAULT_FIELD
from mailroute.marker.verify import Windows
from mailroute.records import field, record

__all__ = [
    "EXO_TLS_NAMES",
    "GatewaySettings",
    "InvalidMarkerAction",
    "MissingMarkerAction",
    "SourceMode",
]

#: The certificate names Exchange Online presents when it hands mail to a connector.
EXO_TLS_NAMES = ("mail.protection.outlook.com", "*.mail.protection.outlook.com")


class SourceMode(enum.StrEnum):
    """How the gateway decides where a message came from (G1)."""

    AUTO = "auto"                 # from the TLS name, address range and tenant id
    INTERNET = "internet"         # always from the internet
    RETURN_PATH = "return-path"   # always handed back by Exchange Online
    NETWORKS = "networks"         # from the client address (and tenant id): no TLS name needed


class InvalidMarkerAction(enum.StrEnum):
    """What a marker this gateway did not make leads to."""

    STRIP = "strip"
    REJECT = "reject"


class MissingMarkerAction(enum.StrEnum):
    """What a message without a marker leads to."""

    PASS = "pass"  # noqa: S105 - a policy value, not a password
    REJECT = "reject"


@record(frozen=True, kw_only=True)
class GatewaySettings:
    """What G1-G3 of the gateway procedure need.

    Attributes:
        marker_field: the marker header field.
        windows: the marker's time windows (fresh, expired, future).
        source: how the source is decided.
        return_path_tls_names: verified certificate names that mean "Exchange Online"
            (``*.`` matches exactly one more label).
        return_path_networks: when not empty, the client address must lie in one of these
            (address, CIDR or ``first-last``) for the source to be Exchange Online.
        tenant_id: when set, ``X-MS-Exchange-CrossTenant-Id`` must name this tenant.
        on_invalid: a marker this gateway did not make is stripped or refused (5.7.1).
        on_missing: a message without a marker, or with an invalid one (which counts as
            absent), passes or is refused (5.7.1), for a host that must accept only mail
            that passed the gateway.
        max_received: more ``Received`` fields than this is a loop (5.4.6).
        processed_limit: a message recorded this often within ``processed_ttl`` is a loop;
            0 turns the processed-message guard off.
        processed_ttl: how long a processed message is remembered, in seconds.
        strip_ms_headers: remove ``X-MS-Exchange-Organization-*`` and ``-CrossPremises-*``
            fields from internet mail (Exchange trusts them on its own connectors).
        strip_tenant_header: remove ``X-MS-Exchange-CrossTenant-Id`` after reading it.
        bypass_header: a per-pass header Exchange rules set, removed on every arrival.
    """

    marker_field: str = DEFAULT_FIELD
    windows: Windows = field(default_factory=Windows)
    source: SourceMode = SourceMode.AUTO
    return_path_tls_names: tuple[str, ...] = EXO_TLS_NAMES
    return_path_networks: tuple[str, ...] = ()
    tenant_id: str | None = None
    on_invalid: InvalidMarkerAction = InvalidMarkerAction.STRIP
    on_missing: MissingMarkerAction = MissingMarkerAction.PASS
    max_received: int = 100
    processed_limit: int = 1
    processed_ttl: int = 3600
    strip_ms_headers: bool = False
    strip_tenant_header: bool = False
    bypass_header: str | None = None

    def __post_init__(self) -> None:
        for name, kind in (("source", SourceMode), ("on_invalid", InvalidMarkerAction),
                           ("on_missing", MissingMarkerAction)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError:
                choices = ", ".join(k.value for k in kind)
                raise ValueError(f"{name} must be one of {choices}, not {value!r}") from None
        if self.max_received < 1 or self.processed_ttl < 1 or self.processed_limit < 0:
            raise ValueError("max_received and processed_ttl must be at least 1, "
                             "processed_limit at least 0")
        if self.windows.loop_window > self.windows.max_age:
            raise ValueError("loop_window must not be longer than max_age")
        check_ranges(self.return_path_networks)
        if self.source is SourceMode.NETWORKS and not self.return_path_networks:
            raise ValueError("source = networks needs return_path_networks")
        if self.tenant_id is not None:
            object.__setattr__(self, "tenant_id", self.tenant_id.strip().lower() or None)
