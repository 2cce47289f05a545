"""The quarantine store: held messages as files in a directory, with their envelope.

Each message is two files named by a random id: ``ID.eml`` (the message as it arrived at the
filters) and ``ID.json`` (the envelope, the reply and the time). Both are created with mode
0600 in a directory of mode 0700, written to a temporary name, synced and renamed, so a
listed entry is always complete. Ids are 32 lower-case hex digits and every id from outside
is checked against that form before it touches a path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mailroute.errors import MailrouteError, TemporaryError
from mailroute.paths import private_directory
from mailroute.records import record

__all__ = ["DamagedEntryError", "QuarantineEntry", "QuarantineStore"]

_ID = re.compile(r"[0-9a-f]{32}")


class DamagedEntryError(MailrouteError):
    """A quarantine entry whose envelope file cannot be read (edited or cut short): its
    message is still there, as ``ID.eml``."""


@record(frozen=True)
class QuarantineEntry:
    """One held message's envelope and facts (the bytes: :meth:`QuarantineStore.message`)."""

    id: str
    sender: str
    recipients: tuple[str, ...]
    reply: str
    queue_id: str | None
    stored_at: float
    size: int


class QuarantineStore:
    """A directory of held messages.

    Raises on use:
        TemporaryError: the directory or a file cannot be written (the caller tempfails,
            so the MTA keeps the message).
        KeyError: :meth:`entry`, :meth:`message` or :meth:`delete` of an unknown or
            malformed id.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def store(self, data: bytes, *, sender: str, recipients: tuple[str, ...], reply: str,
              queue_id: str | None, now: float) -> str:
        """Hold ``data``; return its new id."""
        entry_id = os.urandom(16).hex()  # what secrets.token_hex does
        meta = {"sender": sender, "recipients": list(recipients), "reply": reply,
                "queue_id": queue_id, "stored_at": now, "size": len(data)}
        try:
            private_directory(self.directory)
            self._write(f"{entry_id}.eml", data)
            self._write(f"{entry_id}.json", _json().dumps(meta).encode("utf-8"))
        except OSError as exc:
            (self.directory / f"{entry_id}.eml").unlink(missing_ok=True)
            raise TemporaryError(f"cannot write the quarantine "
                                 f"({exc.strerror or type(exc).__name__})") from exc
        return entry_id

    def entries(self) -> Iterator[QuarantineEntry]:
        """Every complete entry, oldest first (damaged ones left out: :meth:`damaged`)."""
        return iter(self._scan()[0])

    def damaged(self) -> list[str]:
        """The ids of entries whose envelope file cannot be read."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[QuarantineEntry], list[str]]:
        if not self.directory.is_dir():
            return [], []
        ids = sorted(p.stem for p in self.directory.glob("*.json") if _ID.fullmatch(p.stem))
        found, damaged = [], []
        for entry_id in ids:
            if not (self.directory / f"{entry_id}.eml").is_file():
                continue
            try:
                found.append(self.entry(entry_id))
            except DamagedEntryError:
                damaged.append(entry_id)
        return sorted(found, key=lambda e: e.stored_at), damaged

    def entry(self, entry_id: str) -> QuarantineEntry:
        """The envelope and facts of ``entry_id``.

        Raises:
            KeyError: no such entry.
            DamagedEntryError: its envelope file cannot be read.
        """
        data = self._path(entry_id, ".json").read_bytes()
        try:
            meta = _json().loads(data)
            return QuarantineEntry(
                id=entry_id, sender=str(meta["sender"]),
                recipients=tuple(str(r) for r in meta["recipients"]), reply=str(meta["reply"]),
                queue_id=meta.get("queue_id"), stored_at=float(meta["stored_at"]),
                size=int(meta["size"]))
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise DamagedEntryError(f"quarantine entry {entry_id} is damaged: its envelope "
                                    f"file {entry_id}.json cannot be read") from exc

    def message(self, entry_id: str) -> bytes:
        """The held message."""
        return self._path(entry_id, ".eml").read_bytes()

    def delete(self, entry_id: str) -> None:
        """Remove ``entry_id`` (the envelope last, so a half-deleted entry is not listed)."""
        self._path(entry_id, ".eml").unlink()
        self._path(entry_id, ".json").unlink(missing_ok=True)

    def _path(self, entry_id: str, suffix: str) -> Path:
        if not _ID.fullmatch(entry_id):
            raise KeyError(entry_id)
        path = self.directory / f"{entry_id}{suffix}"
        if not path.is_file():
            raise KeyError(entry_id)
        return path

    def _write(self, name: str, data: bytes) -> None:
        temp = self.directory / f".{name}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.directory / name)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


def _json() -> Any:
    """The json module, loaded when a message is held or listed, not by every pipe run that
    merely has a quarantine configured."""
    import json

    return json
