"""The key directory in an SQLite file (the default backend): see :mod:`.directory`.

Several processes share the file (WAL journal, busy timeout); changes run in ``BEGIN
IMMEDIATE`` transactions, so the rules of :mod:`.directory_sql` hold across processes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mailroute.db.sqlite import open_shared, rollback, temporary
from mailroute.keys.directory_sql import Execute, SqlKeyDirectory, schema

__all__ = ["KEYS_FILE", "SqliteKeyDirectory"]

#: The file name of the directory inside a policy's ``state_dir``.
KEYS_FILE = "keys.sqlite3"
_WHAT = "key directory"


class SqliteKeyDirectory(SqlKeyDirectory):
    """A :class:`~mailroute.keys.directory.KeyDirectory` in an SQLite file.

    The file (mode 0600, directory 0700) is opened on first use.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"SqliteKeyDirectory({str(self.path)!r})"

    @contextmanager
    def _transaction(self, lock: str | None = None) -> Iterator[Execute]:
        with self._lock:
            connection = self._connect()

            def execute(sql: str, parameters: Sequence[object] = ()) -> list[Sequence[object]]:
                return connection.execute(sql, tuple(parameters)).fetchall()

            try:
                connection.execute("BEGIN IMMEDIATE" if lock is not None else "BEGIN")
                yield execute
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                rollback(connection)
                raise temporary(_WHAT, exc) from exc
            except BaseException:
                rollback(connection)
                raise

    def close(self) -> None:
        """Close the connection (reopened on the next use)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        connection = open_shared(self.path, busy_timeout=self._busy_timeout,
                                 schema=schema("BLOB", "REAL"), what=_WHAT)
        self._connection, self._pid = connection, os.getpid()
        return connection
