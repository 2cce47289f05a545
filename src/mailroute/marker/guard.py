"""The second and third loop guards: the processed-Message-ID store and the Received count.

The marker-set filter records (Message-ID, sender, recipient set, direction) of every message it
marks; marker-verify refuses a message whose key was recorded ``limit`` times within the TTL
(step G2 of docs/routing/steps.md; docs/marker.md). Keys are SHA-256 digests, so a store never holds
addresses.

Each record carries the *arrival fingerprint* of the message: a digest of its ``Received``
fields as it arrived. A message that went round a loop has gained ``Received`` fields; the
same queue file handed over again after a failed delivery (a pipe transport retrying) has
not, so records with the current fingerprint do not count and a retry is never a loop.

:class:`mailroute.gateway.processed.InMemoryProcessedStore` serves one process; several
gateway nodes share state through another :class:`~mailroute.item.ProcessedStore`
implementation. The store is passed in through
:attr:`mailroute.item.Context.processed`: there is no process-wide default.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailroute.digests import sha256
from mailroute.item import Direction, ProcessedStore
from mailroute.marker.binding import length_prefixed
from mailroute.mime.message import Message

__all__ = [
    "ProcessedStore",
    "arrival_fingerprint",
    "processed_key",
    "received_count",
]


def processed_key(message_id: str, sender: str, recipients: Iterable[str],
                  direction: Direction | None) -> str:
    """The digest of (normalised Message-ID, lower-cased envelope sender, sorted lower-cased
    recipients, direction).

    The envelope sender tells a loop (the same transaction coming round again) from a second
    copy of one message delivered legitimately: a mailing list's copy of a post the
    recipient also got directly comes from the list's bounce address.
    """
    rcpts = ",".join(sorted({r.lower() for r in recipients}))
    data = b"".join(length_prefixed(part) for part in (
        message_id, sender.lower(), rcpts, direction.value if direction is not None else ""))
    return sha256(data).hexdigest()


def arrival_fingerprint(message: Message) -> str:
    """A digest of the raw top-level ``Received`` fields, in order."""
    digest = sha256()
    for field in message.headers.get_all("Received"):
        digest.update(field.raw)
    return digest.hexdigest()


def received_count(message: Message) -> int:
    """How many ``Received`` fields the top-level header holds."""
    return message.headers.count("Received")
