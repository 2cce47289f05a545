"""The in-process processed-message store of the loop guard.

Implements :class:`mailroute.item.ProcessedStore` for one process; a policy loaded from a
file gets one in its default context (:attr:`mailroute.item.Context.processed`), shared by
its ``marker-verify`` and ``marker-set`` filters.
"""

from __future__ import annotations

from _thread import allocate_lock  # threading.Lock without importing threading: start-up
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailroute.item import ProcessedStore

__all__ = ["InMemoryProcessedStore", "ReadOnlyProcessedStore"]


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
        self._lock = allocate_lock()

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


class ReadOnlyProcessedStore:
    """Another store seen without changing it (``mailroute try``): counts are the other
    store's, records are kept here only, so a dry run sees the loops a real pass would see
    and leaves nothing behind for the next real pass to take for one."""

    def __init__(self, seen: ProcessedStore | None) -> None:
        self._seen = seen
        self._own = InMemoryProcessedStore()

    def count(self, key: str, now: float, ttl: float, *, other_than: str = "") -> int:
        """The other store's count plus this run's own records."""
        theirs = self._seen.count(key, now, ttl, other_than=other_than) if self._seen else 0
        return theirs + self._own.count(key, now, ttl, other_than=other_than)

    def record(self, key: str, now: float, ttl: float, *, fingerprint: str = "") -> int:
        """Record ``key`` here only; the count the other store would then give."""
        theirs = self._seen.count(key, now, ttl) if self._seen else 0
        return theirs + self._own.record(key, now, ttl, fingerprint=fingerprint)
