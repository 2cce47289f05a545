"""Keys in a home, read from gpg's colon listing (``--with-colons``), and address lookup.

A lookup never consults the network; a missing or unusable key is a typed result
(:class:`KeyMissing`) that a policy can act on (reject, tempfail, send unencrypted).
"""

from __future__ import annotations

import email.utils
import enum
from collections.abc import Iterable

from mailroute.records import field, record

__all__ = ["KeyFound", "KeyInfo", "KeyLookup", "KeyMissing", "MissingReason",
           "find_by_address", "find_key", "parse_colons", "uid_address"]

_UNUSABLE_VALIDITY = frozenset("reid")  # revoked, expired, invalid, disabled


@record(frozen=True)
class KeyInfo:
    """One primary key with what mailroute needs to choose it.

    Attributes:
        fingerprint: the primary key fingerprint (upper-case hex).
        created: creation time (UNIX seconds).
        validity: gpg's validity letter for the primary key.
        capabilities: the aggregate capability letters of the key (``E`` = can encrypt,
            ``S`` = can sign, upper case meaning "some usable (sub)key can").
        uids: the user IDs that are not revoked or expired.
        fingerprints: the fingerprints of the primary key and every subkey.
    """

    fingerprint: str
    created: int
    validity: str
    capabilities: str
    uids: tuple[str, ...]
    fingerprints: tuple[str, ...]

    @property
    def usable(self) -> bool:
        """Not revoked, expired, invalid or disabled."""
        return self.validity not in _UNUSABLE_VALIDITY and "D" not in self.capabilities

    @property
    def addresses(self) -> tuple[str, ...]:
        """The lower-cased e-mail addresses of the user IDs."""
        return tuple(a for a in (uid_address(u) for u in self.uids) if a)


def uid_address(uid: str) -> str | None:
    """The address in a user ID (``Name <a@b>`` or a bare ``a@b``), lower-cased."""
    _, address = email.utils.parseaddr(uid)
    return address.lower() if "@" in address else None


@record
class _Draft:
    created: int
    validity: str
    capabilities: str
    fingerprint: str = ""
    uids: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)

    def done(self) -> KeyInfo:
        return KeyInfo(self.fingerprint, self.created, self.validity, self.capabilities,
                       tuple(self.uids), tuple(self.fingerprints))


def _field(fields: list[str], index: int) -> str:
    return fields[index] if index < len(fields) else ""


def parse_colons(text: str) -> tuple[KeyInfo, ...]:
    """Parse ``gpg --with-colons --list-keys`` (or ``--list-secret-keys``) output."""
    drafts: list[_Draft] = []
    last_record = ""
    for line in text.splitlines():
        fields = line.split(":")
        record = fields[0]
        if record in ("pub", "sec"):
            created = _field(fields, 5)
            drafts.append(_Draft(int(created) if created.isdigit() else 0, _field(fields, 1),
                                 _field(fields, 11)))
        elif drafts and record == "fpr":
            fpr = _field(fields, 9).upper()
            drafts[-1].fingerprints.append(fpr)
            if last_record in ("pub", "sec"):
                drafts[-1].fingerprint = fpr
        elif drafts and record == "uid" and _field(fields, 1) not in ("r", "e", "i"):
            drafts[-1].uids.append(_field(fields, 9))
        if record != "fpr":
            last_record = record
    return tuple(d.done() for d in drafts if d.fingerprint)


class MissingReason(enum.StrEnum):
    """Why no key could be used for an address."""

    NO_KEY = "no-key"
    UNUSABLE = "unusable"


@record(frozen=True)
class KeyFound:
    """A usable key for ``address``."""

    address: str
    fingerprint: str


@record(frozen=True)
class KeyMissing:
    """No usable key for ``address``; ``reason`` says whether there was one at all."""

    address: str
    reason: MissingReason


KeyLookup = KeyFound | KeyMissing


def find_by_address(keys: Iterable[KeyInfo], address: str, capability: str = "E") -> KeyLookup:
    """The newest usable key with a user ID for ``address`` that can ``capability``."""
    wanted = address.strip().lower()
    matching = [k for k in keys if wanted in k.addresses]
    usable = [k for k in matching if k.usable and capability in k.capabilities]
    if not usable:
        reason = MissingReason.UNUSABLE if matching else MissingReason.NO_KEY
        return KeyMissing(wanted, reason)
    best = max(usable, key=lambda k: (k.created, k.fingerprint))
    return KeyFound(wanted, best.fingerprint)


def find_key(keys: Iterable[KeyInfo], ident: str, capability: str) -> KeyLookup:
    """A key by fingerprint (primary or subkey, at least 16 hex digits) or by address.

    ``capability`` is ``E`` (encrypt) or ``S`` (sign).
    """
    compact = ident.replace(" ", "").upper()
    if len(compact) >= 16 and all(c in "0123456789ABCDEF" for c in compact):
        for key in keys:
            if any(f.endswith(compact) for f in key.fingerprints):
                if key.usable and capability in key.capabilities:
                    return KeyFound(ident, key.fingerprint)
                return KeyMissing(ident, MissingReason.UNUSABLE)
        return KeyMissing(ident, MissingReason.NO_KEY)
    return find_by_address(keys, ident, capability)
