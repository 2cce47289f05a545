"""The filter contract: what flows through a pipeline, what a filter may use, what it is.

:class:`Envelope` and :class:`MailItem` are what flows; :class:`Context` is everything a
filter may use besides the message (all injected, so tests need no I/O); :class:`Filter` is
the protocol every filter, and every pipeline, implements. This module sits at the bottom of
the layer list (docs/architecture.md): filters, pipelines, sessions and adapters import it,
it imports nothing above the error, result and limit types.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar, cast, runtime_checkable

from mailroute.errors import ConfigError, InvalidArgumentError
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.records import field, record, replace
from mailroute.results import AuthResult, Outcome

if TYPE_CHECKING:
    from mailroute.mime.message import Message

__all__ = ["Context", "Direction", "Envelope", "Filter", "MailItem", "ProcessedStore",
           "TxtResolver", "breaks_line"]

T = TypeVar("T")
TxtResolver = Callable[[str], Sequence[str]]


class Direction(enum.StrEnum):
    """Which way a message travels relative to the organisation."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


def breaks_line(text: str) -> bool:
    """True when ``text`` holds a CR, LF or NUL (three substring tests: an adapter checks
    every envelope value of every message)."""
    return "\r" in text or "\n" in text or "\0" in text


def _refuse_line_breaks(**values: str | None) -> None:
    """Raise for the first of ``values`` that holds a CR, LF or NUL."""
    for name, value in values.items():
        if value is not None and breaks_line(value):
            raise InvalidArgumentError(f"{name} contains CR, LF or NUL")


def _direction(value: Direction | str) -> Direction:
    try:
        return Direction(value)
    except ValueError:
        raise InvalidArgumentError(
            f"direction must be one of {', '.join(d.value for d in Direction)}") from None


@record(frozen=True, kw_only=True)
class Envelope:
    """The SMTP envelope and connection facts of one message.

    Args:
        mail_from: the MAIL FROM address; ``""`` is the null sender of bounces.
        rcpt_to: the RCPT TO addresses.
        client_address: the connecting client's IP address, if known.
        tls_peer_name: the peer's *verified* certificate name, if any.
        helo: the name the client gave in HELO/EHLO, if known (SPF checks it for the null
            sender).
        direction: inbound, outbound or internal; ``None`` lets the policy derive it.
        auth_user: the name the client authenticated as with SMTP AUTH (SASL), if it did
            (the milter's ``{auth_authen}``); ``None`` for an unauthenticated session.
    """

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    client_address: str | None = None
    tls_peer_name: str | None = None
    helo: str | None = None
    direction: Direction | None = None
    auth_user: str | None = None

    def __init__(self, *, mail_from: str = "", rcpt_to: tuple[str, ...] | list[str] = (),
                 client_address: str | None = None, tls_peer_name: str | None = None,
                 helo: str | None = None, direction: Direction | str | None = None,
                 auth_user: str | None = None) -> None:
        if isinstance(cast(object, rcpt_to), str):  # typed callers cannot; others do
            raise InvalidArgumentError("rcpt_to is a list of addresses, not one string")
        rcpts = tuple(rcpt_to)
        # one test of all values joined: an adapter builds an envelope for every message
        if breaks_line("".join([mail_from, *rcpts, client_address or "", tls_peer_name or "",
                                helo or "", auth_user or ""])):
            _refuse_line_breaks(mail_from=mail_from, client_address=client_address,
                                tls_peer_name=tls_peer_name, helo=helo, auth_user=auth_user)
            raise InvalidArgumentError("rcpt_to contains CR, LF or NUL")
        _set_mail_from(self, mail_from)
        _set_rcpt_to(self, rcpts)
        _set_client_address(self, client_address)
        _set_tls_peer_name(self, tls_peer_name)
        _set_helo(self, helo)
        _set_direction(self, _direction(direction) if direction else None)
        _set_auth_user(self, auth_user or None)

    @property
    def sender_domain(self) -> str:
        """The domain of MAIL FROM, lower-cased; empty for the null sender."""
        return self.mail_from.rpartition("@")[2].lower() if "@" in self.mail_from else ""

    @property
    def recipient_domains(self) -> frozenset[str]:
        """The lower-cased domains of all recipients."""
        return frozenset(r.rpartition("@")[2].lower() for r in self.rcpt_to if "@" in r)


