"""The tenant as it is, from the JSON of ``Get-*`` cmdlets (docs/routing/exo-diff.md).

:func:`load_export` reads either one combined JSON object (keys ``AcceptedDomains``,
``InboundConnectors``, ``OutboundConnectors``, ``TransportRules``, ``OrganizationConfig``)
or a directory with one file per cmdlet (``Get-AcceptedDomain.json`` ...).
:func:`tenant_from_export` builds the tenant: the objects read replace the topology file's
accepted domains, connectors, rules and ``RejectDirectSend``; the directory, the DNS facts
and the tenant id stay those of the topology file (no cmdlet above exports them).

``ConvertTo-Json`` quirks handled: a single object where an array was expected (one
connector, one rule, or a one-element MultiValuedProperty written bare), Windows
PowerShell's ``{"value": [...], "Count": n}`` array wrapper, ``SmtpDomain`` and smart-host
objects instead of strings, the ``smtp:*;1`` address-space form of ``SenderDomains`` and
``RecipientDomains``, ``null`` for unset values, and ``/Date(ms)/`` dates. Enums written as
numbers are refused with a message naming ``-EnumsAsStrings`` (their numeric values are not
documented). Every problem is a :class:`~mailroute.errors.ConfigError` naming the section,
the object and the property.
"""

from __future__ import annotations

import enum
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailroute.errors import ConfigError
from mailroute.records import record, replace
from mailroute.routing.model import (
    AcceptedDomain,
    Actions,
    ExoDisclaimer,
    HeaderPatterns,
    HeaderWords,
    InboundConnector,
    OutboundConnector,
    Predicates,
    RejectAction,
    SetHeader,
    Tenant,
    TransportRule,
)
from mailroute.routing.plan import deployed
from mailroute.routing.psfields import (
    ACCEPTED_DOMAIN,
    ACTIONS,
    DISCLAIMER,
    DISCLAIMER_ENUMS,
    EXCEPT,
    HEADER_PATTERNS,
    HEADER_WORDS,
    INBOUND,
    ORGANIZATION,
    OUTBOUND,
    PREDICATES,
    REJECT,
    RULE,
    SECTIONS,
    SET_HEADER,
    Field,
    Kind,
)

if TYPE_CHECKING:
    from mailroute.routing.topology import Topology

__all__ = ["Export", "load_export", "parse_export", "tenant_from_export"]

_MAX_BYTES = 32 * 1024 * 1024
_DATE_MS = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_TEXT_KEYS = ("Address", "Domain", "SmtpDomain", "HostnameString", "DomainName", "Name",
              "Value")


@record(frozen=True)
class Export:
    """The objects read from an export, in the model's types.

    A part the export does not have is ``None`` (:func:`tenant_from_export` takes it as
    planned).
    """

    accepted_domains: tuple[AcceptedDomain, ...] | None
    inbound_connectors: tuple[InboundConnector, ...] | None
    outbound_connectors: tuple[OutboundConnector, ...] | None
    transport_rules: tuple[TransportRule, ...] | None
    reject_direct_send: bool | None


class _Problem(Exception):
    """A bad value; the caller adds where it was."""


def load_export(path: str | Path) -> Export:
    """Read an export: a combined JSON file or a directory of per-cmdlet files.

    Raises:
        ConfigError: unreadable file, invalid JSON, or a value the model cannot take.
    """
    path = Path(path)
    data: dict[str, object] = {}
    if path.is_dir():
        for key, name in SECTIONS:
            file = path / name
            if file.exists():
                data[key] = _read_json(file)
        if not data:
            names = ", ".join(n for _, n in SECTIONS)
            raise ConfigError(f"no export file found (expected {names})", source=str(path))
    else:
        loaded = _read_json(path)
        if not isinstance(loaded, dict):
            raise ConfigError("expected one JSON object with the sections "
                              + ", ".join(k for k, _ in SECTIONS), source=str(path))
        data = loaded
    return parse_export(data, source=str(path))


def _read_json(path: Path) -> object:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read export ({exc.strerror})", source=str(path)) from None
    if len(raw) > _MAX_BYTES:
        raise ConfigError("export larger than 32 MiB", source=str(path))
    try:
        # PowerShell's Set-Content -Encoding utf8 (Windows PowerShell) writes a BOM.
        return json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"invalid JSON: {exc}", source=str(path)) from None
    except RecursionError:  # hostile nesting; ConvertTo-Json -Depth 5 never nests this deep
        raise ConfigError("invalid JSON: nested too deeply", source=str(path)) from None


