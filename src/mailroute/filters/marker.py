"""The ``marker-set`` and ``marker-verify`` filters (the gateway procedure and marker verdicts).

``marker-verify`` runs first: it describes the arrival (TLS name, client address, tenant id,
Received count, processed-message count, marker verdict) and acts on the one gateway decision
(:func:`mailroute.gateway.decide_arrival`) that the routing simulator uses as well: loop
guards, the marker verdict for the message's source, and header hygiene. ``marker-set`` runs
last: it mints the one marker the message leaves with and records the message as processed.
Both count processed messages in :attr:`mailroute.item.Context.processed`.

marker-set options: ``key_file``, ``field`` (default ``X-Mailroute-Mark``),
``message_id_domain`` (for a Message-ID added to a message without one), ``processed_ttl``.

marker-verify options: ``key_file``, ``field``, ``max_age`` (604800), ``loop_window`` (3600),
``max_future_skew`` (300), ``on_invalid`` (``strip`` or ``reject``), ``on_missing``
(``pass`` or ``reject``), ``source`` (``auto``, ``networks``, ``internet`` or ``return-path``),
``return_path_tls_names`` (default Exchange Online's ``mail.protection.outlook.com`` names),
``return_path_networks`` (optional address/CIDR list), ``tenant_id`` (optional; must be named
by ``X-MS-Exchange-CrossTenant-Id``), ``max_received`` (100), ``processed_limit`` (1; 0 turns
the processed-message guard off), ``processed_ttl`` (default: the loop window),
``strip_ms_headers`` (false), ``strip_tenant_header`` (false), ``bypass_header`` (none),
``on_foreign_relay`` (``pass`` or ``reject``: a message with a recipient outside
``[gateway] internal_domains`` that neither this tenant's Exchange Online handed over nor an
authenticated sender sent is refused, 550 5.7.1; for an MTA in front that relays for
Exchange Online's address ranges, which every Microsoft 365 tenant shares).
"""

from __future__ import annotations

import os

from mailroute.config.options import Options
from mailroute.errors import UnsafeHeaderValueError
from mailroute.gateway.decide import (
    INVALID_VERDICTS,
    TENANT_HEADER,
    Arrival,
    ArrivalDecision,
    ArrivalSource,
    decide_arrival,
    exo_by_connection,
)
from mailroute.gateway.flow import RELAY_REFUSAL, TENANT_RELAY_REFUSAL, leaves
from mailroute.gateway.match import check_ranges
from mailroute.gateway.settings import EXO_TLS_NAMES, GatewaySettings, SourceMode
from mailroute.item import Context, MailItem
from mailroute.logs import LazyLogger
from mailroute.marker.binding import normalise_message_id
from mailroute.marker.guard import arrival_fingerprint, processed_key, received_count
from mailroute.marker.keyring import KeyRing, load_key_ring
from mailroute.marker.mint import DEFAULT_FIELD, RandomSource, is_host_name, mark
from mailroute.marker.verify import Windows, check_message
from mailroute.mime.headers import make_field
from mailroute.records import field, record
from mailroute.results import Action, MarkerVerdict, Outcome, Reply

__all__ = [
    "MarkerSetFilter",
    "MarkerVerifyFilter",
    "arrival_of",
    "build_set",
    "build_verify",
    "field_option",
    "ring_option",
    "windows_option",
]

log = LazyLogger("mailroute.marker")

_SECURITY_EVENTS = frozenset({MarkerVerdict.FUTURE, MarkerVerdict.BAD_MAC})


