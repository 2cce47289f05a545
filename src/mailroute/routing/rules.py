"""One pass of transport rules over a message, with per-recipient forks (step R of
docs/routing/steps.md).

Rules run by priority. Message-level predicates decide whether a rule can apply at all;
per-recipient predicates split the recipients of a copy into those that match (who get a
copy with the actions) and the others (who keep a copy without them). ``StopRuleProcessing``
takes only the matching copy out of the loop. Audit modes record "would apply" and do
nothing else. Within a rule the actions apply in the order: header removal, header set,
disclaimer, SCL, routing override, then reject / delete / quarantine / redirect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from mailroute.records import record
from mailroute.results import Reply
from mailroute.routing.decide import RouteKind, TraceStep
from mailroute.routing.hop import MessageFacts, MessageFlag, header_values, remove_headers
from mailroute.routing.hop import set_header as with_header
from mailroute.routing.match import (
    domain_of,
    ip_in_ranges,
    is_subdomain,
    patterns_match,
    words_match,
)
from mailroute.routing.model import (
    DisclaimerFallback,
    MessageType,
    Predicates,
    RecipientAddressType,
    RuleMode,
    Scope,
    SenderAddressLocation,
    Tenant,
    TransportRule,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

__all__ = ["Addressee", "RuleContext", "RuleCopy", "Terminal", "run_rules"]

_TYPE_FLAGS = {
    MessageType.OOF: MessageFlag.OOF,
    MessageType.AUTO_FORWARD: MessageFlag.AUTO_FORWARD,
    MessageType.ENCRYPTED: MessageFlag.ENCRYPTED,
    MessageType.CALENDARING: MessageFlag.CALENDARING,
    MessageType.PERMISSION_CONTROLLED: MessageFlag.PERMISSION_CONTROLLED,
    MessageType.VOICEMAIL: MessageFlag.VOICEMAIL,
    MessageType.SIGNED: MessageFlag.SIGNED,
    MessageType.APPROVAL_REQUEST: MessageFlag.APPROVAL_REQUEST,
    MessageType.READ_RECEIPT: MessageFlag.READ_RECEIPT,
}
_WRAP_KEEPS = frozenset({"from", "to", "cc", "subject", "date"})
_RULES_LOOP = "X-MS-Exchange-Transport-Rules-Loop"


class Addressee(NamedTuple):
    """A resolved recipient: ``address`` (primary/target), as written, and in-org status."""

    address: str
    original: str
    in_org: bool


@record(frozen=True)
class Terminal:
    """How a copy's journey ends inside the rule pass (reject, delete, quarantine)."""

    kind: RouteKind
    reply: Reply | None = None


class RuleCopy(NamedTuple):
    """One copy of the message inside the rule pass (forks create more; immutable)."""

    recipients: tuple[Addressee, ...]
    message: MessageFacts
    connector: str | None = None
    stopped: bool = False
    terminal: Terminal | None = None
    applied: tuple[str, ...] = ()


class RuleContext(NamedTuple):
    """Facts of the pass every predicate may read (immutable)."""

    tenant: Tenant
    mail_from: str
    authenticated: bool
    client_ip: str | None
    now: datetime | None


def run_rules(ctx: RuleContext, recipients: tuple[Addressee, ...], message: MessageFacts,
              trace: list[TraceStep]) -> list[RuleCopy]:
    """Run every active rule of ``ctx.tenant`` and return the resulting copies."""
    copies: list[RuleCopy] = [RuleCopy(recipients, message)]
    now = ctx.now
    for rule in ctx.tenant.rules_by_priority:
        if not (rule.enabled if now is None else rule.active(now)):
            continue
        result: list[RuleCopy] = []
        alive = False
        for copy in copies:
            if copy.stopped or copy.terminal is not None:
                result.append(copy)
                continue
            alive = True
            result.extend(_apply_rule(ctx, rule, copy, trace))
        if not alive:
            break  # every copy left the rule loop: later rules cannot apply
        copies = result
    return copies


def _apply_rule(ctx: RuleContext, rule: TransportRule, copy: RuleCopy,
                trace: list[TraceStep]) -> tuple[RuleCopy, ...]:
    matched, others = _split(ctx, rule, copy)
    if not matched:
        return (copy,)
    if rule.mode is not RuleMode.ENFORCE:
        trace.append(TraceStep("R", f"{rule.mode} mode: would apply, no action", rule.name))
        return (copy,)
    if not others:
        return (_act(ctx, rule, copy, matched, trace),)
    names = ", ".join(a.address for a in matched)
    trace.append(TraceStep("R", f"fork: rule applies to {names} only", rule.name))
    return (copy._replace(recipients=others), _act(ctx, rule, copy, matched, trace))


