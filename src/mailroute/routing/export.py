"""A tenant written as the ``Get-*`` cmdlets' JSON (the reverse of :mod:`.readback`).

``exo-diff --write-plan`` prints what the export of a correctly installed tenant looks
like, and the round-trip tests read it back. The shapes follow the cmdlets' output
(docs/routing/exo-diff.md): ``SenderDomains``/``RecipientDomains`` in the ``smtp:*;1``
address-space form, ``State`` ``Enabled``/``Disabled`` for rules, ``null`` for unset values,
enums as strings (``ConvertTo-Json -EnumsAsStrings``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from mailroute.routing.model import Tenant, TransportRule
from mailroute.routing.psfields import (
    ACCEPTED_DOMAIN,
    ACTIONS,
    DISCLAIMER,
    EXCEPT,
    HEADER_PATTERNS,
    HEADER_WORDS,
    INBOUND,
    ORGANIZATION,
    OUTBOUND,
    PREDICATES,
    REJECT,
    RULE,
    SET_HEADER,
    Field,
    Kind,
    iso,
)

__all__ = ["export_object", "export_tenant"]


def _out(value: object, f: Field) -> object:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return iso(value)
    if f.kind is Kind.DOMAINS:
        return [f"smtp:{v};1" for v in value]  # type: ignore[attr-defined]
    if isinstance(value, tuple):
        return list(value)
    return value


def export_object(obj: object, fields: tuple[Field, ...], prefix: str = "") -> dict[str, Any]:
    """The properties of one model object as ``Get-*`` prints them."""
    return {prefix + f.prop: _out(getattr(obj, f.attr), f) for f in fields}


def _rule(rule: TransportRule) -> dict[str, Any]:
    out = export_object(rule, RULE)
    out["State"] = "Enabled" if rule.enabled else "Disabled"
    for prefix, p in (("", rule.conditions), (EXCEPT, rule.exceptions)):
        out.update(export_object(p, PREDICATES, prefix))
        words, patterns = p.header_contains, p.header_matches
        out[prefix + HEADER_WORDS[0]] = words.header if words else None
        out[prefix + HEADER_WORDS[1]] = list(words.words) if words else None
        out[prefix + HEADER_PATTERNS[0]] = patterns.header if patterns else None
        out[prefix + HEADER_PATTERNS[1]] = list(patterns.patterns) if patterns else None
    a = rule.actions
    out.update(export_object(a, ACTIONS))
    out[SET_HEADER[0]] = a.set_header.name if a.set_header else None
    out[SET_HEADER[1]] = a.set_header.value if a.set_header else None
    d = a.apply_html_disclaimer
    out[DISCLAIMER[0]] = d.text if d else None
    out[DISCLAIMER[1]] = d.location.value if d else None
    out[DISCLAIMER[2]] = d.fallback_action.value if d else None
    out[REJECT[0]] = a.reject.reason_text if a.reject else None
    out[REJECT[1]] = a.reject.enhanced_status_code if a.reject else None
    out["Identity"] = rule.name
    # Get-TransportRule prints unset multi-valued and text properties as null.
    return {k: (None if v in ([], "") else v) for k, v in out.items()}


def export_tenant(tenant: Tenant) -> dict[str, Any]:
    """The combined export object of ``tenant`` (the sections of docs/routing/exo-diff.md)."""
    domains = [export_object(d, ACCEPTED_DOMAIN) for d in tenant.domains.values()]
    for d in domains:
        d["Name"] = d["DomainName"]
    return {
        "AcceptedDomains": domains,
        "InboundConnectors": [{**export_object(c, INBOUND), "Identity": c.name}
                              for c in tenant.inbound_connectors],
        "OutboundConnectors": [{**export_object(c, OUTBOUND), "Identity": c.name}
                               for c in tenant.outbound_connectors],
        "TransportRules": [_rule(r) for r in tenant.rules_by_priority],
        "OrganizationConfig": export_object(tenant.org, ORGANIZATION),
    }
