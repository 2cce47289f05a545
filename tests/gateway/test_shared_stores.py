"""The SQLite and PostgreSQL processed-message stores: the same answers as the in-memory one,
shared by processes (PostgreSQL: a real server the suite starts, tests/pgserver.py)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mailroute.errors import TemporaryError
from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.gateway.sqlite_store import SqliteProcessedStore
from mailroute.item import ProcessedStore

if TYPE_CHECKING:
    from mailroute.gateway.postgres_store import PostgresProcessedStore


def _open(backend: str, location: str) -> SqliteProcessedStore | PostgresProcessedStore:
    if backend == "sqlite":
        return SqliteProcessedStore(location)
    from mailroute.gateway.postgres_store import PostgresProcessedStore
    return PostgresProcessedStore(location)


@pytest.fixture(params=["sqlite", "postgres"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(backend, location) of a store several processes can open."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "p.sqlite3")
    return "postgres", request.getfixturevalue("postgres_dsn")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessedStore]:
    if request.param == "memory":
        yield InMemoryProcessedStore()
        return
    location = (str(tmp_path / "state" / "processed.sqlite3") if request.param == "sqlite"
                else request.getfixturevalue("postgres_dsn"))
    opened = _open(request.param, location)
    yield opened
    opened.close()


def test_counts_within_the_ttl_and_excludes_the_current_arrival(store: ProcessedStore) -> None:
    assert store.record("k", 1000.0, 60, fingerprint="f1") == 1
    assert store.record("k", 1010.0, 60, fingerprint="f2") == 2
    assert store.count("k", 1020.0, 60) == 2
    assert store.count("k", 1020.0, 60, other_than="f1") == 1
    assert store.count("k", 1065.0, 60) == 1           # the first record expired
    assert store.count("k", 1075.0, 60) == 0
    assert store.count("other", 1020.0, 60) == 0
    assert store.record("k", 1100.0, 60) == 1


def test_records_survive_the_process_that_wrote_them(tmp_path: Path) -> None:
    path = tmp_path / "var" / "state" / "processed.sqlite3"   # both directories made here
    first = SqliteProcessedStore(path)
    first.record("k", 1000.0, 60, fingerprint="f")
    first.close()
    assert SqliteProcessedStore(path).count("k", 1001.0, 60) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_expired_rows_are_deleted_when_records_are_written(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    store = SqliteProcessedStore(path)
    for n in range(10):
        store.record(f"old{n}", 1000.0, 60)
    store.record("new", 2000.0, 60)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT key FROM processed").fetchall() == [("new",)]


def test_wal_mode_and_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    SqliteProcessedStore(path).record("k", 1.0, 60)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _writer(backend: str, location: str, worker: int, count: int) -> None:
    store = _open(backend, location)
    for n in range(count):
        store.record(f"w{worker}-{n}", 1000.0 + n, 3600, fingerprint=str(worker))
        store.record("shared", 1000.0 + n, 3600, fingerprint=f"{worker}-{n}")


def test_concurrent_writers_in_several_processes_lose_nothing(shared: tuple[str, str]
                                                              ) -> None:
    workers, count = 6, 10
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_writer, args=(*shared, w, count))
                 for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    store = _open(*shared)
    for w in range(workers):
        for n in range(count):
            assert store.count(f"w{w}-{n}", 2000.0, 3600) == 1
    # every record of the shared key arrived (below the per-key cap of 64)
    assert store.count("shared", 2000.0, 3600) == workers * count
    store.close()


def test_per_key_records_are_capped(shared: tuple[str, str]) -> None:
    store = _open(*shared)
    for n in range(SqliteProcessedStore.MAX_PER_KEY + 10):
        store.record("k", 1000.0 + n, 3600)
    assert store.count("k", 2000.0, 3600) == SqliteProcessedStore.MAX_PER_KEY
    store.close()


def test_an_unusable_path_is_a_temporary_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SqliteProcessedStore(blocker / "p.sqlite3")
    with pytest.raises(TemporaryError, match="processed-message store unavailable") as caught:
        store.count("k", 1.0, 60)
    assert caught.value.retryable
    assert str(blocker) not in str(caught.value)
