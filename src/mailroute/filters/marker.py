"""The ``marker-set`` and ``marker-verify`` filters (notes/exchange-online.md 2.8 and 5.7).

``marker-verify`` runs first: the Received-count and processed-message loop guards, then the
marker verdict and the gateway action for the message's source. ``marker-set`` runs last:
it mints the one marker the message leaves with and records the message as processed.

marker-set options: ``key_file``, ``field`` (default ``X-Mailroute-Mark``),
``message_id_domain`` (for a Message-ID added to a message without one).

marker-verify options: ``key_file``, ``field``, ``max_age`` (604800), ``loop_window`` (3600),
``max_future_skew`` (300), ``on_invalid`` (``strip`` or ``reject``), ``source`` (``auto``,
``internet`` or ``return-path``), ``return_path_tls_names`` (default Exchange Online's
``mail.protection.outlook.com`` names), ``return_path_networks`` (optional CIDR list),
``tenant_id`` (optional; must equal ``X-MS-Exchange-CrossTenant-Id``), ``max_received``
(100), ``processed_limit`` (1; 0 turns the processed-message guard off), ``processed_ttl``
(default: the loop window).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass, field

from mailroute.config.options import Options
from mailroute.errors import UnsafeHeaderValueError
from mailroute.item import Context, MailItem
from mailroute.marker.binding import normalise_message_id
from mailroute.marker.guard import (
    ProcessedStore,
    arrival_fingerprint,
    processed_key,
    received_count,
    shared_memory_store,
)
from mailroute.marker.keyring import KeyRing, load_key_ring
from mailroute.marker.mint import DEFAULT_FIELD, RandomSource, is_host_name, mark
from mailroute.marker.verify import MarkerCheck, Windows, check_message
from mailroute.mime.headers import make_field
from mailroute.results import MarkerVerdict, Outcome

__all__ = [
    "INVALID_VERDICTS",
    "MarkerSetFilter",
    "MarkerVerifyFilter",
    "build_set",
    "build_verify",
    "field_option",
    "ring_option",
    "windows_option",
]

log = logging.getLogger("mailroute.marker")

#: Verdicts that mean "not a marker this gateway made" (``on_invalid`` applies to them).
INVALID_VERDICTS = frozenset({MarkerVerdict.MALFORMED, MarkerVerdict.FOREIGN,
                              MarkerVerdict.UNKNOWN_KEY, MarkerVerdict.FUTURE,
                              MarkerVerdict.BAD_MAC})
_SECURITY_EVENTS = frozenset({MarkerVerdict.FUTURE, MarkerVerdict.BAD_MAC})
EXO_TLS_NAMES = ("mail.protection.outlook.com", "*.mail.protection.outlook.com")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class MarkerSetFilter:
    """Mint the marker last: one valid marker on every message that leaves."""

    ring: KeyRing
    field_name: str = DEFAULT_FIELD
    id_domain: str | None = None
    processed_ttl: int = 3600
    store: ProcessedStore = field(default_factory=shared_memory_store)
    random: RandomSource = secrets.token_bytes
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
        message_id = message.headers.value("Message-ID") or ""
        arrival = item.annotation("marker.arrival") or arrival_fingerprint(item.message)
        self.store.record(processed_key(normalise_message_id(message_id), item.envelope.rcpt_to,
                                        item.envelope.direction), now, self.processed_ttl,
                          fingerprint=arrival)
        log.info("marker minted with key %s", token.kid)
        return item.evolve(message=message).annotate("marker.key_id", token.kid)


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkerVerifyFilter:
    """Loop guards, then the marker verdict and the gateway action of 5.7."""

    ring: KeyRing
    field_name: str = DEFAULT_FIELD
    windows: Windows = field(default_factory=Windows)
    on_invalid: str = "strip"
    source: str = "auto"
    return_path_tls_names: tuple[str, ...] = EXO_TLS_NAMES
    return_path_networks: tuple[Network, ...] = ()
    tenant_id: str | None = None
    max_received: int = 100
    processed_limit: int = 1
    processed_ttl: int = 3600
    store: ProcessedStore = field(default_factory=shared_memory_store)
    name: str = "marker-verify"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Refuse loops, act on the marker verdict, and strip every marker that arrived."""
        now = ctx.clock()
        message = item.message
        hops = received_count(message)
        if hops > self.max_received:
            log.warning("loop guard: %d Received fields (limit %d)", hops, self.max_received)
            return Outcome.reject("5.4.6", f"mailroute: too many hops ({hops})")
        arrival = arrival_fingerprint(message)
        if self._processed_before(item, now, arrival):
            log.warning("loop guard: message already processed within %d s",
                        self.processed_ttl)
            return Outcome.reject("5.4.6", "mailroute: message already processed (seen)")
        check = check_message(message, self.ring, now=now, windows=self.windows,
                              field_name=self.field_name, limits=ctx.limits)
        source = self.classify(item)
        item = item.annotate("marker.verdict", check.verdict.value).annotate(
            "marker.source", source).annotate("marker.arrival", arrival)
        if check.verdict is MarkerVerdict.MISSING:
            return item
        _log_verdict(check, source)
        if check.verdict is MarkerVerdict.VALID_FRESH and source == "return-path":
            return Outcome.reject("5.4.6", f"mailroute: message already processed "
                                           f"({check.key_id}, {check.age_seconds} s)")
        if check.verdict in INVALID_VERDICTS and self.on_invalid == "reject":
            return Outcome.reject("5.7.1", f"mailroute: invalid loop marker ({check.verdict})")
        return item.evolve(message=message.without_header(self.field_name))

    def classify(self, item: MailItem) -> str:
        """``return-path`` (Exchange handing a message back) or ``internet``.

        With ``source = "auto"``: the verified TLS name must match one of
        ``return_path_tls_names``, the client address lie in ``return_path_networks`` (when
        given) and ``X-MS-Exchange-CrossTenant-Id`` equal ``tenant_id`` (when given).
        """
        if self.source != "auto":
            return self.source
        envelope = item.envelope
        name = (envelope.tls_peer_name or "").lower().rstrip(".")
        if not name or not any(_name_matches(name, p) for p in self.return_path_tls_names):
            return "internet"
        if self.return_path_networks and not _in_networks(envelope.client_address,
                                                          self.return_path_networks):
            return "internet"
        if self.tenant_id is not None:
            tenant = item.message.headers.value("X-MS-Exchange-CrossTenant-Id") or ""
            if tenant.lower() != self.tenant_id.lower():
                return "internet"
        return "return-path"

    def _processed_before(self, item: MailItem, now: float, arrival: str) -> bool:
        if self.processed_limit == 0:
            return False
        message_id = item.message.headers.value("Message-ID")
        if not message_id:
            return False
        key = processed_key(normalise_message_id(message_id), item.envelope.rcpt_to,
                            item.envelope.direction)
        return self.store.count(key, now, self.processed_ttl,
                                other_than=arrival) >= self.processed_limit


