"""A PostgreSQL connection several gateway nodes share (psycopg 3, extra ``[postgres]``).

:class:`SharedConnection` opens one connection per process on first use (a forked child
opens its own), applies the store's schema once, and runs each unit of work in one
transaction. ``?`` placeholders are translated to psycopg's ``%s``, so the stores write their
SQL once for SQLite and PostgreSQL. Every database error becomes a
:class:`~mailroute.errors.TemporaryError` whose text names the store, never the DSN (it may
hold a password).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mailroute.errors import ConfigError, TemporaryError

if TYPE_CHECKING:
    import psycopg

__all__ = ["Execute", "SharedConnection"]

Row = Sequence[object]


class Execute:
    """Runs SQL written with ``?`` placeholders inside one open transaction."""

    def __init__(self, connection: psycopg.Connection[tuple[object, ...]]) -> None:
        self._connection = connection

    def __call__(self, sql: str, parameters: Sequence[object] = ()) -> list[Row]:
        """Execute ``sql``; the rows it returns (empty for a statement without rows)."""
        cursor = self._connection.execute(sql.replace("?", "%s"), tuple(parameters))
        return list(cursor.fetchall()) if cursor.description is not None else []


class SharedConnection:
    """One PostgreSQL connection per process, created on first use.

    Args:
        dsn: a libpq connection string or URI.
        schema: idempotent DDL statements run on connect.
        what: the store's name for error messages.
        connect_timeout: seconds to wait for the server.
    """

    def __init__(self, dsn: str, *, schema: Iterable[str], what: str,
                 connect_timeout: float = 10.0) -> None:
        try:
            import psycopg  # noqa: F401  - only checks the extra is installed
        except ImportError as exc:
            raise ConfigError("the PostgreSQL backend needs psycopg: install "
                              "mailroute[postgres]") from exc
        self._dsn = dsn
        self._schema = tuple(schema)
        self._what = what
        self._timeout = connect_timeout
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._pid = 0
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"SharedConnection({self._what!r})"  # never the DSN: it may hold a password

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[Execute]:
        """One transaction; ``lock`` takes an advisory transaction lock on that text.

        Raises:
            TemporaryError: the server is unreachable or a statement failed.
        """
        import psycopg
        with self._lock:
            try:
                connection = self._connect()
                with connection.transaction():
                    execute = Execute(connection)
                    if lock is not None:
                        execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
                                (f"{self._what}:{lock}",))
                    yield execute
            except psycopg.Error as exc:
                self._drop_broken()
                raise TemporaryError(f"{self._what} unavailable "
                                     f"({type(exc).__name__})") from exc

    def close(self) -> None:
        """Close the connection (reopened on the next use)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        import psycopg
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        connection = psycopg.connect(self._dsn, autocommit=True,
                                     connect_timeout=max(1, int(self._timeout)))
        with connection.transaction():
            # two nodes starting at once must not both create the tables
            connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                               ("mailroute-schema",))
            for statement in self._schema:
                connection.execute(statement)
        self._connection, self._pid = connection, os.getpid()
        return connection

    def _drop_broken(self) -> None:
        if self._connection is not None and self._connection.broken:
            self._connection = None