def parse_export(data: dict[str, object], *, source: str = "<export>") -> Export:
    """Convert already-parsed export data (pure; ``source`` names it in errors)."""
    known = {k for k, _ in SECTIONS}
    for key in data:
        if key not in known:
            raise ConfigError("unknown export section (expected "
                              + ", ".join(sorted(known)) + ")", source=source, key=key)

    def objects(section: str) -> list[dict[str, Any]]:
        return _objects(data.get(section), section, source)

    domains = inbound = outbound = rules = None
    if "AcceptedDomains" in data:
        domains = tuple(replace(d, domain=d.domain.lower()) for d in (
            _convert(o, ACCEPTED_DOMAIN, AcceptedDomain, f"AcceptedDomains[{i}]", source)
            for i, o in enumerate(objects("AcceptedDomains"))))
    if "InboundConnectors" in data:
        inbound = tuple(_convert(o, INBOUND, InboundConnector, f"InboundConnectors[{i}]",
                                 source) for i, o in enumerate(objects("InboundConnectors")))
    if "OutboundConnectors" in data:
        outbound = tuple(_convert(o, OUTBOUND, OutboundConnector, f"OutboundConnectors[{i}]",
                                  source) for i, o in enumerate(objects("OutboundConnectors")))
    if "TransportRules" in data:
        rules = tuple(_rule(o, f"TransportRules[{i}]", source)
                      for i, o in enumerate(objects("TransportRules")))
    reject: bool | None = None
    if data.get("OrganizationConfig") is not None:
        org = objects("OrganizationConfig")
        if len(org) != 1:
            raise ConfigError("expected one organization configuration", source=source,
                              key="OrganizationConfig")
        values = _values(org[0], ORGANIZATION, "OrganizationConfig", source)
        reject = bool(values.get("reject_direct_send", False))
    return Export(domains, inbound, outbound, rules, reject)


def tenant_from_export(topology: Topology, export: Export) -> Tenant:
    """The topology's tenant with the exported objects in place of its own (rules as read).

    A part the export lacks is taken as planned (:func:`~.plan.deployed`), so it shows no
    difference and the simulation assumes it installed; accepted domains the export lacks
    are the topology file's.
    """
    tenant = topology.tenant
    planned = deployed(topology)
    org = tenant.org
    if export.reject_direct_send is not None:
        org = replace(org, reject_direct_send=export.reject_direct_send)
    def kept(value: tuple[Any, ...] | None, own: tuple[Any, ...]) -> tuple[Any, ...]:
        return own if value is None else value

    return replace(
        tenant, accepted_domains=kept(export.accepted_domains, tenant.accepted_domains),
        inbound_connectors=kept(export.inbound_connectors, planned.inbound_connectors),
        outbound_connectors=kept(export.outbound_connectors, planned.outbound_connectors),
        transport_rules=kept(export.transport_rules, planned.transport_rules), org=org)


# --- shapes --------------------------------------------------------------------------------

def _unwrap(value: object) -> object:
    """Windows PowerShell writes some arrays as ``{"value": [...], "Count": n}``."""
    if isinstance(value, dict) and "value" in value and isinstance(value["value"], list) and (
            set(value) <= {"value", "Count"}):
        return value["value"]
    return value


def _objects(value: object, section: str, source: str) -> list[dict[str, Any]]:
    value = _unwrap(value)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]  # one object: ConvertTo-Json unrolls
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError("expected an object", source=source, key=f"{section}[{i}]")
        out.append(item)
    return out


def _text(value: object, depth: int = 0) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and depth < 4:  # SmtpDomain objects nest two or three deep
        for key in _TEXT_KEYS:
            if key in value and value[key] is not None:
                return _text(value[key], depth + 1)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem("expected a string")
    return str(value)


def _texts(value: object) -> tuple[str, ...]:
    value = _unwrap(value)
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(_text(v) for v in items if v is not None and v != "")


def _domain(text: str) -> str:
    """``smtp:*;1`` (address space with type and cost) -> ``*``."""
    if ":" in text and text.split(":", 1)[0].lower() == "smtp":
        text = text.split(":", 1)[1]
    if ";" in text:
        text = text.split(";", 1)[0]
    return text.strip()


