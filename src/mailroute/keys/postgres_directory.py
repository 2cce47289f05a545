"""The key directory in PostgreSQL, shared by several gateway nodes: see :mod:`.directory`.

Needs psycopg 3 (``mailroute[postgres]``). Changes for one address are serialised with an
advisory transaction lock, so the rules of :mod:`.directory_sql` hold across nodes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from mailroute.db.postgres import SharedConnection
from mailroute.keys.directory_sql import Execute, SqlKeyDirectory, schema

__all__ = ["PostgresKeyDirectory"]


class PostgresKeyDirectory(SqlKeyDirectory):
    """A :class:`~mailroute.keys.directory.KeyDirectory` in a PostgreSQL database.

    Args:
        dsn: a libpq connection string or URI (keep passwords in a 0600 file the policy
            names, or in ``~/.pgpass``).

    Raises:
        ConfigError: psycopg is not installed.
    """

    def __init__(self, dsn: str) -> None:
        self._shared = SharedConnection(dsn, schema=schema("BYTEA", "DOUBLE PRECISION"),
                                        what="key directory")

    def __repr__(self) -> str:
        return "PostgresKeyDirectory()"

    def _transaction(self, lock: str | None = None) -> AbstractContextManager[Execute]:
        return self._shared.transaction(lock)

    def close(self) -> None:
        """Close the connection (reopened on the next use)."""
        self._shared.close()