def _split(ctx: RuleContext, rule: TransportRule, copy: RuleCopy,
           ) -> tuple[tuple[Addressee, ...], tuple[Addressee, ...]]:
    cond, exc = rule.conditions, rule.exceptions
    if cond.message_level and not _message_holds(ctx, rule, cond, copy, every=True):
        return (), copy.recipients
    if exc.message_level and _message_holds(ctx, rule, exc, copy, every=False):
        return (), copy.recipients
    if not (cond.per_recipient or exc.per_recipient):
        return copy.recipients, ()
    matched = tuple(a for a in copy.recipients
                    if all(_recipient_checks(ctx, rule, cond, a))
                    and not any(_recipient_checks(ctx, rule, exc, a)))
    others = tuple(a for a in copy.recipients if a not in matched)
    return matched, others


def _senders(rule: TransportRule, ctx: RuleContext, message: MessageFacts) -> tuple[str, ...]:
    if rule.sender_address_location is SenderAddressLocation.ENVELOPE:
        return (ctx.mail_from,)
    if rule.sender_address_location is SenderAddressLocation.HEADER:
        return message.from_addrs
    return (*message.from_addrs, ctx.mail_from)


def _sender_in_org(ctx: RuleContext, sender: str) -> bool:
    if ctx.tenant.directory.lookup(sender) is not None:
        return True
    return ctx.tenant.accepted_domain(domain_of(sender)) is not None if sender else False


def _member_of(ctx: RuleContext, sender: str, groups: tuple[str, ...]) -> bool:
    for group in groups:
        entry = ctx.tenant.directory.lookup(group)
        if entry is not None and sender.lower() in (m.lower() for m in entry.members):
            return True
    return False


def _message_holds(ctx: RuleContext, rule: TransportRule, p: Predicates, copy: RuleCopy,
                   *, every: bool) -> bool:
    """``every``: all set message-level predicates hold (conditions); else any (exceptions).

    Written as early returns rather than ``all(generator)``: this is the hottest loop of a
    decision. A result that differs from ``every`` settles the answer.
    """
    message = copy.message
    if p.header_contains is not None:
        values = message.values(p.header_contains.header)
        words = p.header_contains.words
        if (bool(values) and any(words_match(v, words) for v in values)) is not every:
            return not every
    if p.header_matches is not None:
        values = message.values(p.header_matches.header)
        patterns = p.header_matches.patterns
        if (bool(values) and any(patterns_match(v, patterns) for v in values)) is not every:
            return not every
    if p.message_type_matches is not None and (
            (_TYPE_FLAGS[p.message_type_matches] in message.flags) is not every):
        return not every
    if p.scl_over is not None and (
            (message.scl is not None and message.scl >= p.scl_over) is not every):
        return not every
    if p.sender_ip_ranges and ip_in_ranges(ctx.client_ip, p.sender_ip_ranges) is not every:
        return not every
    if p.message_size_over is not None and (message.size > p.message_size_over) is not every:
        return not every
    if p.any_of_recipient_address_matches_patterns:
        pats = p.any_of_recipient_address_matches_patterns
        if any(patterns_match(a.address, pats) for a in copy.recipients) is not every:
            return not every
    if p.any_of_to_header:
        to = " ".join(header_values(message.headers, "To")).lower()
        if any(a.lower() in to for a in p.any_of_to_header) is not every:
            return not every
    if (p.from_scope or p.sender_domain_is or p.from_addresses
            or p.from_address_matches_patterns or p.from_member_of):
        senders = _senders(rule, ctx, message)
        if any(_sender_checks(ctx, p, s) for s in senders) is not every:
            return not every
    return every


def _sender_checks(ctx: RuleContext, p: Predicates, sender: str) -> bool:
    """All set sender predicates hold for ``sender``."""
    sender = sender.lower()
    if p.from_scope is Scope.IN_ORGANIZATION and not (
            ctx.authenticated and _sender_in_org(ctx, sender)):
        return False
    if p.from_scope is Scope.NOT_IN_ORGANIZATION and _sender_in_org(ctx, sender):
        return False
    domain = domain_of(sender)
    if p.sender_domain_is and not any(is_subdomain(domain, d) for d in p.sender_domain_is):
        return False
    if p.from_addresses and sender not in (a.lower() for a in p.from_addresses):
        return False
    if p.from_address_matches_patterns and not (
            sender and patterns_match(sender, p.from_address_matches_patterns)):
        return False
    return not p.from_member_of or _member_of(ctx, sender, p.from_member_of)


