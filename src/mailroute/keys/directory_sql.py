"""The key directory's rules in SQL, once for both backends.

A backend supplies a transaction (:meth:`SqlKeyDirectory._transaction`) that yields an
``execute(sql, parameters) -> rows`` function; SQL is written with ``?`` placeholders and the
PostgreSQL backend translates them. Every change runs in one transaction that first takes the
backend's lock for the address (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory
transaction lock on the address), so two processes offering keys for one correspondent at
once cannot both make theirs active.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager

from mailroute.errors import PolicyError
from mailroute.keys.directory import (
    KeyKind,
    KeyRecord,
    KeyState,
    OfferResult,
    Trust,
    address_key,
)

__all__ = ["COLUMNS", "Execute", "SqlKeyDirectory", "schema"]

Row = Sequence[object]
Execute = Callable[[str, Sequence[object]], list[Row]]

COLUMNS = ("address", "kind", "fingerprint", "data", "trust", "pinned", "state", "not_before",
           "not_after", "revoked", "capabilities", "preferred", "source", "first_seen",
           "last_seen")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM mailroute_keys"  # noqa: S608 - fixed names
_INSERT = (f"INSERT INTO mailroute_keys ({', '.join(COLUMNS)}) "  # noqa: S608 - fixed names
           f"VALUES ({', '.join('?' for _ in COLUMNS)})")


def schema(blob: str, real: str) -> tuple[str, ...]:
    """The DDL statements, with the backend's names for binary and floating-point columns."""
    return (
        f"""CREATE TABLE IF NOT EXISTS mailroute_keys (
            address TEXT NOT NULL, kind TEXT NOT NULL, fingerprint TEXT NOT NULL,
            data {blob} NOT NULL, trust TEXT NOT NULL, pinned INTEGER NOT NULL,
            state TEXT NOT NULL, not_before {real} NOT NULL, not_after {real} NOT NULL,
            revoked INTEGER NOT NULL, capabilities TEXT NOT NULL, preferred INTEGER NOT NULL,
            source TEXT NOT NULL, first_seen {real} NOT NULL, last_seen {real} NOT NULL,
            PRIMARY KEY (address, fingerprint))""",
        "CREATE INDEX IF NOT EXISTS mailroute_keys_fpr ON mailroute_keys (fingerprint)",
    )


def _record(row: Row) -> KeyRecord:
    (address, kind, fingerprint, data, trust, pinned, state, not_before, not_after, revoked,
     capabilities, preferred, source, first_seen, last_seen) = row
    return KeyRecord(
        address=str(address), kind=KeyKind(str(kind)), fingerprint=str(fingerprint),
        data=bytes(data),  # type: ignore[call-overload]  # bytes, memoryview: both backends
        trust=Trust(str(trust)), pinned=bool(pinned), state=KeyState(str(state)),
        not_before=float(not_before), not_after=float(not_after),  # type: ignore[arg-type]
        revoked=bool(revoked),
        capabilities=tuple(c for c in str(capabilities).split(",") if c),
        preferred=bool(preferred), source=str(source),
        first_seen=float(first_seen), last_seen=float(last_seen))  # type: ignore[arg-type]


def _values(record: KeyRecord) -> tuple[object, ...]:
    return (record.address, record.kind.value, record.fingerprint, record.data,
            record.trust.value, int(record.pinned), record.state.value, record.not_before,
            record.not_after, int(record.revoked), ",".join(record.capabilities),
            int(record.preferred), record.source, record.first_seen, record.last_seen)