@record(frozen=True)
class MarkerSetFilter:
    """Mint the marker last: one valid marker on every message that leaves."""

    ring: KeyRing
    field_name: str = DEFAULT_FIELD
    id_domain: str | None = None
    processed_ttl: int = 3600
    random: RandomSource = os.urandom
    name: str = "marker-set"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Mark the message (replacing any marker) and record it as processed.

        Raises:
            KeyUnavailableError: no key may sign now (tempfail; nothing is lost).
        """
        now = ctx.clock()
        message, token = mark(item.message, self.ring, now=now,
                              direction=item.envelope.direction, field_name=self.field_name,
                              id_domain=self.id_domain, limits=ctx.limits, random=self.random)
        if ctx.processed is not None:
            message_id = message.headers.value("Message-ID") or ""
            arrival = item.annotation("marker.arrival") or arrival_fingerprint(item.message)
            ctx.processed.record(processed_key(normalise_message_id(message_id),
                                               item.envelope.mail_from, item.envelope.rcpt_to,
                                               item.envelope.direction),
                                 now, self.processed_ttl, fingerprint=arrival)
        log.info("marker minted with key %s", token.kid)
        return item.evolve(message=message).annotate("marker.key_id", token.kid)


@record(frozen=True, kw_only=True)
class MarkerVerifyFilter:
    """The gateway decision on arrival: loop guards, marker verdict, hygiene."""

    ring: KeyRing
    settings: GatewaySettings = field(default_factory=GatewaySettings)
    name: str = "marker-verify"
    #: ``reject``: relay control for an MTA in front (see :meth:`relay_refusal`).
    on_foreign_relay: str = "pass"
    #: the organisation's domains, for ``on_foreign_relay``.
    internal_domains: frozenset[str] = frozenset()

    def decide(self, item: MailItem, ctx: Context, *, fingerprint: str | None = None
               ) -> ArrivalDecision:
        """The gateway decision for ``item`` (nothing is changed)."""
        return decide_arrival(arrival_of(item, ctx, self.ring, self.settings,
                                         fingerprint=fingerprint), self.settings)

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Refuse loops, act on the marker verdict, and strip what must not pass."""
        fingerprint = arrival_fingerprint(item.message)
        decision = self.decide(item, ctx, fingerprint=fingerprint)
        check = decision.marker
        if decision.refusal is not None:
            # The refusal itself is the adapter's status line; the log adds the reason.
            log.info("gateway refused: %s (%s)", decision.refusal, decision.trace[-1].detail)
            return Outcome(Action.REJECT, decision.refusal)
        relay = self.relay_refusal(item, decision)
        if relay is not None:
            log.info("gateway refused: %s (outside recipients from the internet)", relay)
            return Outcome(Action.REJECT, relay)
        item = item.annotate("marker.verdict", check.verdict.value).annotate(
            "marker.source", decision.source.value).annotate("marker.arrival", fingerprint)
        if check.verdict is not MarkerVerdict.MISSING:
            _log_verdict(check.verdict, check.reason, decision.source)
        if not decision.remove_fields and not decision.remove_prefixes:
            return item
        message = item.message.without_headers(decision.remove_fields,
                                               decision.remove_prefixes)
        return item if message is item.message else item.evolve(message=message)


    def relay_refusal(self, item: MailItem, decision: ArrivalDecision) -> Reply | None:
        """G5 behind an MTA that relays for Exchange Online's ranges: with
        ``on_foreign_relay = "reject"``, a message with a recipient outside the organisation
        is refused unless this tenant's Exchange Online handed it over or its sender
        authenticated (SASL). Another tenant's connector gets the tenant refusal."""
        envelope = item.envelope
        if (self.on_foreign_relay != "reject" or decision.source is ArrivalSource.RETURN_PATH
                or envelope.auth_user
                or not leaves(envelope.mail_from, envelope.rcpt_to, self.internal_domains)):
            return None
        connection = Arrival(decision.marker, _tls_names(envelope.tls_peer_name),
                             envelope.client_address)
        return (TENANT_RELAY_REFUSAL if exo_by_connection(connection, self.settings)
                else RELAY_REFUSAL)


def arrival_of(item: MailItem, ctx: Context, ring: KeyRing, settings: GatewaySettings, *,
               fingerprint: str | None = None) -> Arrival:
    """The facts of ``item``'s arrival that the gateway decision needs (``fingerprint``: its
    :func:`~mailroute.marker.guard.arrival_fingerprint`, when the caller has it already)."""
    message = item.message
    now = ctx.clock()
    check = check_message(message, ring, now=now, windows=settings.windows,
                          field_name=settings.marker_field, limits=ctx.limits)
    envelope = item.envelope
    return Arrival(
        tls_peer_names=_tls_names(envelope.tls_peer_name),
        client_address=envelope.client_address,
        tenant_ids=tuple(f.value for f in message.headers.get_all(TENANT_HEADER)),
        received_count=received_count(message),
        processed_count=_processed_count(item, ctx, settings, now, fingerprint),
        marker=check)


def _tls_names(name: str | None) -> tuple[str, ...]:
    return (name,) if name else ()


def _processed_count(item: MailItem, ctx: Context, settings: GatewaySettings, now: float,
                     fingerprint: str | None) -> int:
    if ctx.processed is None or settings.processed_limit == 0:
        return 0
    message_id = item.message.headers.value("Message-ID")
    if not message_id:
        return 0
    key = processed_key(normalise_message_id(message_id), item.envelope.mail_from,
                        item.envelope.rcpt_to, item.envelope.direction)
    return ctx.processed.count(key, now, settings.processed_ttl,
                               other_than=fingerprint or arrival_fingerprint(item.message))


