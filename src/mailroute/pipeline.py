"""Composition: a :class:`Pipeline` runs filters in order; :class:`Conditional` guards one.

A pipeline is itself a :class:`~mailroute.item.Filter`. :meth:`Pipeline.process` is the
simple entry point: bytes in, :class:`~mailroute.session.Result` out, no exception escapes
it. It runs the gateway session of :mod:`mailroute.session` around the filters; adapters
that need the steps one by one (a milter patching the message the MTA holds) call the
session directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailroute.errors import ConfigError, MailrouteError
from mailroute.item import Context, Direction, Envelope, Filter, MailItem
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.logs import LazyLogger
from mailroute.mime.scan import AmbiguityPolicy
from mailroute.records import field, record, replace
from mailroute.results import Outcome
from mailroute.session import Result, SessionSettings, run_session

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Condition", "Conditional", "Pipeline"]

log = LazyLogger("mailroute")


@record(frozen=True, kw_only=True)
class Condition:
    """Which messages a filter applies to. Every non-empty criterion must match.

    Domains and addresses are compared case-insensitively; a recipient criterion matches
    when any recipient matches. ``annotations`` are ``(key, value)`` pairs that earlier
    filters must have left on the item (the latest value of a key counts). ``authenticated``
    (when not ``None``) asks whether the client logged in with SMTP AUTH
    (:attr:`Envelope.auth_user <mailroute.item.Envelope.auth_user>` is set).
    """

    directions: frozenset[Direction] = frozenset()
    sender_domains: frozenset[str] = frozenset()
    recipient_domains: frozenset[str] = frozenset()
    senders: frozenset[str] = frozenset()
    recipients: frozenset[str] = frozenset()
    annotations: frozenset[tuple[str, str]] = frozenset()
    authenticated: bool | None = None

    def matches_item(self, item: MailItem) -> bool:
        """True when the envelope criteria and every annotation criterion match ``item``."""
        return self.matches(item.envelope) and all(
            item.annotation(key) == value for key, value in self.annotations)

    def matches(self, envelope: Envelope) -> bool:
        """True when ``envelope`` meets every criterion given."""
        if self.directions and envelope.direction not in self.directions:
            return False
        if self.authenticated is not None and (envelope.auth_user is None) == self.authenticated:
            return False
        if self.sender_domains and envelope.sender_domain not in self.sender_domains:
            return False
        if self.senders and envelope.mail_from.lower() not in self.senders:
            return False
        if self.recipient_domains and not (envelope.recipient_domains & self.recipient_domains):
            return False
        return not self.recipients or any(r.lower() in self.recipients
                                          for r in envelope.rcpt_to)


@record(frozen=True)
class Conditional:
    """A filter that runs ``inner`` only when ``condition`` matches the item."""

    inner: Filter
    condition: Condition

    @property
    def name(self) -> str:
        """The inner filter's name."""
        return self.inner.name

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Run the inner filter if the condition matches, else pass the item on."""
        return self.inner.apply(item, ctx) if self.condition.matches_item(item) else item


@record(frozen=True, kw_only=True)
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
        quarantine_dir: where adapters store quarantined messages (the policy's
            ``[gateway] quarantine_dir``); ``None``: a quarantine outcome is a tempfail.
        topology_file: the topology the policy names (``topology = "FILE"``), if any;
            ``mailroute serve`` routes by it when given no next hop.

    The fields besides ``filters`` configure the session around them
    (:attr:`session_settings`).
    """

    filters: tuple[Filter, ...] = ()
    limits: Limits = DEFAULT_LIMITS
    on_ambiguity: AmbiguityPolicy = AmbiguityPolicy.REJECT
    internal_domains: frozenset[str] = frozenset()
    authserv_id: str = "mailroute"
    context: Context | None = None
    quarantine_dir: Path | None = None
    topology_file: Path | None = None
    name: str = "pipeline"
    _session: SessionSettings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for step in self.filters:
            inner = step.inner if isinstance(step, Conditional) else step
            if isinstance(inner, Pipeline) and inner.session_fields() != self.session_fields() \
                    and inner.session_fields() != _BARE_SESSION:
                # its authserv-id, limits, stores and key stores would silently not apply
                raise ConfigError(
                    f"pipeline {inner.name!r} has settings of its own (a loaded policy?), "
                    "which a pipeline it is nested in does not use; add filters to it with "
                    "Pipeline.with_filters instead")
        object.__setattr__(self, "_session", SessionSettings(
            limits=self.limits, on_ambiguity=self.on_ambiguity,
            internal_domains=self.internal_domains, authserv_id=self.authserv_id,
            strip_own_auth_results=bool(self.filters)))

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Run every filter in order; stop at the first outcome.

        What each filter did is appended to the item's (or the outcome's) ``trace``:
        ``skipped`` (its condition did not match), ``unchanged``, ``changed`` (the message
        differs), or the action of the outcome it returned. A nested pipeline's entries
        stand for it.
        """
        base = item.trace
        steps: list[tuple[str, str]] = []
        for step in self.filters:
            try:
                if isinstance(step, Conditional):
                    if not step.condition.matches_item(item):
                        steps.append((step.name, "skipped"))
                        continue
                    result = step.inner.apply(item, ctx)
                else:
                    result = step.apply(item, ctx)
            except MailrouteError as error:
                # a nested pipeline traced it on the way out; a plain filter's error may be
                # an instance raised before, with a trace from then
                inner = step.inner if isinstance(step, Conditional) else step
                nested = error.trace[len(item.trace):] if isinstance(inner, Pipeline) else ()
                failed = "tempfail" if error.retryable else "reject"
                error.trace = base + tuple(steps) + (nested or ((step.name, failed),))
                raise
            if isinstance(result, Outcome):
                log.info("filter %s decided %s (%s)", step.name, result.action, result.reply)
                nested = result.trace[len(item.trace):]
                steps.extend(nested or ((step.name, str(result.action)),))
                return Outcome(result.action, result.reply, result.split, result.notify,
                               base + tuple(steps))
            nested = result.trace[len(item.trace):]
            steps.extend(nested or (
                (step.name, "unchanged" if result.message is item.message else "changed"),))
            item = result
        return item.with_trace(base + tuple(steps)) if steps else item

    def with_filters(self, *, before: tuple[Filter, ...] = (),
                     after: tuple[Filter, ...] = ()) -> Pipeline:
        """This pipeline with ``before`` run ahead of its filters and ``after`` behind them,
        and every setting (limits, authserv-id, internal domains, context, quarantine
        directory) kept: the way to add filters of your own to a loaded policy."""
        return replace(self, filters=(*before, *self.filters, *after))

    def session_fields(self) -> tuple[object, ...]:
        """The settings a pipeline applies when it runs a message itself (all fields but
        ``filters`` and ``name``)."""
        return (self.limits, self.on_ambiguity, self.internal_domains, self.authserv_id,
                self.context, self.quarantine_dir, self.topology_file)

    @property
    def session_settings(self) -> SessionSettings:
        """The gateway session settings this pipeline runs in (built once, with the pipeline)."""
        return self._session

    def derive_direction(self, envelope: Envelope) -> Direction | None:
        """Direction from the sender and recipient domains and ``internal_domains``."""
        return self.session_settings.derive_direction(envelope).direction

    def process(self, data: bytes, envelope: Envelope | None = None, *,
                context: Context | None = None) -> Result:
        """Parse ``data``, run the filters, and serialise the result. Never raises.

        Malformed or over-limit input is rejected (554 5.6.0 / 552 5.3.4); every unexpected
        exception becomes a temporary failure (451 4.3.0) so that the sender retries. A
        ``context`` without a processed-message store uses the pipeline's own.
        """
        ctx = context or self.context or Context(limits=self.limits)
        if ctx.processed is None and self.context is not None:
            ctx = replace(ctx, processed=self.context.processed)  # the policy's store
        return run_session(data, envelope or Envelope(), self, ctx, self.session_settings)


#: The settings of a pipeline built with none: nesting one loses nothing.
_BARE_SESSION = Pipeline().session_fields()
