"""The filter protocol, the context filters run in, and the pipeline that composes them.

A filter takes a :class:`~mailroute.item.MailItem` and returns a new item (go on) or an
:class:`~mailroute.results.Outcome` (stop: reject, tempfail, discard, quarantine). A pipeline
is itself a filter. :meth:`Pipeline.process` is the entry point adapters call: bytes in,
:class:`Result` out, and no exception escapes it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar, runtime_checkable

from mailroute.errors import ConfigError, InternalError, MailrouteError
from mailroute.item import Direction, Envelope, MailItem
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.mime.headers import HeaderBlock
from mailroute.mime.message import Message
from mailroute.mime.scan import AmbiguityPolicy, parse
from mailroute.results import Action, AuthResult, Outcome, Reply

__all__ = [
    "Condition",
    "Conditional",
    "Context",
    "Filter",
    "Pipeline",
    "Result",
    "format_auth_results",
]

log = logging.getLogger("mailroute")
T = TypeVar("T")
ACCEPTED = Reply(250, "2.0.0", "message accepted")
TxtResolver = Callable[[str], Sequence[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What a filter may use besides the message: all of it injected, so tests need no I/O.

    Attributes:
        clock: returns the current UNIX time.
        resolver: DNS TXT lookup (name -> TXT strings), or ``None`` where DNS is not used.
        keys: named key stores (certificate store, GnuPG home, marker key ring ...).
        limits: the resource limits in force.
    """

    clock: Callable[[], float] = time.time
    resolver: TxtResolver | None = None
    keys: Mapping[str, object] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS

    def key_store(self, name: str, kind: type[T]) -> T:
        """The key store called ``name``, checked to be a ``kind``.

        Raises:
            ConfigError: no such store, or it is of another kind.
        """
        store = self.keys.get(name)
        if not isinstance(store, kind):
            raise ConfigError(f"no {kind.__name__} key store named {name!r}")
        return store


@runtime_checkable
class Filter(Protocol):
    """One step of mail processing.

    ``apply`` returns the (possibly changed) item to go on, or an :class:`Outcome` to stop.
    It raises only :class:`~mailroute.errors.MailrouteError` subclasses.
    """

    @property
    def name(self) -> str:
        """A short name for logs and traces (the policy's ``filter`` value)."""
        ...

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Process ``item``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """Which messages a filter applies to. Every non-empty criterion must match.

    Domains and addresses are compared case-insensitively; a recipient criterion matches
    when any recipient matches.
    """

    directions: frozenset[Direction] = frozenset()
    sender_domains: frozenset[str] = frozenset()
    recipient_domains: frozenset[str] = frozenset()
    senders: frozenset[str] = frozenset()
    recipients: frozenset[str] = frozenset()

    def matches(self, envelope: Envelope) -> bool:
        """True when ``envelope`` meets every criterion given."""
        if self.directions and envelope.direction not in self.directions:
            return False
        if self.sender_domains and envelope.sender_domain not in self.sender_domains:
            return False
        if self.senders and envelope.mail_from.lower() not in self.senders:
            return False
        if self.recipient_domains and not (envelope.recipient_domains & self.recipient_domains):
            return False
        return not self.recipients or any(r.lower() in self.recipients
                                          for r in envelope.rcpt_to)


