"""Topology TOML -> :class:`~mailroute.routing.topology.Topology`.

The file's tables mirror the dataclasses of :mod:`.model` and :mod:`.topology` one to one
(``[tenant]``, ``[[tenant.accepted_domains]]``, ``[[tenant.transport_rules]]`` with
``conditions``/``exceptions``/``actions`` sub-tables, ``[gateway]``, ``[gateway.marker]``,
``[exo_config]``); docs/routing/topology-reference.md lists every key. Unknown keys, wrong
types, unknown enum values, invalid regexes and invalid marker tags raise
:class:`~mailroute.errors.ConfigError` naming the file and the dotted key path.
:func:`load_topology` is the only function in :mod:`mailroute.routing` that reads a file.
"""

from __future__ import annotations

import enum
import re
import tomllib
import types
import typing
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from mailroute.errors import ConfigError
from mailroute.records import MISSING, fields, is_record
from mailroute.routing.markers import marker_exception_pattern
from mailroute.routing.model import HeaderPatterns, Predicates
from mailroute.routing.topology import Topology

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["convert_value", "load_topology", "parse_topology"]

T = TypeVar("T")
_PATTERN_FIELDS = ("from_address_matches_patterns", "recipient_address_matches_patterns",
                   "any_of_recipient_address_matches_patterns")


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file.

    Raises:
        ConfigError: unreadable file, TOML syntax error, or an invalid key (with its path).
    """
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read topology file ({exc.strerror})", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    return parse_topology(data, source=source)


def parse_topology(data: Mapping[str, object], *, source: str = "<topology>") -> Topology:
    """Validate already-parsed TOML data (pure; ``source`` names it in errors)."""
    topology: Topology = convert_value(data, Topology, "", source)
    _check_patterns(topology, source)
    return topology


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def convert_value(value: object, tp: object, path: str, source: str) -> typing.Any:
    """``value`` (parsed TOML) as type ``tp``: records, tuples, enums, scalars.

    Raises:
        ConfigError: naming ``source`` and the dotted key ``path``.
    """
    def fail(message: str) -> ConfigError:
        return ConfigError(message, source=source, key=path or None)

    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return convert_value(value, inner[0], path, source)
    if isinstance(tp, type) and is_record(tp):
        return _record(value, tp, path, source)
    if origin is tuple:
        args = typing.get_args(tp)
        if args == (tuple[str, str], Ellipsis):
            if not isinstance(value, dict):
                raise fail("expected a table of names to strings")
            return tuple((str(k), convert_value(v, str, _join(path, str(k)), source))
                         for k, v in value.items())
        if not isinstance(value, list):
            raise fail("expected an array")
        return tuple(convert_value(v, args[0], f"{path}[{i}]", source) for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [str(m.value) for m in tp]
        if value not in allowed:
            raise fail(f"expected one of {', '.join(allowed)}")
        return tp(value)
    if tp is bool or tp is str or tp is datetime:
        if not isinstance(value, tp):
            raise fail(f"expected a {tp.__name__}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("expected an integer")
        return value
    raise fail(f"unsupported type {tp!r}")  # a bug in the model, not in the file


def _record(value: object, cls: type[T], path: str, source: str) -> T:
    if not isinstance(value, dict):
        raise ConfigError("expected a table", source=source, key=path or None)
    table = {f.name: f for f in fields(cls) if f.init and not f.name.startswith("_")}
    for key in value:
        if key not in table:
            raise ConfigError("unknown key", source=source, key=_join(path, str(key)))
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, object] = {}
    for name, spec in table.items():
        if name in value:
            kwargs[name] = convert_value(value[name], hints[name], _join(path, name), source)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError("missing required key", source=source, key=_join(path, name))
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc), source=source, key=path or None) from None


#: RFC 5322 section 3.6.8: a field name is printable ASCII but the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")


def _check_patterns(topology: Topology, source: str) -> None:
    try:
        marker_exception_pattern(topology.gateway.marker.tag)
    except ValueError as exc:
        raise ConfigError(str(exc), source=source, key="gateway.marker.tag") from None
    for key, name in (("gateway.marker.header", topology.gateway.marker.header),
                      ("gateway.bypass_header", topology.gateway.bypass_header)):
        if not _FIELD_NAME.fullmatch(name):
            raise ConfigError(f"{name!r} is no header field name (RFC 5322: printable "
                              "ASCII without spaces or colon)", source=source, key=key)
    for i, rule in enumerate(topology.tenant.transport_rules):
        for part in ("conditions", "exceptions"):
            predicates: Predicates = getattr(rule, part)
            base = f"tenant.transport_rules[{i}].{part}"
            checks: list[tuple[str, tuple[str, ...]]] = [
                (f"{base}.{name}", getattr(predicates, name)) for name in _PATTERN_FIELDS]
            header: HeaderPatterns | None = predicates.header_matches
            if header is not None:
                checks.append((f"{base}.header_matches.patterns", header.patterns))
            for key, patterns in checks:
                for pattern in patterns:
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        raise ConfigError(f"invalid regular expression: {exc}", source=source,
                                          key=key) from None
