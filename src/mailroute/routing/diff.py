"""The plan against the tenant as read back: missing, extra and changed, parameter by
parameter (docs/routing/exo-diff.md).

Both sides are compared in their export form (:mod:`.export`), so every difference names
the PowerShell property an administrator would change (``RequireTls``,
``ExceptIfHeaderMatchesPatterns``, ``State``, ``Priority`` ...). Values are compared after
normalisation: domain names and header names case-insensitively, multi-valued properties
as sets, because Exchange returns them in its own order and case.
"""

from __future__ import annotations

import enum
from typing import Any

from mailroute.records import record
from mailroute.routing.export import export_tenant
from mailroute.routing.model import Tenant

__all__ = ["Change", "Difference", "diff_tenants"]


class Change(enum.StrEnum):
    """How the tenant differs from the plan."""

    MISSING = "missing"  # planned, not in the tenant
    EXTRA = "extra"      # in the tenant, not planned
    CHANGED = "changed"  # in both, a property differs


@record(frozen=True)
class Difference:
    """One difference: the object (``section``/``name``) and, for CHANGED, the property."""

    change: Change
    section: str
    name: str
    prop: str = ""
    planned: object = None
    actual: object = None

    def __str__(self) -> str:
        if self.change is Change.CHANGED:
            return (f"changed {self.section} '{self.name}' {self.prop}: planned "
                    f"{_show(self.planned)}, tenant has {_show(self.actual)}")
        return f"{self.change} {self.section} '{self.name}'"


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


_SECTIONS = (("AcceptedDomains", "DomainName"), ("InboundConnectors", "Name"),
             ("OutboundConnectors", "Name"), ("TransportRules", "Name"))
_CASE_FREE = ("domain", "header", "smarthosts", "sender", "recipient", "tls")


def _norm(prop: str, value: object) -> object:
    if value in ("", []):
        value = None
    fold = any(word in prop.lower() for word in _CASE_FREE)
    if isinstance(value, list):
        return frozenset(str(v).lower() if fold else v for v in value)
    if isinstance(value, str) and fold:
        return value.lower()
    return value


def diff_tenants(planned: Tenant, actual: Tenant) -> tuple[Difference, ...]:
    """Every difference between ``planned`` and ``actual``, object by object."""
    want, have = export_tenant(planned), export_tenant(actual)
    out: list[Difference] = []
    for section, key in _SECTIONS:
        mine = {str(o[key]).lower(): o for o in want[section]}
        theirs = {str(o[key]).lower(): o for o in have[section]}
        for name, obj in mine.items():
            if name not in theirs:
                out.append(Difference(Change.MISSING, section, str(obj[key])))
                continue
            out.extend(_changed(section, str(obj[key]), obj, theirs[name]))
        out.extend(Difference(Change.EXTRA, section, str(obj[key]))
                   for name, obj in theirs.items() if name not in mine)
    out.extend(_changed("OrganizationConfig", "organization", want["OrganizationConfig"],
                        have["OrganizationConfig"]))
    return tuple(out)


def _changed(section: str, name: str, planned: dict[str, Any],
             actual: dict[str, Any]) -> list[Difference]:
    return [Difference(Change.CHANGED, section, name, prop, value, actual.get(prop))
            for prop, value in planned.items()
            if prop != "Identity" and _norm(prop, value) != _norm(prop, actual.get(prop))]
