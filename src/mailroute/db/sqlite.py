"""An SQLite file several processes share: WAL journal, busy timeout, private file mode.

Readers never wait for the writer (WAL); a writer waits up to ``busy_timeout`` for another
process's transaction instead of failing. Every database or file error becomes a
:class:`~mailroute.errors.TemporaryError`: the message is retried, never lost.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from mailroute.errors import TemporaryError
from mailroute.paths import private_directory

__all__ = ["open_shared", "rollback", "temporary"]


def open_shared(path: Path, *, busy_timeout: float, schema: Iterable[str], what: str
                ) -> sqlite3.Connection:
    """Open (creating: directory 0700, file 0600) the database ``path`` in autocommit mode
    and apply ``schema`` (idempotent statements).

    Raises:
        TemporaryError: the file or the database cannot be opened; ``what`` names the store.
    """
    try:
        private_directory(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        for statement in schema:
            connection.execute(statement)
    except (OSError, sqlite3.Error) as exc:
        raise temporary(what, exc) from exc
    return connection


def rollback(connection: sqlite3.Connection) -> None:
    """Roll back an open transaction, ignoring a second failure."""
    try:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def temporary(what: str, exc: Exception) -> TemporaryError:
    """The temporary error for a failure of store ``what`` (no paths or data in the text)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    return TemporaryError(f"{what} unavailable ({reason})")
