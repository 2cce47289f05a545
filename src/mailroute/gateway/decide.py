"""The gateway's decision on one arrival: G1-G3 of the gateway procedure, as a pure function.

Where did the message come from (G1: the verified TLS name, the client address and the
tenant id say "handed back by Exchange Online", or it is internet mail), is it a loop (G2:
too many ``Received`` fields, processed before; G3: our own fresh marker handed back), what
does its marker mean, and which header fields must go before the filters run (hygiene).

The runtime filter ``marker-verify`` and the routing simulator both describe the arrival as
an :class:`Arrival` and act on the :class:`ArrivalDecision` this module returns, so that
``mailroute simulate`` predicts exactly what the gateway does.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from mailroute.gateway.match import cert_name_matches, ip_in_ranges
from mailroute.gateway.settings import (
    GatewaySettings,
    InvalidMarkerAction,
    MissingMarkerAction,
    SourceMode,
)
from mailroute.marker.verify import MarkerCheck
from mailroute.records import replace
from mailroute.results import MarkerVerdict, Reply

__all__ = [
    "INVALID_VERDICTS",
    "MS_HEADER_PREFIXES",
    "TENANT_HEADER",
    "Arrival",
    "ArrivalDecision",
    "ArrivalSource",
    "GatewayStep",
    "classify_source",
    "decide_arrival",
    "exo_by_connection",
]

#: Verdicts that mean "not a marker this gateway made" (``on_invalid`` applies to them).
INVALID_VERDICTS = frozenset({MarkerVerdict.MALFORMED, MarkerVerdict.FOREIGN,
                              MarkerVerdict.UNKNOWN_KEY, MarkerVerdict.FUTURE,
                              MarkerVerdict.BAD_MAC})
MS_HEADER_PREFIXES = ("x-ms-exchange-organization-", "x-ms-exchange-crosspremises-")
TENANT_HEADER = "X-MS-Exchange-CrossTenant-Id"


class ArrivalSource(enum.StrEnum):
    """Where a message came from (G1)."""

    INTERNET = "internet"
    RETURN_PATH = "return-path"


class GatewayStep(NamedTuple):
    """One explained step of a decision, for traces and logs; the routing model's
    ``TraceStep`` is this type, so the simulator takes the gateway's steps as they are.

    A named tuple: a decision makes several, and construction cost counts.

    Attributes:
        step: the step code (``G1`` ... here; ``E1``, ``R``, ``X`` in the routing model).
        detail: what happened and why, in the administrator's words.
        rule: the transport rule concerned, if any.
        connector: the connector concerned, if any.
    """

    step: str
    detail: str
    rule: str | None = None
    connector: str | None = None


class Arrival(NamedTuple):
    """The facts of one arrival that the decision needs (a named tuple: the simulator makes
    one per gateway pass, and construction cost counts).

    Attributes:
        tls_peer_names: the client's verified certificate names (empty without TLS).
        client_address: the client's IP address, if known.
        tenant_ids: the values of ``X-MS-Exchange-CrossTenant-Id``.
        received_count: the number of top-level ``Received`` fields.
        processed_count: how often this message (Message-ID, recipients, direction) was
            recorded as processed within the TTL, this arrival's own records excluded.
        marker: the verdict on the marker field(s).
    """

    marker: MarkerCheck
    tls_peer_names: tuple[str, ...] = ()
    client_address: str | None = None
    tenant_ids: tuple[str, ...] = ()
    received_count: int = 0
    processed_count: int = 0


class ArrivalDecision(NamedTuple):
    """What to do with an arrival.

    Attributes:
        source: G1.
        marker: the marker verdict the decision rests on.
        refusal: the reply refusing the message, or ``None`` to go on.
        remove_fields: header field names to remove before the filters run.
        remove_prefixes: lower-case field name prefixes to remove as well.
        trace: the explained steps.
    """

    source: ArrivalSource
    marker: MarkerCheck
    refusal: Reply | None
    remove_fields: tuple[str, ...]
    remove_prefixes: tuple[str, ...]
    trace: tuple[GatewayStep, ...]

    @property
    def is_loop(self) -> bool:
        """True when the message was refused as a loop (5.4.6)."""
        return self.refusal is not None and self.refusal.status == "5.4.6"


def classify_source(arrival: Arrival, settings: GatewaySettings) -> ArrivalSource:
    """G1: ``RETURN_PATH`` when Exchange Online of this tenant handed the message over.

    With ``source = auto``: a verified TLS name must match ``return_path_tls_names``, the
    client address lie in ``return_path_networks`` (when given) and a tenant id header name
    ``tenant_id`` (when given). With ``source = networks`` (for adapters that cannot pass a
    TLS name, such as Postfix ``pipe(8)``): the client address must lie in
    ``return_path_networks`` and the tenant id match (when given); the TLS name is not asked.
    """
    if settings.source in (SourceMode.INTERNET, SourceMode.RETURN_PATH):
        return ArrivalSource(settings.source.value)
    if settings.source is SourceMode.AUTO and not any(
            cert_name_matches(pattern, name.rstrip("."))
            for name in arrival.tls_peer_names for pattern in settings.return_path_tls_names):
        return ArrivalSource.INTERNET
    if settings.return_path_networks and not ip_in_ranges(arrival.client_address,
                                                          settings.return_path_networks):
        return ArrivalSource.INTERNET
    if settings.tenant_id is not None and settings.tenant_id not in (
            t.strip().lower() for t in arrival.tenant_ids):
        return ArrivalSource.INTERNET
    return ArrivalSource.RETURN_PATH


def exo_by_connection(arrival: Arrival, settings: GatewaySettings) -> bool:
    """G1 on the connection alone (certificate name, address ranges), as it stands before
    DATA, when the tenant id header cannot be read yet."""
    without_tenant = replace(settings, tenant_id=None)
    return classify_source(arrival, without_tenant) is ArrivalSource.RETURN_PATH


def decide_arrival(arrival: Arrival, settings: GatewaySettings) -> ArrivalDecision:
    """G1-G3 for one arrival: source, loop guards, marker verdict, hygiene."""
    source = classify_source(arrival, settings)
    check = arrival.marker
    trace = [GatewayStep("G1", "handed back by Exchange Online (TLS name, address, tenant id)"
                         if source is ArrivalSource.RETURN_PATH else "from the internet")]
    refusal = _refusal(arrival, source, settings, trace)
    remove: list[str] = []
    prefixes: tuple[str, ...] = ()
    if refusal is None:
        if settings.bypass_header:
            remove.append(settings.bypass_header)
        if check.verdict is not MarkerVerdict.MISSING:
            trace.append(GatewayStep("G3", f"marker from {source}: {check.verdict}; removed"))
            remove.append(settings.marker_field)
        if source is ArrivalSource.INTERNET and settings.strip_ms_headers:
            prefixes = MS_HEADER_PREFIXES
            trace.append(GatewayStep("G3", "internet mail: X-MS-Exchange organization and "
                                           "cross-premises fields removed"))
        if settings.strip_tenant_header:
            remove.append(TENANT_HEADER)
    return ArrivalDecision(source, check, refusal, tuple(remove), prefixes, tuple(trace))


def _refusal(arrival: Arrival, source: ArrivalSource, settings: GatewaySettings,
             trace: list[GatewayStep]) -> Reply | None:
    check = arrival.marker
    if arrival.received_count > settings.max_received:
        trace.append(GatewayStep("G2", f"{arrival.received_count} Received fields: loop"))
        return Reply(554, "5.4.6", f"mailroute: too many hops ({arrival.received_count})")
    if settings.processed_limit and arrival.processed_count >= settings.processed_limit:
        trace.append(GatewayStep("G2", "processed before: same Message-ID, recipients and "
                                       "direction within the TTL: loop"))
        return Reply(554, "5.4.6", "mailroute: message already processed (seen)")
    if check.verdict is MarkerVerdict.VALID_FRESH and source is ArrivalSource.RETURN_PATH:
        trace.append(GatewayStep("G3", f"own fresh marker handed back (age "
                                       f"{check.age_seconds} s): already processed, loop"))
        return Reply(554, "5.4.6", f"mailroute: message already processed "
                                   f"({check.key_id}, {check.age_seconds} s)")
    if check.verdict in INVALID_VERDICTS and settings.on_invalid is InvalidMarkerAction.REJECT:
        trace.append(GatewayStep("G3", f"invalid marker ({check.verdict}): refused"))
        return Reply(554, "5.7.1", f"mailroute: invalid loop marker ({check.verdict})")
    missing = check.verdict is MarkerVerdict.MISSING
    if settings.on_missing is MissingMarkerAction.REJECT and (
            missing or check.verdict in INVALID_VERDICTS):
        # an invalid marker that is stripped counts as absent: otherwise any made-up marker
        # field would get unprocessed mail past a host that accepts only processed mail
        what = "no marker" if missing else f"invalid marker ({check.verdict}), as absent"
        trace.append(GatewayStep("G3", f"{what}: refused (only processed mail is accepted)"))
        return Reply(554, "5.7.1", "mailroute: no loop marker" if missing
                     else f"mailroute: no valid loop marker ({check.verdict})")
    return None