def _log_verdict(check: MarkerCheck, source: str) -> None:
    verdict = check.verdict
    if verdict in _SECURITY_EVENTS or (source == "internet" and verdict.is_valid):
        log.warning("security: marker %s from %s (%s); stripped", verdict, source,
                    check.reason)
    else:
        log.info("marker %s from %s (%s); stripped", verdict, source, check.reason)


def _name_matches(name: str, pattern: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return name == pattern


def _in_networks(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def ring_option(options: Options) -> KeyRing:
    """The key ring named by option ``key_file``."""
    return load_key_ring(options.path("key_file"))


def field_option(options: Options) -> str:
    """Option ``field``: the marker header name."""
    name = options.string("field", DEFAULT_FIELD)
    try:
        make_field(name, "x")
    except UnsafeHeaderValueError:
        raise options.error("field", "is not a valid header field name") from None
    return name


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
    name = field_option(options)
    windows = windows_option(options)
    networks: list[Network] = []
    for text in options.string_list("return_path_networks"):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise options.error("return_path_networks", "must be IP networks (CIDR)") from None
    tenant = options.optional_string("tenant_id")
    return MarkerVerifyFilter(
        ring=ring, field_name=name, windows=windows,
        on_invalid=options.choice("on_invalid", ("strip", "reject"), "strip"),
        source=options.choice("source", ("auto", "internet", "return-path"), "auto"),
        return_path_tls_names=options.string_list("return_path_tls_names", EXO_TLS_NAMES),
        return_path_networks=tuple(networks),
        tenant_id=tenant.strip() if tenant else None,
        max_received=options.integer("max_received", 100, minimum=1),
        processed_limit=options.integer("processed_limit", 1),
        processed_ttl=options.integer("processed_ttl", windows.loop_window, minimum=1))
