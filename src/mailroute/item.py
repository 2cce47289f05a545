"""What flows through a pipeline: the envelope, the message and what filters learned about it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from mailroute.results import AuthResult

if TYPE_CHECKING:
    from mailroute.mime.message import Message

__all__ = ["Direction", "Envelope", "MailItem"]


class Direction(enum.StrEnum):
    """Which way a message travels relative to the organisation."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The SMTP envelope and connection facts of one message.

    Args:
        mail_from: the MAIL FROM address; ``""`` is the null sender of bounces.
        rcpt_to: the RCPT TO addresses.
        client_address: the connecting client's IP address, if known.
        tls_peer_name: the peer's *verified* certificate name, if any.
        direction: inbound, outbound or internal; ``None`` lets the policy derive it.
    """

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    client_address: str | None = None
    tls_peer_name: str | None = None
    direction: Direction | None = None

    def __init__(self, *, mail_from: str = "", rcpt_to: tuple[str, ...] | list[str] = (),
                 client_address: str | None = None, tls_peer_name: str | None = None,
                 direction: Direction | str | None = None) -> None:
        for name, value in (("mail_from", mail_from), ("client_address", client_address),
                            ("tls_peer_name", tls_peer_name)):
            if value is not None and any(ch in value for ch in "\r\n\0"):
                raise ValueError(f"{name} contains CR, LF or NUL")
        for rcpt in rcpt_to:
            if any(ch in rcpt for ch in "\r\n\0"):
                raise ValueError("rcpt_to contains CR, LF or NUL")
        object.__setattr__(self, "mail_from", mail_from)
        object.__setattr__(self, "rcpt_to", tuple(rcpt_to))
        object.__setattr__(self, "client_address", client_address)
        object.__setattr__(self, "tls_peer_name", tls_peer_name)
        object.__setattr__(self, "direction", Direction(direction) if direction else None)

    @property
    def sender_domain(self) -> str:
        """The domain of MAIL FROM, lower-cased; empty for the null sender."""
        return self.mail_from.rpartition("@")[2].lower() if "@" in self.mail_from else ""

    @property
    def recipient_domains(self) -> frozenset[str]:
        """The lower-cased domains of all recipients."""
        return frozenset(r.rpartition("@")[2].lower() for r in self.rcpt_to if "@" in r)


@dataclass(frozen=True, slots=True, kw_only=True)
class MailItem:
    """One message in flight: envelope, MIME tree, and annotations left by filters.

    ``annotations`` are free-form facts one filter leaves for a later one (for example the
    marker verdict); ``auth_results`` are collected into one Authentication-Results field.
    Items are immutable; use :meth:`evolve` to derive a changed one.
    """

    envelope: Envelope
    message: Message
    annotations: tuple[tuple[str, str], ...] = ()
    auth_results: tuple[AuthResult, ...] = field(default=())

    def evolve(self, **changes: object) -> MailItem:
        """Return a copy with ``changes`` applied (as :func:`dataclasses.replace`)."""
        return replace(self, **changes)  # type: ignore[arg-type]

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
