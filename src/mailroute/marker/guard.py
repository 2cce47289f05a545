"""The second and third loop guards: the processed-Message-ID store and the Received count.

The marker-set filter records (Message-ID, recipient set, direction) of every message it
marks; marker-verify refuses a message whose key was recorded ``limit`` times within the TTL
(notes/exchange-online.md 2.8 G2 and 5.7). Keys are SHA-256 digests, so a store never holds
addresses.

Each record carries the *arrival fingerprint* of the message: a digest of its ``Received``
fields as it arrived. A message that went round a loop has gained ``Received`` fields; the
same queue file handed over again after a failed delivery (a pipe transport retrying) has
not, so records with the current fingerprint do not count and a retry is never a loop.

:class:`InMemoryProcessedStore` serves one process; several gateway nodes share state through
another :class:`ProcessedStore` implementation.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

from mailroute.item import Direction
from mailroute.marker.binding import length_prefixed
from mailroute.mime.message import Message

__all__ = [
    "InMemoryProcessedStore",
    "ProcessedStore",
    "arrival_fingerprint",
    "processed_key",
    "received_count",
    "shared_memory_store",
]


class ProcessedStore(Protocol):
    """Where processed-message keys are counted. Implementations must be thread-safe."""

    def count(self, key: str, now: float, ttl: float, *, other_than: str = "") -> int:
        """How often ``key`` was recorded within ``ttl`` seconds before ``now`` with a
        fingerprint other than ``other_than``."""
        ...

    def record(self, key: str, now: float, ttl: float, *, fingerprint: str = "") -> int:
        """Record ``key`` at ``now``; return the count within ``ttl``, this one included."""
        ...


class InMemoryProcessedStore:
    """A bounded in-process :class:`ProcessedStore`.

    At most ``max_keys`` keys are kept; when full, expired entries go first, then the key
    recorded longest ago. Per key only the latest :attr:`MAX_PER_KEY` times are kept, so a
    count saturates there (guards use limits far below it).
    """

    MAX_PER_KEY = 64

    def __init__(self, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be positive")
        self._max_keys = max_keys
        self._entries: OrderedDict[str, list[tuple[float, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, key: str, now: float, ttl: float, *, other_than: str = "") -> int:
        """How often ``key`` was recorded within ``ttl`` seconds before ``now`` with a
        fingerprint other than ``other_than``."""
        with self._lock:
            return sum(1 for _, mark in self._live(key, now, ttl)
                       if not other_than or mark != other_than)

    def record(self, key: str, now: float, ttl: float, *, fingerprint: str = "") -> int:
        """Record ``key`` at ``now``; return the count within ``ttl``, this one included."""
        with self._lock:
            times = self._live(key, now, ttl)
            times.append((now, fingerprint))
            del times[:-self.MAX_PER_KEY]
            self._entries[key] = times
            self._entries.move_to_end(key)
            if len(self._entries) > self._max_keys:
                self._evict(now, ttl)
            return len(times)

    def _live(self, key: str, now: float, ttl: float) -> list[tuple[float, str]]:
        return [entry for entry in self._entries.get(key, ()) if now - ttl < entry[0] <= now]

    def _evict(self, now: float, ttl: float) -> None:
        expired = [k for k, times in self._entries.items() if times[-1][0] <= now - ttl]
        for key in expired:
            del self._entries[key]
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)


_SHARED = InMemoryProcessedStore()


def shared_memory_store() -> InMemoryProcessedStore:
    """The process-wide in-memory store that marker-set and marker-verify share by default."""
    return _SHARED


def processed_key(message_id: str, recipients: Iterable[str], direction: Direction | None
                  ) -> str:
    """The digest of (normalised Message-ID, sorted lower-cased recipients, direction)."""
    rcpts = ",".join(sorted({r.lower() for r in recipients}))
    data = b"".join(length_prefixed(part) for part in (
        message_id, rcpts, direction.value if direction is not None else ""))
    return hashlib.sha256(data).hexdigest()


def arrival_fingerprint(message: Message) -> str:
    """A digest of the raw top-level ``Received`` fields, in order."""
    digest = hashlib.sha256()
    for field in message.headers.get_all("Received"):
        digest.update(field.raw)
    return digest.hexdigest()


def received_count(message: Message) -> int:
    """How many ``Received`` fields the top-level header holds."""
    return message.headers.count("Received")
