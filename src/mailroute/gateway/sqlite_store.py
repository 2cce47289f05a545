"""The processed-message store shared between processes: SQLite in a state directory.

Postfix ``pipe(8)`` and Exim start one ``mailroute`` process per message, so the in-process
:class:`~mailroute.gateway.processed.InMemoryProcessedStore` forgets every message at exit and
the processed-message loop guard never fires. :class:`SqliteProcessedStore` keeps the records
in one SQLite file that every process opens: WAL journal (readers never wait for the writer),
a busy timeout (concurrent writers queue instead of failing), one short ``BEGIN IMMEDIATE``
transaction per record. Keys and fingerprints are SHA-256 digests (never addresses); each row
carries its expiry time and expired rows are deleted as records are written.

A database error is a :class:`~mailroute.errors.TemporaryError`: the message is retried later,
never passed unguarded and never lost.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from mailroute.db.sqlite import open_shared, rollback, temporary

__all__ = ["PROCESSED_FILE", "SqliteProcessedStore"]

#: The file name of the store inside a policy's ``state_dir``.
PROCESSED_FILE = "processed.sqlite3"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS processed (key TEXT NOT NULL, at REAL NOT NULL, "
    "expires REAL NOT NULL, fingerprint TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS processed_key ON processed (key, at)",
    "CREATE INDEX IF NOT EXISTS processed_expires ON processed (expires)",
)
_WHAT = "processed-message store"


class SqliteProcessedStore:
    """A :class:`~mailroute.item.ProcessedStore` in an SQLite file, safe across processes.

    Args:
        path: the database file; its directory is created (mode 0700) when missing and the
            file is created with mode 0600.
        busy_timeout: seconds a writer waits for another process's transaction.

    The connection is opened on first use, so building a policy does not touch the disk.
    """

    MAX_PER_KEY = 64

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteProcessedStore({str(self.path)!r})"

    def count(self, key: str, now: float, ttl: float, *, other_than: str = "") -> int:
        """How often ``key`` was recorded within ``ttl`` seconds before ``now`` with a
        fingerprint other than ``other_than``."""
        with self._lock:
            row = self._execute(
                "SELECT count(*) FROM processed WHERE key = ? AND at > ? AND at <= ? "
                "AND (? = '' OR fingerprint != ?)",
                (key, now - ttl, now, other_than, other_than)).fetchone()
        return int(row[0])

    def record(self, key: str, now: float, ttl: float, *, fingerprint: str = "") -> int:
        """Record ``key`` at ``now``; return the count within ``ttl``, this one included."""
        with self._lock:
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("DELETE FROM processed WHERE expires <= ?", (now,))
                connection.execute(
                    "INSERT INTO processed (key, at, expires, fingerprint) VALUES (?, ?, ?, ?)",
                    (key, now, now + ttl, fingerprint))
                connection.execute(
                    "DELETE FROM processed WHERE key = ? AND rowid NOT IN (SELECT rowid FROM "
                    "processed WHERE key = ? ORDER BY at DESC LIMIT ?)",
                    (key, key, self.MAX_PER_KEY))
                row = connection.execute(
                    "SELECT count(*) FROM processed WHERE key = ? AND at > ? AND at <= ?",
                    (key, now - ttl, now)).fetchone()
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                rollback(connection)
                raise temporary(_WHAT, exc) from exc
        return int(row[0])

    def close(self) -> None:
        """Close the connection (it is reopened on the next use)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _execute(self, sql: str, parameters: tuple[object, ...]) -> sqlite3.Cursor:
        connection = self._connect()
        try:
            return connection.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise temporary(_WHAT, exc) from exc

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        connection = open_shared(self.path, busy_timeout=self._busy_timeout,
                                 schema=_SCHEMA, what=_WHAT)
        self._connection, self._pid = connection, os.getpid()
        return connection
