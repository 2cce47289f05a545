"""Outcomes of processing: actions, SMTP replies and verification results.

Verification results use the RFC 8601 (``Authentication-Results``) vocabulary.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from mailroute.records import field, record, replace

__all__ = [
    "Action",
    "AuthResult",
    "AuthStatus",
    "MarkerVerdict",
    "Outcome",
    "Reply",
    "format_auth_results",
]


class Action(enum.StrEnum):
    """What the MTA should do with the message."""

    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCARD = "discard"
    QUARANTINE = "quarantine"


@record(frozen=True)
class Reply:
    """An SMTP reply: basic code, RFC 3463 enhanced status code and text.

    The text must never contain CR or LF; the constructor strips control characters so that
    a reply can never be used to inject a second line into an SMTP dialogue.
    """

    code: int
    status: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code out of range: {self.code}")
        parts = self.status.split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts) or parts[0] != str(self.code)[0]:
            raise ValueError(f"enhanced status {self.status!r} does not fit code {self.code}")
        clean = "".join(ch if ch.isprintable() else " " for ch in self.text)
        object.__setattr__(self, "text", clean)

    def with_text(self, text: str) -> Reply:
        """Return the same codes with another text."""
        return replace(self, text=text)

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


@record(frozen=True)
class Outcome:
    """A terminal decision of a filter: stop processing and tell the MTA ``action``.

    ``split`` (only with :meth:`split_by`) asks the adapter to run the policy again once per
    group of recipients and hand on each copy; an adapter that cannot split answers the
    temporary failure the outcome carries, so nothing leaves with the wrong treatment.
    ``notify`` (only with :meth:`quarantine`) is a text for the sender: an adapter that
    quarantines the message also sends him a notification with it.
    ``trace`` is filled in by the pipeline: what each filter up to this one did, as
    ``(filter name, result)`` pairs, the deciding filter last with the action as its result.
    """

    action: Action
    reply: Reply
    split: tuple[tuple[str, ...], ...] = ()
    notify: str = ""
    trace: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def split_by(cls, groups: tuple[tuple[str, ...], ...],
                 text: str = "the recipients need separate copies of this message"
                 ) -> Outcome:
        """Process each group of recipients separately (a temporary failure where the
        adapter cannot)."""
        return cls(Action.TEMPFAIL, Reply(451, "4.7.0", text), groups)

    @classmethod
    def reject(cls, status: str = "5.7.1", text: str = "message refused by policy",
               code: int = 554) -> Outcome:
        """A permanent refusal."""
        return cls(Action.REJECT, Reply(code, status, text))

    @classmethod
    def tempfail(cls, status: str = "4.3.0", text: str = "try again later",
                 code: int = 451) -> Outcome:
        """A temporary refusal: the sending MTA keeps the message and retries."""
        return cls(Action.TEMPFAIL, Reply(code, status, text))

    @classmethod
    def discard(cls, text: str = "message discarded") -> Outcome:
        """Accept and silently drop the message."""
        return cls(Action.DISCARD, Reply(250, "2.7.0", text))

    @classmethod
    def quarantine(cls, text: str = "message quarantined", *, notify: str = "") -> Outcome:
        """Hold the message for an administrator; ``notify``: tell the sender this."""
        return cls(Action.QUARANTINE, Reply(250, "2.7.0", text), notify=notify)


class AuthStatus(enum.StrEnum):
    """RFC 8601 result values."""

    PASS = "pass"  # noqa: S105 - an RFC 8601 result, not a password
    FAIL = "fail"
    SOFTFAIL = "softfail"  # SPF (RFC 7208 section 8.5)
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"
    POLICY = "policy"


@record(frozen=True)
class AuthResult:
    """One authentication result, e.g. ``smime=pass header.from=a@example.net``.

    ``method`` is the RFC 8601 method name (``smime``, ``pgp``, ``dkim``, ``x-mailroute-mark``),
    ``properties`` are ``ptype.property=value`` pairs, ``reason`` a short safe text.
    """

    method: str
    status: AuthStatus
    reason: str = ""
    properties: tuple[tuple[str, str], ...] = ()


class MarkerVerdict(enum.StrEnum):
    """Verdicts of loop-marker verification (docs/marker.md, "Verdicts and gateway actions")."""

    MISSING = "missing"
    MALFORMED = "malformed"
    FOREIGN = "foreign"
    UNKNOWN_KEY = "unknown-key"
    FUTURE = "future"
    BAD_MAC = "bad-mac"
    EXPIRED = "expired"
    VALID_STALE = "valid-stale"
    VALID_FRESH = "valid-fresh"

    @property
    def is_valid(self) -> bool:
        """True for the two verdicts that prove the gateway made the marker."""
        return self in (MarkerVerdict.VALID_FRESH, MarkerVerdict.VALID_STALE)


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