class SqlKeyDirectory:
    """:class:`~mailroute.keys.directory.KeyDirectory` over a SQL database (abstract)."""

    def _transaction(self, lock: str | None = None) -> AbstractContextManager[Execute]:
        """One transaction; ``lock`` names an address to serialise changes on."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection (reopened on the next use)."""
        raise NotImplementedError

    def keys_for(self, address: str, *, include_inactive: bool = False
                 ) -> tuple[KeyRecord, ...]:
        """The keys for ``address``, newest first (active only unless ``include_inactive``)."""
        sql = f"{_SELECT} WHERE address = ?"
        parameters: list[object] = [address_key(address)]
        if not include_inactive:
            sql += " AND state = ?"
            parameters.append(KeyState.ACTIVE.value)
        with self._transaction() as execute:
            rows = execute(sql + " ORDER BY last_seen DESC, fingerprint", parameters)
        return tuple(_record(r) for r in rows)

    def keys_for_all(self, addresses: Iterable[str]) -> dict[str, tuple[KeyRecord, ...]]:
        """Every key of each address (any state), in one query per 500 addresses."""
        wanted = sorted({address_key(a) for a in addresses})
        found: dict[str, list[KeyRecord]] = {}
        with self._transaction() as execute:
            for start in range(0, len(wanted), 500):
                batch = wanted[start:start + 500]
                marks = ", ".join("?" for _ in batch)
                rows = execute(f"{_SELECT} WHERE address IN ({marks}) "
                               "ORDER BY last_seen DESC, fingerprint", batch)
                for row in rows:
                    record = _record(row)
                    found.setdefault(record.address, []).append(record)
        return {address: tuple(records) for address, records in found.items()}

    def get(self, fingerprint: str) -> KeyRecord | None:
        """The first key with ``fingerprint`` (any state), or ``None``."""
        with self._transaction() as execute:
            rows = execute(f"{_SELECT} WHERE fingerprint = ? ORDER BY address", (fingerprint,))
        return _record(rows[0]) if rows else None

    def all_keys(self, *, address: str | None = None) -> tuple[KeyRecord, ...]:
        """Every key, or every key of ``address``, by address and first seen."""
        where, parameters = ("WHERE address = ?", (address_key(address),)) if address else ("", ())
        with self._transaction() as execute:
            rows = execute(f"{_SELECT} {where} ORDER BY address, first_seen, fingerprint",
                           parameters)
        return tuple(_record(r) for r in rows)

    def offer(self, record: KeyRecord, now: float) -> OfferResult:
        """Store a harvested key: added, refreshed, held (a change) or ignored."""
        with self._transaction(record.address) as execute:
            mine = _existing(execute, record)
            if mine is not None:
                if mine.state is not KeyState.ACTIVE:
                    return OfferResult.IGNORED
                trust = mine.trust if mine.trust.rank >= record.trust.rank else record.trust
                execute("UPDATE mailroute_keys SET last_seen = ?, capabilities = ?, "
                        "preferred = ?, trust = ? WHERE address = ? AND fingerprint = ?",
                        (now, ",".join(record.capabilities or mine.capabilities),
                         int(record.preferred or mine.preferred), trust.value,
                         mine.address, mine.fingerprint))
                return OfferResult.REFRESHED
            state = KeyState.HELD if _active(execute, record) else KeyState.ACTIVE
            execute(_INSERT, _values(record.evolve(state=state, first_seen=now,
                                                   last_seen=now)))
        return OfferResult.ADDED if state is KeyState.ACTIVE else OfferResult.HELD

    def put(self, record: KeyRecord, now: float) -> KeyState:
        """Store an administrator's key (replacing a stored copy of the same key)."""
        with self._transaction(record.address) as execute:
            pinned = any(r.pinned for r in _active(execute, record)
                         if r.fingerprint != record.fingerprint)
            state = KeyState.HELD if pinned else KeyState.ACTIVE
            execute("DELETE FROM mailroute_keys WHERE address = ? AND fingerprint = ?",
                    (record.address, record.fingerprint))
            execute(_INSERT, _values(record.evolve(state=state, first_seen=now,
                                                   last_seen=now)))
        return state

    def set_trust(self, fingerprint: str, trust: Trust) -> bool:
        """Change the trust level of every entry of ``fingerprint``."""
        return self._update(fingerprint, "trust = ?", (trust.value,))

    def set_pinned(self, fingerprint: str, pinned: bool) -> bool:
        """Pin or unpin every entry of ``fingerprint``."""
        return self._update(fingerprint, "pinned = ?", (int(pinned),))

    def hold(self, fingerprint: str) -> bool:
        """Make ``fingerprint`` held."""
        return self._update(fingerprint, "state = ?", (KeyState.HELD.value,))

    def release(self, fingerprint: str, now: float) -> bool:
        """Make a held key active and retire the active key of its address and kind."""
        found = self.get(fingerprint)
        if found is None:
            return False
        with self._transaction(found.address) as execute:
            for entry in [_record(r) for r in execute(f"{_SELECT} WHERE fingerprint = ?",
                                                      (fingerprint,))]:
                others = [r for r in _active(execute, entry) if r.fingerprint != fingerprint]
                pinned = [r.fingerprint for r in others if r.pinned]
                if pinned:
                    raise PolicyError(f"the key for {entry.address} is pinned "
                                      f"({pinned[0][:16]}...); unpin it first")
                for old in others:
                    execute("UPDATE mailroute_keys SET state = ? WHERE address = ? AND "
                            "fingerprint = ?",
                            (KeyState.RETIRED.value, old.address, old.fingerprint))
                execute("UPDATE mailroute_keys SET state = ?, last_seen = ? WHERE "
                        "address = ? AND fingerprint = ?",
                        (KeyState.ACTIVE.value, now, entry.address, fingerprint))
        return True

    def remove(self, fingerprint: str) -> bool:
        """Delete every entry of ``fingerprint``."""
        with self._transaction() as execute:
            found = execute("SELECT count(*) FROM mailroute_keys WHERE fingerprint = ?",
                            (fingerprint,))
            execute("DELETE FROM mailroute_keys WHERE fingerprint = ?", (fingerprint,))
        return bool(found and int(str(found[0][0])))

    def _update(self, fingerprint: str, assignment: str, values: tuple[object, ...]) -> bool:
        with self._transaction() as execute:
            found = execute("SELECT count(*) FROM mailroute_keys WHERE fingerprint = ?",
                            (fingerprint,))
            execute(f"UPDATE mailroute_keys SET {assignment} WHERE fingerprint = ?",  # noqa: S608
                    (*values, fingerprint))
        return bool(found and int(str(found[0][0])))


def _existing(execute: Execute, record: KeyRecord) -> KeyRecord | None:
    rows = execute(f"{_SELECT} WHERE address = ? AND fingerprint = ?",
                   (record.address, record.fingerprint))
    return _record(rows[0]) if rows else None


def _active(execute: Execute, record: KeyRecord) -> list[KeyRecord]:
    rows = execute(f"{_SELECT} WHERE address = ? AND kind = ? AND state = ?",
                   (record.address, record.kind.value, KeyState.ACTIVE.value))
    return [_record(r) for r in rows]