@dataclass(frozen=True, slots=True)
class Conditional:
    """A filter that runs ``inner`` only when ``condition`` matches the envelope."""

    inner: Filter
    condition: Condition

    @property
    def name(self) -> str:
        """The inner filter's name."""
        return self.inner.name

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Run the inner filter if the condition matches, else pass the item on."""
        return self.inner.apply(item, ctx) if self.condition.matches(item.envelope) else item


@dataclass(frozen=True, slots=True)
class Result:
    """What :meth:`Pipeline.process` decided.

    Attributes:
        action: ``accept``, ``reject``, ``tempfail``, ``discard`` or ``quarantine``.
        data: the output message when accepted (or quarantined), else ``None``.
        smtp_reply: the reply as a value.
        item: the final item when filters ran to the end.
        error: the error that stopped processing, if any.
    """

    action: Action
    data: bytes | None
    smtp_reply: Reply
    item: MailItem | None = None
    error: MailrouteError | None = None

    @property
    def reply(self) -> str:
        """The SMTP reply text, e.g. ``554 5.6.0 message nesting too deep``."""
        return str(self.smtp_reply)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pipeline:
    """Filters run in order; the first outcome stops the run. A pipeline is a filter.

    Attributes:
        filters: the filters, in order.
        limits: limits for parsing and for filters.
        on_ambiguity: ``reject`` (default) or ``record`` ambiguous messages.
        internal_domains: domains of the organisation, to derive the direction.
        authserv_id: the RFC 8601 authserv-id of this gateway; incoming
            Authentication-Results fields claiming it are removed before filters run.
        context: the default context for :meth:`process`.
    """

    filters: tuple[Filter, ...] = ()
    limits: Limits = DEFAULT_LIMITS
    on_ambiguity: AmbiguityPolicy = AmbiguityPolicy.REJECT
    internal_domains: frozenset[str] = frozenset()
    authserv_id: str = "mailroute"
    context: Context | None = None
    name: str = "pipeline"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Run every filter in order; stop at the first outcome."""
        for step in self.filters:
            result = step.apply(item, ctx)
            if isinstance(result, Outcome):
                log.info("filter %s decided %s (%s)", step.name, result.action, result.reply)
                return result
            item = result
        return item

    def derive_direction(self, envelope: Envelope) -> Direction | None:
        """Direction from the sender and recipient domains and ``internal_domains``."""
        if envelope.direction is not None or not self.internal_domains:
            return envelope.direction
        sender_inside = _inside(envelope.sender_domain, self.internal_domains)
        all_inside = bool(envelope.rcpt_to) and all(
            _inside(d, self.internal_domains) for d in envelope.recipient_domains)
        if sender_inside:
            return Direction.INTERNAL if all_inside else Direction.OUTBOUND
        return Direction.INBOUND

    def process(self, data: bytes, envelope: Envelope | None = None, *,
                context: Context | None = None) -> Result:
        """Parse ``data``, run the filters, and serialise the result. Never raises.

        Malformed or over-limit input is rejected (554 5.6.0 / 552 5.3.4); every unexpected
        exception becomes a temporary failure (451 4.3.0) so that the sender retries.
        """
        ctx = context or self.context or Context(limits=self.limits)
        try:
            return self._process(data, envelope or Envelope(), ctx)
        except MailrouteError as error:
            return _failure(error)
        except Exception:  # the one place that turns bugs into tempfail
            reference = secrets.token_hex(6)
            log.exception("internal error, reference %s", reference)
            internal = InternalError(f"internal error, reference {reference}")
            return Result(Action.TEMPFAIL, None, internal.reply, error=internal)

    def _process(self, data: bytes, envelope: Envelope, ctx: Context) -> Result:
        message = parse(data, limits=self.limits, on_ambiguity=self.on_ambiguity)
        if self.filters:
            message = _strip_own_auth_results(message, self.authserv_id)
        direction = self.derive_direction(envelope)
        if direction is not envelope.direction:
            envelope = replace(envelope, direction=direction)
        item = MailItem(envelope=envelope, message=message)
        result = self.apply(item, ctx)
        if isinstance(result, Outcome):
            keep = result.action is Action.QUARANTINE
            return Result(result.action, item.message.to_bytes() if keep else None, result.reply)
        final = result
        if final.auth_results:
            field = format_auth_results(self.authserv_id, final.auth_results)
            final = final.evolve(message=final.message.with_header(
                "Authentication-Results", field))
        return Result(Action.ACCEPT, final.message.to_bytes(), ACCEPTED, item=final)


def _inside(domain: str, internal: Iterable[str]) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in internal)


def _failure(error: MailrouteError) -> Result:
    action = Action.TEMPFAIL if error.retryable else Action.REJECT
    return Result(action, None, error.reply, error=error)


def _strip_own_auth_results(message: Message, authserv_id: str) -> Message:
    """Remove Authentication-Results fields that claim to be ours (RFC 8601 section 5)."""
    wanted = authserv_id.lower()
    kept = tuple(f for f in message.headers
                 if f.lower_name != "authentication-results"
                 or f.value.split(";", 1)[0].strip().lower() != wanted)
    if len(kept) == len(message.headers):
        return message
    return message.replace_part((), replace(message.root, headers=HeaderBlock(kept)))


def format_auth_results(authserv_id: str, results: Iterable[AuthResult]) -> str:
    """An RFC 8601 Authentication-Results value: ``id; method=result reason="..." ...``."""
    entries = []
    for result in results:
        text = f"{result.method}={result.status.value}"
        if result.reason:
            reason = result.reason.replace("\\", "\\\\").replace('"', '\\"')
            text += f' reason="{reason}"'
        for name, value in result.properties:
            text += f" {name}={value}"
        entries.append(text)
    return f"{authserv_id}; " + "; ".join(entries)
