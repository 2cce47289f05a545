"""The key directory: correspondents' certificates and PGP keys by address, with trust.

One interface, :class:`KeyDirectory`, with two backends: SQLite in a data directory
(:mod:`mailroute.keys.sqlite_directory`, the default) and PostgreSQL for several gateway
nodes (:mod:`mailroute.keys.postgres_directory`). Both run the same rules, written once in
:mod:`mailroute.keys.directory_sql`.

A key is a :class:`KeyRecord`: the address it is for, its kind (S/MIME certificate or
OpenPGP key), its fingerprint (SHA-256 of the DER certificate, or the OpenPGP fingerprint),
its trust level, whether it is pinned, its state, its validity window, whether it is revoked,
and the capabilities learnt from the correspondent's signatures (``SMIMECapabilities``
algorithm names, preferred first, and the encryption key preference).

The rules (Stalwart's design, see docs/encryption-policy.md):

- a key offered automatically (:meth:`KeyDirectory.offer`, by harvesting) for an address
  that has no active key of its kind becomes ``active``; the same key again refreshes its
  capabilities and last-seen time and never lowers its trust; a *different* key while one is
  active is stored ``held``, pending review, and is never used until released;
- a key imported by an administrator (:meth:`KeyDirectory.put`) is active, unless the address
  has a pinned key of that kind, then it is held too;
- :meth:`KeyDirectory.release` makes a held key active and retires the key it replaces
  (refused while that key is pinned).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from mailroute.records import record, replace

__all__ = [
    "KeyDirectory",
    "KeyKind",
    "KeyRecord",
    "KeyState",
    "OfferResult",
    "Trust",
    "address_key",
    "fingerprint_of",
]


class KeyKind(enum.StrEnum):
    """What a key is for."""

    SMIME = "smime"
    PGP = "pgp"


class Trust(enum.StrEnum):
    """How a key came to be trusted, best first."""

    MANUAL = "manual"        # an administrator imported or confirmed it
    VERIFIED = "verified"    # chains to a configured CA, checked on import
    HARVESTED = "harvested"  # learnt from a verified signature or DMARC-aligned Autocrypt

    @property
    def rank(self) -> int:
        """Higher is better: manual 3, verified 2, harvested 1."""
        return {"manual": 3, "verified": 2, "harvested": 1}[self.value]


class KeyState(enum.StrEnum):
    """Whether a key may be used."""

    ACTIVE = "active"
    HELD = "held"        # a changed key waiting for review; never used
    RETIRED = "retired"  # replaced by a released key; kept for the record


class OfferResult(enum.StrEnum):
    """What :meth:`KeyDirectory.offer` did."""

    ADDED = "added"
    REFRESHED = "refreshed"
    HELD = "held"
    IGNORED = "ignored"  # a key the directory already holds as held or retired


def address_key(address: str) -> str:
    """The lookup form of an address: stripped and lower-cased (mail clients compare
    mailboxes case-insensitively, as the S/MIME verifier does)."""
    return address.strip().lower()


def fingerprint_of(kind: KeyKind, data: bytes) -> str:
    """The fingerprint of an S/MIME certificate (SHA-256 of its DER, lower-case hex).

    OpenPGP fingerprints come from gpg and are passed in as they are.
    """
    if kind is not KeyKind.SMIME:
        raise ValueError("only S/MIME fingerprints are computed here")
    return hashlib.sha256(data).hexdigest()


@record(frozen=True, kw_only=True)
class KeyRecord:
    """One key in the directory.

    Attributes:
        address: the address it is for (lookup form, see :func:`address_key`).
        kind: S/MIME certificate or OpenPGP key.
        fingerprint: SHA-256 of the DER certificate, or the OpenPGP fingerprint.
        data: the DER certificate, or the binary OpenPGP key.
        trust: manual, verified or harvested.
        pinned: never replaced automatically, and an import for its address is held.
        state: active, held or retired.
        not_before, not_after: the validity window (UNIX seconds; 0 = unknown).
        revoked: the key is known to be revoked.
        capabilities: SMIMECapabilities algorithm names, preferred first
            (``aes256_gcm`` ...), or OpenPGP feature names.
        preferred: the signer named this certificate in its encryption key preference.
        source: where it came from (``import``, ``smime-signature``, ``autocrypt``).
        first_seen, last_seen: UNIX seconds.
    """

    address: str
    kind: KeyKind
    fingerprint: str
    data: bytes
    trust: Trust
    pinned: bool = False
    state: KeyState = KeyState.ACTIVE
    not_before: float = 0.0
    not_after: float = 0.0
    revoked: bool = False
    capabilities: tuple[str, ...] = ()
    preferred: bool = False
    source: str = ""
    first_seen: float = 0.0
    last_seen: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", address_key(self.address))

    def usable_at(self, now: float) -> bool:
        """Active, not revoked, and within its validity window at ``now``."""
        return (self.state is KeyState.ACTIVE and not self.revoked
                and (not self.not_before or self.not_before <= now)
                and (not self.not_after or now <= self.not_after))

    def evolve(self, **changes: object) -> KeyRecord:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


@runtime_checkable
class KeyDirectory(Protocol):
    """Where the gateway keeps correspondents' keys (both backends implement it).

    Every method may raise :class:`~mailroute.errors.TemporaryError` when the database is
    unavailable: the message is retried, never sent without the encryption it needs.
    """

    def keys_for(self, address: str, *, include_inactive: bool = False
                 ) -> tuple[KeyRecord, ...]:
        """The keys for ``address`` (active only unless ``include_inactive``), newest first."""
        ...

    def keys_for_all(self, addresses: Iterable[str]) -> Mapping[str, tuple[KeyRecord, ...]]:
        """Every key (any state) of each of ``addresses``, in one lookup: lookup form of the
        address -> its keys, newest first (absent when it has none)."""
        ...

    def get(self, fingerprint: str) -> KeyRecord | None:
        """The key with ``fingerprint`` (any state), or ``None``."""
        ...

    def all_keys(self, *, address: str | None = None) -> tuple[KeyRecord, ...]:
        """Every key (optionally of one address), ordered by address and first seen."""
        ...

    def offer(self, record: KeyRecord, now: float) -> OfferResult:
        """Store an automatically found key by the rules in the module text."""
        ...

    def put(self, record: KeyRecord, now: float) -> KeyState:
        """Store an administrator's key: active, or held when the address is pinned."""
        ...

    def set_trust(self, fingerprint: str, trust: Trust) -> bool:
        """Change a key's trust level; False when there is no such key."""
        ...

    def set_pinned(self, fingerprint: str, pinned: bool) -> bool:
        """Pin or unpin a key; False when there is no such key."""
        ...

    def hold(self, fingerprint: str) -> bool:
        """Make an active key held; False when there is no such key."""
        ...

    def release(self, fingerprint: str, now: float) -> bool:
        """Make a held key active, retiring the active key of its address and kind.

        Raises:
            PolicyError: the key it would replace is pinned.
        """
        ...

    def remove(self, fingerprint: str) -> bool:
        """Delete a key; False when there is no such key."""
        ...

    def close(self) -> None:
        """Release the connection (reopened on the next use)."""
        ...