def _log_verdict(verdict: MarkerVerdict, reason: str, source: ArrivalSource) -> None:
    if verdict in _SECURITY_EVENTS or (source is ArrivalSource.INTERNET and verdict.is_valid):
        log.warning("security: marker %s from %s (%s); stripped", verdict, source, reason)
    elif verdict in INVALID_VERDICTS or verdict.is_valid or verdict is MarkerVerdict.EXPIRED:
        log.info("marker %s from %s (%s); stripped", verdict, source, reason)


def ring_option(options: Options) -> KeyRing:
    """The key ring named by option ``key_file``."""
    return load_key_ring(options.file("key_file"))


def field_option(options: Options) -> str:
    """Option ``field``: the marker header name."""
    name = options.string("field", DEFAULT_FIELD)
    _check_field_name(options, "field", name)
    return name


def _check_field_name(options: Options, key: str, name: str) -> None:
    try:
        make_field(name, "x")
    except UnsafeHeaderValueError:
        raise options.error(key, "is not a valid header field name") from None


def windows_option(options: Options) -> Windows:
    """Options ``max_age``, ``loop_window`` and ``max_future_skew``."""
    defaults = Windows()
    return Windows(max_age=options.integer("max_age", defaults.max_age),
                   loop_window=options.integer("loop_window", defaults.loop_window),
                   max_future_skew=options.integer("max_future_skew",
                                                   defaults.max_future_skew))


def build_set(options: Options) -> MarkerSetFilter:
    """Build ``marker-set`` from policy options."""
    ring = ring_option(options)
    name = field_option(options)
    domain = options.optional_string("message_id_domain")
    if domain is not None and not is_host_name(domain):
        raise options.error("message_id_domain", "must be a dotted host name")
    ttl = options.integer("processed_ttl", Windows().loop_window, minimum=1)
    return MarkerSetFilter(ring=ring, field_name=name, id_domain=domain, processed_ttl=ttl)


def build_verify(options: Options) -> MarkerVerifyFilter:
    """Build ``marker-verify`` from policy options."""
    ring = ring_option(options)
    windows = windows_option(options)
    tenant = options.optional_string("tenant_id")
    bypass = options.optional_string("bypass_header")
    if bypass is not None:
        _check_field_name(options, "bypass_header", bypass)
    networks = options.string_list("return_path_networks")
    try:
        check_ranges(networks)
    except ValueError as exc:
        raise options.error("return_path_networks", str(exc)) from None
    source = options.choice("source", tuple(m.value for m in SourceMode), "auto")
    if source == SourceMode.NETWORKS and not networks:
        raise options.error("source", "source = \"networks\" needs return_path_networks")
    values = {
        "marker_field": field_option(options), "windows": windows,
        "on_invalid": options.choice("on_invalid", ("strip", "reject"), "strip"),
        "on_missing": options.choice("on_missing", ("pass", "reject"), "pass"),
        "source": source,
        "return_path_tls_names": options.string_list("return_path_tls_names", EXO_TLS_NAMES),
        "return_path_networks": networks,
        "tenant_id": tenant.strip() if tenant else None,
        "max_received": options.integer("max_received", 100, minimum=1),
        "processed_limit": options.integer("processed_limit", 1),
        "processed_ttl": options.integer("processed_ttl", windows.loop_window, minimum=1),
        "strip_ms_headers": options.boolean("strip_ms_headers", False),
        "strip_tenant_header": options.boolean("strip_tenant_header", False),
        "bypass_header": bypass,
    }
    try:
        settings = GatewaySettings(**values)  # type: ignore[arg-type]
    except ValueError as exc:  # the cross-field check: loop_window <= max_age
        raise options.error("loop_window", str(exc)) from None
    relay = options.choice("on_foreign_relay", ("pass", "reject"), "pass")
    domains = options.inherited("internal_domains")
    internal = frozenset(domains) if isinstance(domains, frozenset) else frozenset[str]()
    if relay == "reject" and not internal:
        raise options.error("on_foreign_relay", "\"reject\" needs [gateway] internal_domains "
                                                "(or a topology)")
    return MarkerVerifyFilter(ring=ring, settings=settings, on_foreign_relay=relay,
                              internal_domains=internal)
