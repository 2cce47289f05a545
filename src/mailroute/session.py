"""The gateway session: one message from bytes to a decision, in three steps adapters drive.

1. :func:`prepare` checks limits, parses (ambiguity included), derives the direction and
   removes Authentication-Results fields that forge this gateway's authserv-id.
2. The caller runs its filters (a :class:`~mailroute.pipeline.Pipeline`, or any
   :class:`~mailroute.item.Filter`) on the prepared item.
3. :func:`finish` turns the filters' result into a :class:`Result`: the emitted bytes for
   adapters that replace the message (pipe, SMTP), and :attr:`Result.edits` (header fields
   added, removed or changed, body replaced or not) for adapters that patch the message the
   MTA holds (milter).

:func:`run_session` does all three and never raises: malformed or over-limit input is
rejected, every unexpected exception becomes a temporary failure.
"""

from __future__ import annotations

import functools
import os
import re
from typing import TYPE_CHECKING

from mailroute.errors import InternalError, MailrouteError, MalformedMessageError
from mailroute.gateway.flow import message_direction
from mailroute.item import Context, Envelope, Filter, MailItem
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.logs import LazyLogger
from mailroute.mime.message import Message
from mailroute.mime.scan import AmbiguityPolicy, parse
from mailroute.records import field, record, replace
from mailroute.results import Action, Outcome, Reply, format_auth_results

if TYPE_CHECKING:
    from collections.abc import Callable

    from mailroute.mime.edits import Edits

__all__ = [
    "ACCEPTED",
    "Result",
    "SessionSettings",
    "finish",
    "format_auth_results",
    "prepare",
    "run_session",
]

log = LazyLogger("mailroute")
ACCEPTED = Reply(250, "2.0.0", "message accepted")


@record(frozen=True, kw_only=True)
class SessionSettings:
    """What the session does around the filters.

    Attributes:
        limits: limits for parsing (and the default for filters).
        on_ambiguity: ``reject`` (default) or ``record`` ambiguous messages.
        internal_domains: domains of the organisation, to derive the direction.
        authserv_id: the RFC 8601 authserv-id of this gateway; incoming
            Authentication-Results fields claiming it are removed before filters run.
        strip_own_auth_results: remove those forged fields (on whenever filters run).
    """

    limits: Limits = DEFAULT_LIMITS
    on_ambiguity: AmbiguityPolicy = AmbiguityPolicy.REJECT
    internal_domains: frozenset[str] = frozenset()
    authserv_id: str = "mailroute"
    strip_own_auth_results: bool = True

    def derive_direction(self, envelope: Envelope) -> Envelope:
        """``envelope`` with its direction derived, unless it has one or no domains are set."""
        if envelope.direction is not None or not self.internal_domains:
            return envelope
        direction = message_direction(envelope.mail_from, envelope.rcpt_to,
                                      self.internal_domains)
        return replace(envelope, direction=direction)


@record(frozen=True)
class Result:
    """What a session decided.

    Attributes:
        action: ``accept``, ``reject``, ``tempfail``, ``discard`` or ``quarantine``.
        output: the output message when accepted (or quarantined), else ``None``: its
            bytes, or the message they are emitted from (read :attr:`data` for the bytes,
            or write :meth:`chunks` without ever holding them whole).
        smtp_reply: the reply as a value.
        item: the final item when filters ran to the end.
        error: the error that stopped processing, if any.
        prepared: the item as prepared, before any filter ran (``None`` when preparing
            failed).
        split: groups of recipients a filter asked to be processed separately
            (:meth:`~mailroute.results.Outcome.split_by`; ``action`` is then ``tempfail``).
        notify: with ``quarantine``, a text the sender is to be told (see
            :class:`~mailroute.results.Outcome`).
        trace: what each filter did, as ``(filter name, result)`` pairs (see
            :meth:`mailroute.pipeline.Pipeline.apply`); empty when no filter ran.
        received: the message as parsed, when preparing removed fields from it (forged
            Authentication-Results): the base of :attr:`edits`; else ``None``.
    """

    action: Action
    output: bytes | Message | None = field(repr=False)
    smtp_reply: Reply
    item: MailItem | None = None
    error: MailrouteError | None = None
    prepared: MailItem | None = field(default=None, compare=False)
    split: tuple[tuple[str, ...], ...] = ()
    notify: str = ""
    trace: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    received: Message | None = field(default=None, repr=False, compare=False)

    @property
    def reply(self) -> str:
        """The SMTP reply text, e.g. ``554 5.6.0 message nesting too deep``."""
        return str(self.smtp_reply)

    @property
    def data(self) -> bytes | None:
        """The output message's bytes when accepted (or quarantined), else ``None``.

        Emitted on first use and kept; an unchanged message is the input itself.
        """
        output = self.output
        if isinstance(output, Message):
            output = output.to_bytes()
            object.__setattr__(self, "output", output)
        return output

    def chunks(self) -> list[bytes | memoryview]:
        """The output's bytes in pieces, most of them views of the input, for writing out
        without a copy of the whole message (empty when there is no output)."""
        output = self.output
        if output is None:
            return []
        return output.chunks() if isinstance(output, Message) else [output]

    @property
    def edits(self) -> Edits:
        """How the output differs from the message as it arrived (what an MTA holds), as
        header and body edits: the filters' changes, and the forged Authentication-Results
        fields that preparing removed. For a quarantined message, the removed fields alone
        (it is held as prepared).

        Raises:
            ValueError: the message was neither accepted nor quarantined (there is nothing
                to patch).
        """
        if self.prepared is not None and self.action is Action.QUARANTINE:
            final = self.prepared.message
        elif self.prepared is not None and self.item is not None:
            final = self.item.message
        else:
            raise ValueError(f"no edits: the message was not accepted ({self.action})")
        return _differ()(self.received or self.prepared.message, final)


