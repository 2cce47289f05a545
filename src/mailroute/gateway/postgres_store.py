"""The processed-message store in PostgreSQL, for several gateway nodes (``[postgres]``).

The same records and rules as :class:`~mailroute.gateway.sqlite_store.SqliteProcessedStore`
(keys and fingerprints are digests, never addresses; expired rows go as records are written;
at most ``MAX_PER_KEY`` per key), in a database every node reaches. Recording one key is one
transaction under an advisory lock on the key, so two nodes recording the same message count
it twice, never once. A database error is a :class:`~mailroute.errors.TemporaryError`.
"""

from __future__ import annotations

from mailroute.db.postgres import SharedConnection

__all__ = ["PostgresProcessedStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mailroute_processed (key TEXT NOT NULL, "
    "at DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL, "
    "fingerprint TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mailroute_processed_key ON mailroute_processed (key, at)",
    "CREATE INDEX IF NOT EXISTS mailroute_processed_expires ON mailroute_processed (expires)",
)


class PostgresProcessedStore:
    """A :class:`~mailroute.item.ProcessedStore` in PostgreSQL.

    Raises:
        ConfigError: psycopg is not installed (on construction).
    """

    MAX_PER_KEY = 64

    def __init__(self, dsn: str) -> None:
        self._shared = SharedConnection(dsn, schema=_SCHEMA, what="processed-message store")

    def __repr__(self) -> str:
        return "PostgresProcessedStore()"

    def count(self, key: str, now: float, ttl: float, *, other_than: str = "") -> int:
        """How often ``key`` was recorded within ``ttl`` seconds before ``now`` with a
        fingerprint other than ``other_than``."""
        with self._shared.transaction() as execute:
            rows = execute("SELECT count(*) FROM mailroute_processed WHERE key = ? AND at > ? "
                           "AND at <= ? AND (? = '' OR fingerprint != ?)",
                           (key, now - ttl, now, other_than, other_than))
        return int(str(rows[0][0]))

    def record(self, key: str, now: float, ttl: float, *, fingerprint: str = "") -> int:
        """Record ``key`` at ``now``; return the count within ``ttl``, this one included."""
        with self._shared.transaction(lock=key) as execute:
            execute("DELETE FROM mailroute_processed WHERE expires <= ?", (now,))
            execute("INSERT INTO mailroute_processed (key, at, expires, fingerprint) "
                    "VALUES (?, ?, ?, ?)", (key, now, now + ttl, fingerprint))
            execute("DELETE FROM mailroute_processed WHERE key = ? AND ctid NOT IN (SELECT "
                    "ctid FROM mailroute_processed WHERE key = ? ORDER BY at DESC LIMIT ?)",
                    (key, key, self.MAX_PER_KEY))
            rows = execute("SELECT count(*) FROM mailroute_processed WHERE key = ? AND at > ? "
                           "AND at <= ?", (key, now - ttl, now))
        return int(str(rows[0][0]))

    def close(self) -> None:
        """Close the connection (reopened on the next use)."""
        self._shared.close()