def _date(value: object) -> datetime:
    text = _text(value)
    found = _DATE_MS.match(text.replace("\\/", "/"))
    if found:
        return datetime.fromtimestamp(int(found.group(1)) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Problem("expected a date (ISO 8601 or /Date(ms)/)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _enum(value: object, kind: type[enum.Enum]) -> enum.Enum:
    if isinstance(value, int) and not isinstance(value, bool):
        raise _Problem("enum written as a number: export with ConvertTo-Json -EnumsAsStrings")
    text = _text(value)
    for member in kind:
        if str(member.value).lower() == text.lower():
            return member
    raise _Problem("expected one of " + ", ".join(str(m.value) for m in kind))


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Problem("expected true or false")


def _int(value: object) -> int:
    if isinstance(value, dict):  # SclValue / ByteQuantifiedSize objects
        for key in ("Value", "value", "Bytes"):
            if key in value:
                return _int(value[key])
    if isinstance(value, bool):
        raise _Problem("expected a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        bytes_form = re.search(r"\(([\d,.]+) bytes\)", value)  # "10 MB (10,485,760 bytes)"
        digits = bytes_form.group(1) if bytes_form else value.strip()
        try:
            return int(digits.replace(",", "").replace(".", ""))
        except ValueError:
            pass
    raise _Problem("expected a number")


def _value(raw: object, f: Field) -> object:
    if f.enum is not None:
        return _enum(raw, f.enum)
    match f.kind:
        case Kind.BOOL:
            return _bool(raw)
        case Kind.INT:
            return _int(raw)
        case Kind.TEXTS:
            return _texts(raw)
        case Kind.DOMAINS:
            return tuple(_domain(t) for t in _texts(raw))
        case Kind.DATE:
            return _date(raw)
        case _:
            return _text(raw)


def _values(obj: dict[str, Any], fields: tuple[Field, ...], where: str, source: str,
            prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for f in fields:
        prop = prefix + f.prop
        raw = obj.get(prop)
        if raw is None or (f.kind in (Kind.TEXTS, Kind.DOMAINS) and raw == []):
            continue
        try:
            out[f.attr] = _value(raw, f)
        except _Problem as problem:
            raise ConfigError(str(problem), source=source, key=f"{where}.{prop}") from None
    return out


def _convert(obj: dict[str, Any], fields: tuple[Field, ...], cls: type[Any], where: str,
             source: str) -> Any:
    values = _values(obj, fields, where, source)
    if "name" in {f.attr for f in fields} and not values.get("name"):
        raise ConfigError("object without a Name", source=source, key=where)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), source=source, key=where) from None


def _rule(obj: dict[str, Any], where: str, source: str) -> TransportRule:
    values = _values(obj, RULE, where, source)
    if not values.get("name"):
        raise ConfigError("rule without a Name", source=source, key=where)
    state = obj.get("State")
    if state is not None:
        text = _text(state) if not isinstance(state, int) or isinstance(state, bool) else ""
        if text.lower() not in ("enabled", "disabled"):
            raise ConfigError("expected Enabled or Disabled (export with -EnumsAsStrings)",
                              source=source, key=f"{where}.State")
        values["enabled"] = text.lower() == "enabled"
    values["conditions"] = _predicates(obj, "", where, source)
    values["exceptions"] = _predicates(obj, EXCEPT, where, source)
    values["actions"] = _actions(obj, where, source)
    return TransportRule(**values)  # type: ignore[arg-type]


def _pair(obj: dict[str, Any], names: tuple[str, str], prefix: str, where: str,
          source: str) -> tuple[str, tuple[str, ...]] | None:
    header, values = obj.get(prefix + names[0]), obj.get(prefix + names[1])
    if header is None or header == "":
        return None
    try:
        return _text(header), _texts(values)
    except _Problem as problem:
        raise ConfigError(str(problem), source=source, key=f"{where}.{prefix}{names[1]}") from None


def _predicates(obj: dict[str, Any], prefix: str, where: str, source: str) -> Predicates:
    values: dict[str, object] = _values(obj, PREDICATES, where, source, prefix)
    words = _pair(obj, HEADER_WORDS, prefix, where, source)
    if words is not None:
        values["header_contains"] = HeaderWords(header=words[0], words=words[1])
    patterns = _pair(obj, HEADER_PATTERNS, prefix, where, source)
    if patterns is not None:
        for pattern in patterns[1]:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"invalid regular expression: {exc}", source=source,
                                  key=f"{where}.{prefix}{HEADER_PATTERNS[1]}") from None
        values["header_matches"] = HeaderPatterns(header=patterns[0], patterns=patterns[1])
    return Predicates(**values)  # type: ignore[arg-type]


def _actions(obj: dict[str, Any], where: str, source: str) -> Actions:
    values = _values(obj, ACTIONS, where, source)
    try:
        if obj.get(SET_HEADER[0]):
            values["set_header"] = SetHeader(name=_text(obj[SET_HEADER[0]]),
                                             value=_text(obj.get(SET_HEADER[1]) or ""))
        if obj.get(DISCLAIMER[0]):
            parts: dict[str, object] = {"text": _text(obj[DISCLAIMER[0]])}
            for prop, attr, kind in zip(DISCLAIMER[1:], ("location", "fallback_action"),
                                        DISCLAIMER_ENUMS, strict=True):
                if obj.get(prop) is not None:
                    parts[attr] = _enum(obj[prop], kind)
            values["apply_html_disclaimer"] = ExoDisclaimer(**parts)  # type: ignore[arg-type]
        if obj.get(REJECT[0]) or obj.get(REJECT[1]):
            reject: dict[str, str] = {}
            if obj.get(REJECT[0]):
                reject["reason_text"] = _text(obj[REJECT[0]])
            if obj.get(REJECT[1]):
                reject["enhanced_status_code"] = _text(obj[REJECT[1]])
            values["reject"] = RejectAction(**reject)
    except _Problem as problem:
        raise ConfigError(str(problem), source=source, key=where) from None
    return Actions(**values)  # type: ignore[arg-type]