@functools.cache
def _differ() -> Callable[[Message, Message], Edits]:
    """:func:`~mailroute.mime.edits.diff_messages`, imported on first use (with difflib: it
    costs start-up), then found without an import statement per message."""
    from mailroute.mime.edits import diff_messages

    return diff_messages


def prepare(data: bytes, envelope: Envelope, settings: SessionSettings) -> MailItem:
    """Step 1: parse ``data`` under the limits, derive the direction, clean the header.

    Raises:
        MailrouteError: malformed, ambiguous or over-limit input.
    """
    return _prepared(_parse(data, settings), envelope, settings)


_NOT_BLANK = re.compile(rb"[^\r\n\t ]")


def _parse(data: bytes, settings: SessionSettings) -> Message:
    if _NOT_BLANK.search(data) is None:  # a search, not strip(): no copy of a large message
        # nothing an MTA ever hands over (it adds Received at least): a closed or empty
        # input, which must not become a message of the filters' own fields
        raise MalformedMessageError("the message is empty")
    return parse(data, limits=settings.limits, on_ambiguity=settings.on_ambiguity)


def _prepared(received: Message, envelope: Envelope, settings: SessionSettings) -> MailItem:
    message = received
    if settings.strip_own_auth_results:
        message = strip_own_auth_results(message, settings.authserv_id)
    return MailItem(envelope=settings.derive_direction(envelope), message=message)


def finish(prepared: MailItem, outcome: MailItem | Outcome, settings: SessionSettings, *,
           received: Message | None = None) -> Result:
    """Step 3: the result of running filters on ``prepared``.

    An accepted item gets one Authentication-Results field with every result the filters
    collected; a quarantined message keeps the prepared bytes. ``received`` is the message
    as parsed, before :func:`prepare` removed fields from it: the base of
    :attr:`Result.edits` (the prepared message when not given).
    """
    if received is prepared.message:
        received = None
    if isinstance(outcome, Outcome):
        keep = outcome.action is Action.QUARANTINE
        return Result(outcome.action, prepared.message if keep else None,
                      outcome.reply, prepared=prepared, split=outcome.split,
                      notify=outcome.notify, trace=outcome.trace, received=received)
    final = outcome
    if final.auth_results:
        value = format_auth_results(settings.authserv_id, final.auth_results)
        final = final.evolve(message=final.message.with_header("Authentication-Results", value))
    return Result(Action.ACCEPT, final.message, ACCEPTED, item=final,
                  prepared=prepared, trace=final.trace, received=received)


def run_session(data: bytes, envelope: Envelope, step: Filter, ctx: Context,
                settings: SessionSettings) -> Result:
    """Prepare, run ``step``, finish. Never raises.

    Malformed or over-limit input is rejected (554 5.6.0 / 552 5.3.4); every unexpected
    exception becomes a temporary failure (451 4.3.0) so that the sender retries.
    """
    try:
        received = _parse(data, settings)
        prepared = _prepared(received, envelope, settings)
        return finish(prepared, step.apply(prepared, ctx), settings, received=received)
    except MailrouteError as error:
        action = Action.TEMPFAIL if error.retryable else Action.REJECT
        return Result(action, None, error.reply, error=error, trace=error.trace)
    except Exception as exc:  # the one place that turns bugs into tempfail
        reference = os.urandom(6).hex()
        # INFO: the command line's status line must come first on stderr (-v shows it);
        # a host application finds the exception in result.error.__cause__
        log.info("internal error, reference %s", reference, exc_info=True)
        internal = InternalError(f"internal error, reference {reference}")
        internal.__cause__ = exc
        return Result(Action.TEMPFAIL, None, internal.reply, error=internal)


def strip_own_auth_results(message: Message, authserv_id: str) -> Message:
    """Remove Authentication-Results fields that claim to be ours (RFC 8601 section 5)."""
    wanted = authserv_id.lower()
    if message.headers.get("Authentication-Results") is None:
        return message
    return message.keep_headers(lambda f: f.lower_name != "authentication-results"
                                or f.value.split(";", 1)[0].strip().lower() != wanted)
