"""Encryption decisions per second with 10,000 correspondents in the key directory.

For each backend (SQLite in a temporary directory; PostgreSQL on a throwaway server this
script starts with initdb + pg_ctl, as the tests do, or the server ``--postgres-dsn`` names)
the directory is filled with RECIPIENTS correspondents (each an S/MIME certificate record,
every third advertising AES-GCM, every fifth with an OpenPGP key too), then
:func:`mailroute.cryptopolicy.decide_crypto` runs over outbound messages to 1 and to 10
random correspondents (plus one unknown address each, so the no-key path is measured too).
Printed: messages and recipient decisions per second, median of REPEATS runs.

Run: ``.venv/bin/python benchmarks/keys.py [--recipients N] [--messages N] [--no-postgres]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailroute.cryptopolicy import CryptoPolicy, Trigger, decide_crypto
from mailroute.item import Envelope, MailItem
from mailroute.keys.directory import KeyKind, KeyRecord, Trust
from mailroute.keys.directory_sql import SqlKeyDirectory
from mailroute.keys.sqlite_directory import SqliteKeyDirectory
from mailroute.mime import parse

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000.0
REPEATS = 3
POLICY = CryptoPolicy(internal_domains=frozenset({"corp.example"}),
                      trigger=Trigger(authenticated_networks=(
                          ipaddress.ip_network("10.0.0.0/8"),)))


def _address(n: int) -> str:
    return f"user{n}@partner{n % 97}.example"


def _fill(directory: SqlKeyDirectory, count: int) -> None:
    for n in range(count):
        caps = ("aes256_gcm", "aes256_cbc") if n % 3 == 0 else ("aes256_cbc",)
        directory.put(KeyRecord(address=_address(n), kind=KeyKind.SMIME,
                                fingerprint=f"{n:064x}", data=b"\x30" * 900,
                                trust=Trust.HARVESTED, capabilities=caps,
                                not_after=NOW + 86400 * 365), NOW)
        if n % 5 == 0:
            directory.put(KeyRecord(address=_address(n), kind=KeyKind.PGP,
                                    fingerprint=f"{n:040X}", data=b"\x99" * 600,
                                    trust=Trust.MANUAL), NOW)


def _items(count: int, per_message: int, population: int) -> list[MailItem]:
    chooser = random.Random(17)
    items = []
    for m in range(count):
        rcpt = [_address(chooser.randrange(population)) for _ in range(per_message)]
        rcpt.append(f"nobody{m}@unknown.example")
        data = (f"From: alice@corp.example\r\nTo: {', '.join(rcpt)}\r\nSubject: figures\r\n"
                "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nbody\r\n").encode()
        items.append(MailItem(envelope=Envelope(mail_from="alice@corp.example", rcpt_to=rcpt,
                                                client_address="10.0.0.5"),
                              message=parse(data)))
    return items


def _measure(directory: SqlKeyDirectory, items: list[MailItem]) -> float:
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for item in items:
            decide_crypto(item, directory, POLICY, now=NOW)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _report(name: str, directory: SqlKeyDirectory, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    _fill(directory, args.recipients)
    filled = time.perf_counter() - start
    print(f"{name}: filled {args.recipients} correspondents in {filled:.1f} s")
    for per_message in (1, 10):
        items = _items(args.messages, per_message, args.recipients)
        seconds = _measure(directory, items)
        decisions = sum(len(i.envelope.rcpt_to) for i in items)
        print(f"  {per_message + 1:2d} recipients/message: {len(items) / seconds:8.0f} "
              f"messages/s, {decisions / seconds:8.0f} recipient decisions/s")


@contextmanager
def _postgres(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    sys.path.insert(0, str(ROOT))
    from tests import pgserver
    if pgserver.binaries() is None:
        raise SystemExit("no PostgreSQL binaries: install postgresql or pass --postgres-dsn")
    with pgserver.running_server() as server:
        yield pgserver.fresh_database(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--postgres-dsn", help="use this server instead of starting one")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        directory = SqliteKeyDirectory(Path(folder) / "keys.sqlite3")
        _report("sqlite", directory, args)
        directory.close()
    if args.no_postgres:
        return
    from mailroute.keys.postgres_directory import PostgresKeyDirectory
    with _postgres(args.postgres_dsn) as dsn:
        shared = PostgresKeyDirectory(dsn)
        _report("postgres", shared, args)
        shared.close()


if __name__ == "__main__":
    main()
