"""The key directory's rules, run against SQLite and a real PostgreSQL server alike."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroute.errors import PolicyError, TemporaryError
from mailroute.keys.directory import (
    KeyDirectory,
    KeyKind,
    KeyRecord,
    KeyState,
    OfferResult,
    Trust,
)
from mailroute.keys.directory_sql import SqlKeyDirectory
from mailroute.keys.sqlite_directory import SqliteKeyDirectory

NOW = 1_800_000_000.0




@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend name, location): a file path or a DSN."""
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path / "state" / "keys.sqlite3")
    else:
        yield "postgres", request.getfixturevalue("postgres_dsn")


def open_directory(name: str, location: str) -> SqlKeyDirectory:
    if name == "sqlite":
        return SqliteKeyDirectory(location)
    from mailroute.keys.postgres_directory import PostgresKeyDirectory
    return PostgresKeyDirectory(location)


@pytest.fixture
def directory(backend: tuple[str, str]) -> Iterator[SqlKeyDirectory]:
    opened = open_directory(*backend)
    yield opened
    opened.close()


def key(address: str = "Bob@Partner.example", fpr: str = "aa" * 32, *,
        trust: Trust = Trust.HARVESTED, kind: KeyKind = KeyKind.SMIME,
        capabilities: tuple[str, ...] = ()) -> KeyRecord:
    return KeyRecord(address=address, kind=kind, fingerprint=fpr, data=b"\x30\x03\x02\x01\x01",
                     trust=trust, capabilities=capabilities, source="test",
                     not_after=NOW + 86400)


def test_a_first_key_for_an_address_is_active_and_found_case_insensitively(
        directory: KeyDirectory) -> None:
    assert directory.offer(key(capabilities=("aes256_gcm",)), NOW) is OfferResult.ADDED
    found = directory.keys_for("bob@partner.EXAMPLE")
    assert [(k.fingerprint, k.state, k.trust, k.capabilities) for k in found] == [
        ("aa" * 32, KeyState.ACTIVE, Trust.HARVESTED, ("aes256_gcm",))]
    assert found[0].data == b"\x30\x03\x02\x01\x01"
    assert found[0].first_seen == NOW


def test_the_same_key_again_refreshes_capabilities_and_never_lowers_trust(
        directory: KeyDirectory) -> None:
    directory.put(key(trust=Trust.MANUAL), NOW)
    assert directory.offer(key(capabilities=("aes128_gcm", "aes256_cbc")), NOW + 60) \
        is OfferResult.REFRESHED
    (found,) = directory.keys_for("bob@partner.example")
    assert found.trust is Trust.MANUAL
    assert found.capabilities == ("aes128_gcm", "aes256_cbc")
    assert found.last_seen == NOW + 60


def test_a_changed_key_is_held_and_not_used(directory: KeyDirectory) -> None:
    directory.offer(key(fpr="aa" * 32), NOW)
    assert directory.offer(key(fpr="bb" * 32), NOW + 1) is OfferResult.HELD
    assert [k.fingerprint for k in directory.keys_for("bob@partner.example")] == ["aa" * 32]
    held = directory.get("bb" * 32)
    assert held is not None
    assert held.state is KeyState.HELD
    # offering the held key again changes nothing
    assert directory.offer(key(fpr="bb" * 32), NOW + 2) is OfferResult.IGNORED


def test_release_makes_the_held_key_active_and_retires_the_old_one(
        directory: KeyDirectory) -> None:
    directory.offer(key(fpr="aa" * 32), NOW)
    directory.offer(key(fpr="bb" * 32), NOW + 1)
    assert directory.release("bb" * 32, NOW + 2)
    assert [k.fingerprint for k in directory.keys_for("bob@partner.example")] == ["bb" * 32]
    old = directory.get("aa" * 32)
    assert old is not None
    assert old.state is KeyState.RETIRED
    assert not directory.release("cc" * 32, NOW)


