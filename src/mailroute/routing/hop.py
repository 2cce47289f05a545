"""One message at one hop: envelope, connection facts and what rules can see of the message.

What ``route --in`` reads from a message: docs/routing/index.md. Headers are kept as an
ordered tuple of ``(name, value)`` pairs (decoded, unfolded values); helpers below return
new tuples.
"""

from __future__ import annotations

import enum

from mailroute.item import Envelope
from mailroute.records import field, record, replace

__all__ = [
    "Connection",
    "Headers",
    "Hop",
    "MessageFacts",
    "MessageFlag",
    "Source",
    "header_values",
    "remove_headers",
    "set_header",
]

Headers = tuple[tuple[str, str], ...]


class Source(enum.StrEnum):
    """Who opened the session that delivers the message to the node."""

    INTERNET = "internet"
    MAILBOX = "mailbox"
    EXO = "exo"
    GATEWAY = "gateway"


class MessageFlag(enum.StrEnum):
    """Facts the MIME layer (or EXO, for generated copies) knows about a message."""

    SIGNED = "signed"
    ENCRYPTED = "encrypted"
    CALENDARING = "calendaring"
    OOF = "oof"
    READ_RECEIPT = "read-receipt"
    DSN = "dsn"
    JOURNAL_REPORT = "journal-report"
    RECALL_REPORT = "recall-report"
    GROUP_FANOUT = "group-fanout"
    AUTO_FORWARD = "auto-forward"
    VOICEMAIL = "voicemail"
    APPROVAL_REQUEST = "approval-request"
    PERMISSION_CONTROLLED = "permission-controlled"
    DMARC_ALIGNED = "dmarc-aligned"  # an aligned DKIM or SPF pass for the From domain


@record(frozen=True, kw_only=True)
class Connection:
    """The SMTP session (or submission) that brings the message to a node.

    Args:
        source: who connects.
        client_ip: the connecting address (``None`` for mailbox submission and EXO copies).
        tls: whether the session used TLS.
        peer_cert_names: CN and SAN names of the client certificate presented, if any.
    """

    source: Source
    client_ip: str | None = None
    tls: bool = True
    peer_cert_names: tuple[str, ...] = ()


@record(frozen=True, kw_only=True)
class MessageFacts:
    """What routing can see of a message (never its body).

    Args:
        headers: ordered ``(name, value)`` pairs.
        message_id: the Message-ID (angle brackets included), ``""`` if none.
        from_addrs: addr-specs of the From field, lower-case.
        flags: message facts (signed, OOF, DSN, ...).
        scl: EOP's spam confidence level, if known.
        size: message size in bytes.
        received_count: number of ``Received`` fields.
        disclaimers: disclaimers EXO appended so far (to detect double application).
        wrapped: EXO wrapped the message in a disclaimer envelope.
    """

    headers: Headers = ()
    message_id: str = ""
    from_addrs: tuple[str, ...] = ()
    flags: frozenset[MessageFlag] = frozenset()
    scl: int | None = None
    size: int = 10_000
    received_count: int = 0
    disclaimers: int = 0
    wrapped: bool = False
    _index: dict[str, list[str]] | None = field(default=None, init=False, repr=False,
                                                compare=False, hash=False)

    def values(self, name: str) -> list[str]:
        """Every value of field ``name`` (case-insensitive), from an index built on first use.

        The index is a memo of the immutable ``headers``; it never changes what the object
        compares or hashes as.
        """
        index = self._index
        if index is None:
            index = {}
            for key, value in self.headers:
                index.setdefault(key.lower(), []).append(value)
            object.__setattr__(self, "_index", index)
        return index.get(name.lower(), [])

    def has(self, flag: MessageFlag) -> bool:
        """True when ``flag`` is set."""
        return flag in self.flags

    def evolve(self, **changes: object) -> MessageFacts:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)

    def with_headers(self, headers: Headers) -> MessageFacts:
        """Return a copy with other headers (the hot path of every rule action)."""
        return MessageFacts(headers=headers, message_id=self.message_id,
                            from_addrs=self.from_addrs, flags=self.flags, scl=self.scl,
                            size=self.size, received_count=self.received_count,
                            disclaimers=self.disclaimers, wrapped=self.wrapped)


@record(frozen=True, kw_only=True)
class Hop:
    """The input of one decision: envelope, connection, message and EXO pass number."""

    envelope: Envelope
    connection: Connection
    message: MessageFacts
    pass_no: int = 1


def header_values(headers: Headers, name: str) -> list[str]:
    """Every value of field ``name`` (case-insensitive), in order."""
    lname = name.lower()
    size = len(name)
    return [value for key, value in headers if len(key) == size and key.lower() == lname]


def remove_headers(headers: Headers, *, name: str | None = None,
                   prefixes: tuple[str, ...] = ()) -> Headers:
    """Drop the fields called ``name`` and every field whose name starts with a prefix."""
    if not prefixes and name is not None:
        lname, size = name.lower(), len(name)
        return tuple([kv for kv in headers if len(kv[0]) != size or kv[0].lower() != lname])
    lname = name.lower() if name else ""
    lprefixes = tuple(p.lower() for p in prefixes)
    return tuple([kv for kv in headers
                  if (key := kv[0].lower()) != lname and not key.startswith(lprefixes)])


def set_header(headers: Headers, name: str, value: str) -> Headers:
    """Replace every ``name`` field by one with ``value`` (appended at the end)."""
    return (*remove_headers(headers, name=name), (name, value))
