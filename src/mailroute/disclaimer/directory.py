"""The sender directory: per-sender template values from a CSV or TOML file.

CSV: a header row; one column holds the address (``email``, ``mail``, ``address`` or
``PrimarySmtpAddress``), every other column is a variable (``Display Name`` -> ``displayname``,
see :func:`~mailroute.disclaimer.template.canonical_name`). TOML: one table per address::

    ["anna.schmidt@corp.example"]
    display_name = "Anna Schmidt"
    title = "Head of Sales"

Addresses are compared in lower case. The file is read once, when the policy is loaded.
"""

from __future__ import annotations

import io
import os
import tomllib
from collections.abc import Mapping
from types import MappingProxyType

from mailroute.disclaimer.template import canonical_name
from mailroute.records import field, record

__all__ = ["SenderDirectory", "load_directory"]

_MAX_FILE = 16 * 1024 * 1024
_EMPTY: Mapping[str, str] = MappingProxyType({})
_NO_ENTRIES: Mapping[str, Mapping[str, str]] = MappingProxyType({})


@record(frozen=True)
class SenderDirectory:
    """Address (lower case) -> canonical variable name -> value."""

    entries: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: _NO_ENTRIES)

    def lookup(self, address: str) -> Mapping[str, str]:
        """The values for ``address`` (empty when the sender is not listed)."""
        return self.entries.get(address.strip().lower(), _EMPTY)

    def __len__(self) -> int:
        return len(self.entries)


def load_directory(path: str | os.PathLike[str]) -> SenderDirectory:
    """Read a ``.csv`` or ``.toml`` sender directory.

    Raises:
        ValueError: unreadable, too large, unknown suffix or without an address column
            (the message names the problem, never a value from the file).
    """
    try:
        with open(path, encoding="utf-8-sig") as handle:
            if os.fstat(handle.fileno()).st_size > _MAX_FILE:
                raise ValueError(f"sender directory {path} is larger than {_MAX_FILE} bytes")
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read sender directory {path}: {exc.__class__.__name__}"
                         ) from exc
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".csv":
        return _from_csv(text, path)
    if suffix == ".toml":
        return _from_toml(text, path)
    raise ValueError(f"sender directory {path} must be a .csv or .toml file")


def _freeze(entries: dict[str, dict[str, str]]) -> SenderDirectory:
    return SenderDirectory(MappingProxyType(
        {address: MappingProxyType(values) for address, values in entries.items()}))


def _from_csv(text: str, path: str | os.PathLike[str]) -> SenderDirectory:
    import csv  # only a CSV directory needs it

    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise ValueError(f"sender directory {path} has no header row")
    names = [canonical_name(column) for column in header]
    if "email" not in names:
        raise ValueError(f"sender directory {path} has no email/address column")
    key = names.index("email")
    entries: dict[str, dict[str, str]] = {}
    for number, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            raise ValueError(f"sender directory {path}: line {number} has {len(row)} "
                             f"columns, the header {len(names)}")
        address = row[key].strip().lower()
        if address:
            entries[address] = {n: v for n, v in zip(names, row, strict=True)}
    return _freeze(entries)


def _from_toml(text: str, path: str | os.PathLike[str]) -> SenderDirectory:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"sender directory {path} is not valid TOML: {exc}") from exc
    entries: dict[str, dict[str, str]] = {}
    for address, table in data.items():
        if not isinstance(table, dict) or "@" not in address:
            raise ValueError(f"sender directory {path}: each top-level entry must be a "
                             "table named by an e-mail address")
        values: dict[str, str] = {}
        for name, value in table.items():
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError(f"sender directory {path}: [{address}].{name} must be a "
                                 "string or number")
            values[canonical_name(name)] = str(value)
        values.setdefault("email", address)
        entries[address.strip().lower()] = values
    return _freeze(entries)