def test_a_pinned_key_blocks_release_and_holds_imports(directory: KeyDirectory) -> None:
    directory.put(key(fpr="aa" * 32, trust=Trust.MANUAL), NOW)
    assert directory.set_pinned("aa" * 32, True)
    assert directory.put(key(fpr="bb" * 32, trust=Trust.MANUAL), NOW) is KeyState.HELD
    with pytest.raises(PolicyError, match="pinned"):
        directory.release("bb" * 32, NOW)
    directory.set_pinned("aa" * 32, False)
    assert directory.release("bb" * 32, NOW)


def test_kinds_are_independent(directory: KeyDirectory) -> None:
    directory.offer(key(fpr="aa" * 32), NOW)
    assert directory.offer(key(fpr="C0FFEE" * 6, kind=KeyKind.PGP), NOW) is OfferResult.ADDED
    assert {k.kind for k in directory.keys_for("bob@partner.example")} == {KeyKind.SMIME,
                                                                          KeyKind.PGP}


def test_trust_hold_remove_and_listing(directory: KeyDirectory) -> None:
    directory.offer(key("a@x.example", "aa" * 32), NOW)
    directory.offer(key("b@x.example", "bb" * 32), NOW)
    assert directory.set_trust("aa" * 32, Trust.VERIFIED)
    assert directory.hold("bb" * 32)
    assert directory.keys_for("b@x.example") == ()
    assert len(directory.keys_for("b@x.example", include_inactive=True)) == 1
    assert [(k.address, k.trust) for k in directory.all_keys()] == [
        ("a@x.example", Trust.VERIFIED), ("b@x.example", Trust.HARVESTED)]
    assert directory.remove("aa" * 32)
    assert not directory.remove("aa" * 32)
    assert not directory.set_trust("aa" * 32, Trust.MANUAL)
    assert [k.address for k in directory.all_keys()] == ["b@x.example"]


def _offer_in_child(name: str, location: str, fpr: str, out: multiprocessing.Queue[str]) -> None:
    opened = open_directory(name, location)
    out.put(opened.offer(key(fpr=fpr), NOW).value)
    opened.close()


def test_two_processes_offering_different_keys_at_once_make_only_one_active(
        backend: tuple[str, str]) -> None:
    first = open_directory(*backend)
    first.all_keys()  # schema in place before the race
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[str] = context.Queue()
    children = [context.Process(target=_offer_in_child, args=(*backend, f"{n:02x}" * 32, out))
                for n in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    results = sorted(out.get(timeout=10) for _ in children)
    assert results == ["added", "held", "held", "held"]
    assert len(first.keys_for("bob@partner.example")) == 1
    first.close()


def test_an_unreachable_database_is_a_temporary_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(TemporaryError, match="key directory unavailable"):
        SqliteKeyDirectory(blocked / "keys.sqlite3").keys_for("a@b.example")


def test_an_unreachable_postgres_server_is_a_temporary_error() -> None:
    pytest.importorskip("psycopg")
    from mailroute.keys.postgres_directory import PostgresKeyDirectory
    directory = PostgresKeyDirectory("host=127.0.0.1 port=1 user=x dbname=x connect_timeout=1")
    with pytest.raises(TemporaryError, match="key directory unavailable") as caught:
        directory.keys_for("a@b.example")
    assert "port=1" not in str(caught.value)


def test_keys_for_all_answers_many_addresses_in_one_lookup(directory: KeyDirectory) -> None:
    directory.offer(key("a@x.example", "aa" * 32), NOW)
    directory.offer(key("a@x.example", "ab" * 32), NOW + 1)  # held: a change
    directory.offer(key("B@X.example", "bb" * 32), NOW)
    found = directory.keys_for_all(["A@x.example", "b@x.example", "c@x.example"] * 300)
    assert {a: [(k.fingerprint, k.state) for k in keys] for a, keys in found.items()} == {
        "a@x.example": [("ab" * 32, KeyState.HELD), ("aa" * 32, KeyState.ACTIVE)],
        "b@x.example": [("bb" * 32, KeyState.ACTIVE)]}
