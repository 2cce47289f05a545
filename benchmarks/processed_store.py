"""The shared processed-message store: what one message costs, alone and with concurrent writers.

Per message the gateway does one ``count`` (marker-verify) and one ``record`` (marker-set).
Printed, for :class:`mailroute.gateway.SqliteProcessedStore` in a temporary directory:

- one process: count+record pairs per second on distinct keys (each record is one
  ``BEGIN IMMEDIATE`` transaction with WAL and ``synchronous = NORMAL``);
- N processes at once on the same file (as N concurrent ``pipe(8)`` deliveries): pairs per
  second in total, and that every record was kept;
- for scale, the in-process ``InMemoryProcessedStore``.

Run: ``.venv/bin/python benchmarks/processed_store.py [--pairs N] [--processes N]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.gateway.sqlite_store import SqliteProcessedStore
from mailroute.item import ProcessedStore

TTL = 3600


def _pairs(store: ProcessedStore, prefix: str, count: int) -> None:
    for n in range(count):
        key = f"{prefix}-{n}"
        store.count(key, 1000.0 + n, TTL, other_than="f")
        store.record(key, 1000.0 + n, TTL, fingerprint="f")


def _worker(path: str, prefix: str, count: int) -> None:
    _pairs(SqliteProcessedStore(path), prefix, count)


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="count+record pairs per process")
    parser.add_argument("--processes", type=int, default=4, help="concurrent writers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "processed.sqlite3"
        single = _timed(lambda: _pairs(SqliteProcessedStore(path), "one", args.pairs))
        print(f"sqlite, 1 process:   {args.pairs / single:8.0f} pairs/s "
              f"({single / args.pairs * 1e6:.0f} us per message)")
        context = multiprocessing.get_context("fork")
        workers = [context.Process(target=_worker, args=(str(path), f"w{i}", args.pairs))
                   for i in range(args.processes)]

        def run_all() -> None:
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

        together = _timed(run_all)
        store = SqliteProcessedStore(path)
        kept = sum(store.count(f"w{i}-{n}", 1000.0 + n, TTL)
                   for i in range(args.processes) for n in range(args.pairs))
        failed = [w.exitcode for w in workers if w.exitcode != 0]
        print(f"sqlite, {args.processes} processes: {args.processes * args.pairs / together:8.0f} "
              f"pairs/s in total; failed workers: {len(failed)}; records kept: {kept} of "
              f"{args.processes * args.pairs}")
    memory = _timed(lambda: _pairs(InMemoryProcessedStore(), "m", args.pairs))
    print(f"in-memory (one process only): {args.pairs / memory:8.0f} pairs/s")


if __name__ == "__main__":
    main()