def _recipient_checks(ctx: RuleContext, rule: TransportRule, p: Predicates,
                      who: Addressee) -> Iterator[bool]:
    """The results of the set per-recipient predicates of ``p`` for one recipient."""
    address = (who.address if rule.recipient_address_type is RecipientAddressType.RESOLVED
               else who.original).lower()
    if p.sent_to_scope is not None:
        yield who.in_org == (p.sent_to_scope is Scope.IN_ORGANIZATION)
    if p.recipient_domain_is:
        yield any(is_subdomain(domain_of(address), d) for d in p.recipient_domain_is)
    if p.sent_to:
        yield address in (a.lower() for a in p.sent_to)
    if p.recipient_address_matches_patterns:
        yield patterns_match(address, p.recipient_address_matches_patterns)
    if p.recipient_address_contains_words:
        yield words_match(address, p.recipient_address_contains_words)


def _act(ctx: RuleContext, rule: TransportRule, copy: RuleCopy,
         recipients: tuple[Addressee, ...], trace: list[TraceStep]) -> RuleCopy:
    actions = rule.actions
    message = copy.message
    done: list[str] = []
    if actions.remove_header:
        kept = remove_headers(message.headers, name=actions.remove_header)
        if len(kept) != len(message.headers):
            message = message.with_headers(kept)
        done.append(f"removed {actions.remove_header}")
    if actions.set_header is not None:
        message = message.with_headers(with_header(message.headers, actions.set_header.name,
                                                   actions.set_header.value))
        done.append(f"set {actions.set_header.name}: {actions.set_header.value}")
    terminal: Terminal | None = None
    if actions.apply_html_disclaimer is not None:
        message, terminal, note = _disclaim(message, actions.apply_html_disclaimer.fallback_action)
        done.append(note)
    if actions.set_scl is not None:
        message = message.evolve(scl=actions.set_scl)
        done.append(f"SCL {actions.set_scl}")
    connector = copy.connector
    if actions.route_message_outbound_connector:
        if connector and connector != actions.route_message_outbound_connector:
            done.append(f"second routing action replaces '{connector}' (model: last wins)")
        connector = actions.route_message_outbound_connector
        done.append(f"route via '{connector}'")
    if actions.reject is not None and terminal is None:
        code = actions.reject.enhanced_status_code
        terminal = Terminal(RouteKind.NDR, Reply(550, code, actions.reject.reason_text))
        done.append(f"reject {code}")
    if actions.delete_message and terminal is None:
        terminal = Terminal(RouteKind.DROP)
        done.append("delete")
    if actions.quarantine and terminal is None:
        terminal = Terminal(RouteKind.QUARANTINE)
        done.append("quarantine")
    if actions.redirect_message_to and terminal is None:
        if header_values(message.headers, _RULES_LOOP):
            terminal = Terminal(RouteKind.NDR, Reply(
                550, "5.7.128", "TRANSPORT.RULES.RejectMessage; Transport rules loop count "
                "exceeded"))
            done.append("redirect refused: rules loop header present")
        else:
            message = message.with_headers(with_header(message.headers, _RULES_LOOP, "1"))
            recipients = tuple(_redirect_target(ctx, a) for a in actions.redirect_message_to)
            done.append("redirect to " + ", ".join(actions.redirect_message_to))
    stopped = rule.stop_rule_processing or actions.quarantine
    if rule.stop_rule_processing:
        done.append("stop processing rules")
    trace.append(TraceStep("R", "; ".join(done) or "matched (no action)", rule.name,
                           connector if actions.route_message_outbound_connector else None))
    return RuleCopy(recipients, message, connector, stopped, terminal,
                    (*copy.applied, rule.name))


def _redirect_target(ctx: RuleContext, address: str) -> Addressee:
    entry = ctx.tenant.directory.lookup(address)
    primary = entry.primary if entry is not None else address
    in_org = entry is not None or ctx.tenant.accepted_domain(domain_of(address)) is not None
    return Addressee(primary.lower(), address.lower(), in_org)


def _disclaim(message: MessageFacts, fallback: DisclaimerFallback,
              ) -> tuple[MessageFacts, Terminal | None, str]:
    if not (message.has(MessageFlag.SIGNED) or message.has(MessageFlag.ENCRYPTED)):
        return message.evolve(disclaimers=message.disclaimers + 1), None, "disclaimer appended"
    if fallback is DisclaimerFallback.IGNORE:
        return message, None, "disclaimer skipped (signed/encrypted, fallback Ignore)"
    if fallback is DisclaimerFallback.REJECT:
        reply = Reply(550, "5.7.1", "disclaimer could not be applied")
        return message, Terminal(RouteKind.NDR, reply), "disclaimer fallback Reject: NDR"
    headers = tuple((k, v) for k, v in message.headers if k.lower() in _WRAP_KEEPS)
    flags = message.flags - {MessageFlag.SIGNED, MessageFlag.ENCRYPTED}
    wrapped = message.evolve(headers=headers, flags=flags, wrapped=True,
                             disclaimers=message.disclaimers + 1)
    return wrapped, None, "disclaimer fallback Wrap: new message, custom X- headers not carried"