# Envelope's fields, stored through their slots (an envelope is built per message; the
# slot's own setter costs half of object.__setattr__)
(_set_mail_from, _set_rcpt_to, _set_client_address, _set_tls_peer_name, _set_helo,
 _set_direction, _set_auth_user) = (
    getattr(Envelope, name).__set__ for name in ("mail_from", "rcpt_to", "client_address",
                                                 "tls_peer_name", "helo", "direction",
                                                 "auth_user"))


@record(frozen=True, kw_only=True)
class MailItem:
    """One message in flight: envelope, MIME tree, and annotations left by filters.

    ``annotations`` are free-form facts one filter leaves for a later one (for example the
    marker verdict); ``auth_results`` are collected into one Authentication-Results field;
    ``trace`` is what each filter of a pipeline did, as ``(filter name, result)`` pairs
    (``changed``, ``unchanged``, ``skipped``), for the per-message log line.
    Items are immutable; use :meth:`evolve` to derive a changed one.
    """

    envelope: Envelope
    message: Message
    annotations: tuple[tuple[str, str], ...] = ()
    auth_results: tuple[AuthResult, ...] = field(default=())
    trace: tuple[tuple[str, str], ...] = ()

    def evolve(self, **changes: object) -> MailItem:
        """Return a copy with ``changes`` applied (as :func:`mailroute.records.replace`)."""
        return replace(self, **changes)

    def with_trace(self, trace: tuple[tuple[str, str], ...]) -> MailItem:
        """Return a copy with ``trace`` (built directly: a tenth of the cost of
        :meth:`evolve`, and the pipeline calls it for every message)."""
        return MailItem(envelope=self.envelope, message=self.message,
                        annotations=self.annotations, auth_results=self.auth_results,
                        trace=trace)

    def with_message(self, message: Message, *notes: tuple[str, str]) -> MailItem:
        """Return a copy with ``message`` and ``notes`` added to the annotations (built
        directly, as :meth:`with_trace`)."""
        return MailItem(envelope=self.envelope, message=message,
                        annotations=(*self.annotations, *notes) if notes else self.annotations,
                        auth_results=self.auth_results, trace=self.trace)

    def annotate(self, key: str, value: str) -> MailItem:
        """Return a copy with one more annotation (a later value for a key wins)."""
        return replace(self, annotations=(*self.annotations, (key, value)))

    def annotation(self, key: str) -> str | None:
        """The latest value of annotation ``key``, or ``None``."""
        for k, v in reversed(self.annotations):
            if k == key:
                return v
        return None

    def with_auth_result(self, result: AuthResult) -> MailItem:
        """Return a copy with one more authentication result."""
        return replace(self, auth_results=(*self.auth_results, result))


class ProcessedStore(Protocol):
    """Where the gateway counts the messages it processed (the processed-message loop guard).

    Keys are digests (never addresses); each record carries an arrival fingerprint, so a
    retry of the same arrival is not counted against itself. Implementations must be safe
    for concurrent use: :class:`mailroute.gateway.processed.InMemoryProcessedStore` within one
    process.
    """

    def count(self, key: str, now: float, ttl: float, *, other_than: str = "") -> int:
        """How often ``key`` was recorded within ``ttl`` seconds before ``now`` with a
        fingerprint other than ``other_than``."""
        ...

    def record(self, key: str, now: float, ttl: float, *, fingerprint: str = "") -> int:
        """Record ``key`` at ``now``; return the count within ``ttl``, this one included."""
        ...


@record(frozen=True, kw_only=True)
class Context:
    """What a filter may use besides the message: all of it injected, so tests need no I/O.

    Attributes:
        clock: returns the current UNIX time.
        resolver: DNS TXT lookup (name -> TXT strings), or ``None`` where DNS is not used.
        keys: named key stores (certificate store, GnuPG home, marker key ring ...).
        limits: the resource limits in force.
        processed: the processed-message store the loop guard counts in; ``None`` turns
            the processed-message guard off (a policy loaded from a file brings its own).
    """

    clock: Callable[[], float] = time.time
    resolver: TxtResolver | None = None
    keys: Mapping[str, object] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS
    processed: ProcessedStore | None = None

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

    A filter that waits on something outside the process (a subprocess, the network) says
    so with a class attribute ``blocking = True``: the milter then never runs it on its
    event loop, where a hang would stall every connection.
    """

    @property
    def name(self) -> str:
        """A short name for logs and traces (the policy's ``filter`` value)."""
        ...

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Process ``item``."""
        ...
