"""Exchange Online PowerShell for a plan: install, verify, enable, remove (docs/routing/t*.md).

The output is a script for an administrator to review; mailroute never runs it. Every value
from the configuration is emitted as a single-quoted PowerShell string with each quote
character doubled (PowerShell also treats the typographic quotes U+2018-U+201B as single
quotes, so they are doubled as well). Values containing control characters are refused with
:class:`UnsafeValueError` rather than escaped. Only enum members of the model appear
unquoted. Every cmdlet and parameter used is in :data:`ALLOWED`, taken from the Exchange PowerShell
cmdlet reference.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import TYPE_CHECKING

from mailroute.errors import ConfigError, InternalError
from mailroute.records import fields, record
from mailroute.routing.match import is_placeholder_address
from mailroute.routing.model import (
    InboundConnector,
    OutboundConnector,
    Predicates,
    RuleMode,
    TransportRule,
)
from mailroute.routing.topology import TopologyKind

if TYPE_CHECKING:
    from mailroute.routing.plan import Plan
    from mailroute.routing.topology import Topology

__all__ = [
    "ALLOWED",
    "IMPLIED_CMDLETS",
    "Script",
    "UnsafeValueError",
    "ps_quote",
    "render_powershell",
]

_QUOTES = "'\u2018\u2019\u201a\u201b"
_BARE = re.compile(r"^[A-Za-z0-9]+$")
MAX_NAME = 64
MAX_COMMENT = 1024
MAX_DISCLAIMER = 5000

_INBOUND_PARAMS = {
    "name": "Name", "connector_type": "ConnectorType", "enabled": "Enabled",
    "sender_domains": "SenderDomains", "sender_ip_addresses": "SenderIPAddresses",
    "tls_sender_certificate_name": "TlsSenderCertificateName", "require_tls": "RequireTls",
    "restrict_domains_to_certificate": "RestrictDomainsToCertificate",
    "restrict_domains_to_ip_addresses": "RestrictDomainsToIPAddresses",
    "associated_accepted_domains": "AssociatedAcceptedDomains",
    "cloud_services_mail_enabled": "CloudServicesMailEnabled",
    "treat_messages_as_internal": "TreatMessagesAsInternal", "ef_skip_last_ip": "EFSkipLastIP",
    "ef_skip_ips": "EFSkipIPs", "ef_users": "EFUsers", "comment": "Comment",
}
_OUTBOUND_PARAMS = {
    "name": "Name", "connector_type": "ConnectorType", "enabled": "Enabled",
    "recipient_domains": "RecipientDomains", "is_transport_rule_scoped": "IsTransportRuleScoped",
    "use_mx_record": "UseMXRecord", "smart_hosts": "SmartHosts", "tls_settings": "TlsSettings",
    "tls_domain": "TlsDomain", "all_accepted_domains": "AllAcceptedDomains",
    "route_all_messages_via_on_premises": "RouteAllMessagesViaOnPremises",
    "cloud_services_mail_enabled": "CloudServicesMailEnabled",
    "sender_rewriting_enabled": "SenderRewritingEnabled", "comment": "Comment",
}
#: Predicate attribute -> New-TransportRule parameter(s) (docs/routing/topology-reference.md).
PREDICATE_PARAMS: dict[str, tuple[str, ...]] = {
    "header_contains": ("HeaderContainsMessageHeader", "HeaderContainsWords"),
    "header_matches": ("HeaderMatchesMessageHeader", "HeaderMatchesPatterns"),
    "from_scope": ("FromScope",), "sent_to_scope": ("SentToScope",),
    "sender_domain_is": ("SenderDomainIs",), "recipient_domain_is": ("RecipientDomainIs",),
    "message_type_matches": ("MessageTypeMatches",), "scl_over": ("SCLOver",),
    "sender_ip_ranges": ("SenderIpRanges",), "message_size_over": ("MessageSizeOver",),
    "from_addresses": ("From",), "from_address_matches_patterns": ("FromAddressMatchesPatterns",),
    "from_member_of": ("FromMemberOf",), "sent_to": ("SentTo",),
    "recipient_address_matches_patterns": ("RecipientAddressMatchesPatterns",),
    "recipient_address_contains_words": ("RecipientAddressContainsWords",),
    "any_of_recipient_address_matches_patterns": ("AnyOfRecipientAddressMatchesPatterns",),
    "any_of_to_header": ("AnyOfToHeader",),
}
_ACTION_PARAMS = ("RouteMessageOutboundConnector", "SetHeaderName", "SetHeaderValue",
                  "RemoveHeader", "ApplyHtmlDisclaimerText", "ApplyHtmlDisclaimerLocation",
                  "ApplyHtmlDisclaimerFallbackAction", "SetSCL", "RejectMessageReasonText",
                  "RejectMessageEnhancedStatusCode", "DeleteMessage", "Quarantine",
                  "RedirectMessageTo", "RouteMessageOutboundRequireTls")
_RULE_PARAMS = frozenset({
    "Name", "Priority", "Enabled", "Mode", "Comments", "ActivationDate", "ExpiryDate",
    "StopRuleProcessing", "RuleErrorAction", "SenderAddressLocation", "RecipientAddressType",
    *(p for ps in PREDICATE_PARAMS.values() for p in ps),
    *("ExceptIf" + p for ps in PREDICATE_PARAMS.values() for p in ps),
    *_ACTION_PARAMS})

#: Cmdlet -> parameters the generator may use, as the Exchange PowerShell cmdlet reference
#: names them (docs/routing/topology-reference.md maps every key to one).
ALLOWED: dict[str, frozenset[str]] = {
    "New-InboundConnector": frozenset(_INBOUND_PARAMS.values()),
    "New-OutboundConnector": frozenset(_OUTBOUND_PARAMS.values()),
    "New-TransportRule": _RULE_PARAMS,
    "Set-OutboundConnector": frozenset({"Identity", "Enabled"}),
    "Set-InboundConnector": frozenset({"Identity", "Enabled"}),
    "Validate-OutboundConnector": frozenset({"Identity", "Recipients"}),
    "Get-InboundConnector": frozenset({"Identity"}),
    "Get-OutboundConnector": frozenset({"Identity"}),
    "Get-TransportRule": frozenset(),
    "Get-AcceptedDomain": frozenset(),
    "Get-ArcConfig": frozenset(),
    "Set-ArcConfig": frozenset({"Identity", "ArcTrustedSealers"}),
    "Set-OrganizationConfig": frozenset({"RejectDirectSend"}),
    "Test-Message": frozenset({"MessageFileData", "Sender", "Recipients", "SendReportTo",
                               "TransportRules"}),
    "Where-Object": frozenset(), "ForEach-Object": frozenset(), "Sort-Object": frozenset(
        {"Unique"}), "Format-Table": frozenset(), "ConvertTo-Json": frozenset({"Depth"}),
    # The enable and remove scripts (IMPLIED_CMDLETS, docs/routing/assumptions.md):
    "Enable-TransportRule": frozenset({"Identity"}),
    "Remove-TransportRule": frozenset({"Identity", "Confirm"}),
    "Remove-InboundConnector": frozenset({"Identity", "Confirm"}),
    "Remove-OutboundConnector": frozenset({"Identity", "Confirm"}),
}
IMPLIED_CMDLETS = frozenset({"Enable-TransportRule", "Remove-TransportRule",
                             "Remove-InboundConnector", "Remove-OutboundConnector"})
_TITLES = {TopologyKind.T1: "gateway in front", TopologyKind.T2: "beside, MX on EOP",
           TopologyKind.T3: "beside, MX on the gateway"}


class UnsafeValueError(ConfigError):
    """A configured value cannot be emitted safely (control character, over a length limit)."""


@record(frozen=True)
class Bare:
    """An enum member emitted unquoted (``-ConnectorType Partner``)."""

    text: str


@record(frozen=True)
class Script:
    """The four scripts: install, verify, enable, remove."""

    install: str
    verify: str
    enable: str
    remove: str

    def combined(self) -> str:
        """All four, each in a ``#region`` block, in the order an administrator runs them."""
        parts = [f"#region {name}\n{getattr(self, name)}#endregion {name}\n"
                 for name in ("install", "verify", "enable", "remove")]
        return "\n".join(parts)


def ps_quote(value: str, *, key: str = "value", limit: int | None = None) -> str:
    """``value`` as a PowerShell single-quoted string literal.

    Raises:
        UnsafeValueError: the value contains a control character or exceeds ``limit``.
    """
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise UnsafeValueError("control character in a value for PowerShell", key=key)
    if limit is not None and len(value) > limit:
        raise UnsafeValueError(f"longer than {limit} characters", key=key)
    return "'" + "".join(ch * 2 if ch in _QUOTES else ch for ch in value) + "'"


def _bare(member: enum.Enum) -> Bare:
    text = str(member.value)
    if not _BARE.match(text):  # the model's enums are alphanumeric; defence in depth
        raise UnsafeValueError("unexpected enum value", key=type(member).__name__)
    return Bare(text)


Value = str | bool | int | Bare | tuple[str, ...]


def _literal(value: Value, key: str) -> str:
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Bare):
        return value.text
    if isinstance(value, tuple):
        return ",".join(ps_quote(v, key=key) for v in value)
    return ps_quote(value, key=key, limit=_LIMITS.get(key))


_LIMITS = {"Name": MAX_NAME, "Comment": MAX_COMMENT, "Comments": MAX_COMMENT,
           "ApplyHtmlDisclaimerText": MAX_DISCLAIMER}


def command(cmdlet: str, params: list[tuple[str, Value]], *, continued: bool = True) -> str:
    """One cmdlet call, one parameter per continuation line (backtick continuation)."""
    for name, _ in params:
        if name not in ALLOWED[cmdlet]:
            raise InternalError(f"{cmdlet} -{name} is not in the allow-list")
    parts = [f"-{name} {_literal(value, name)}" for name, value in params]
    if not continued or len(parts) <= 2:
        return " ".join([cmdlet, *parts]) + "\n"
    lines = [f"{cmdlet} {parts[0]} `"] + [f"  {p} `" for p in parts[1:-1]] + [f"  {parts[-1]}"]
    return "\n".join(lines) + "\n"


def _connector_params(connector: InboundConnector | OutboundConnector,
                      table: dict[str, str], always: frozenset[str]) -> list[tuple[str, Value]]:
    default = type(connector)(name=connector.name)
    out: list[tuple[str, Value]] = []
    for spec in fields(connector):
        if spec.name not in table or spec.name == "comment":
            continue
        value = getattr(connector, spec.name)
        if value == getattr(default, spec.name) and spec.name not in always:
            continue
        if value is None:
            continue
        out.append((table[spec.name], _value(value)))
    if connector.comment:
        out.append(("Comment", connector.comment))
    return out


def _value(value: object) -> Value:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, tuple):
        return tuple(str(v) for v in value)
    if isinstance(value, enum.Enum):
        return _bare(value)
    raise InternalError(f"no PowerShell form for {type(value).__name__}")


_ALWAYS = frozenset({"name", "connector_type", "sender_domains", "require_tls",
                     "is_transport_rule_scoped", "use_mx_record"})


def inbound_command(connector: InboundConnector, *, enabled: bool = True) -> str:
    """``New-InboundConnector`` for ``connector`` (``enabled`` False: created disabled)."""
    params = _connector_params(connector, _INBOUND_PARAMS, _csme(connector))
    if not enabled:
        params.insert(len(params) - (1 if connector.comment else 0), ("Enabled", False))
    return command("New-InboundConnector", params)


def is_lockdown(connector: InboundConnector) -> bool:
    """A connector that refuses the tenant's mail from anywhere but the gateway."""
    return (connector.restrict_domains_to_certificate
            or connector.restrict_domains_to_ip_addresses)


def outbound_command(connector: OutboundConnector, *, enabled: bool) -> str:
    """``New-OutboundConnector`` for ``connector`` (``enabled`` False: created disabled)."""
    params = _connector_params(connector, _OUTBOUND_PARAMS, _csme(connector))
    if not enabled:
        params.insert(len(params) - (1 if connector.comment else 0), ("Enabled", False))
    return command("New-OutboundConnector", params)


def _csme(connector: InboundConnector | OutboundConnector) -> frozenset[str]:
    onprem = str(connector.connector_type) == "OnPremises"
    return _ALWAYS | {"cloud_services_mail_enabled"} if onprem else _ALWAYS


def _predicate_params(p: Predicates, prefix: str) -> list[tuple[str, Value]]:
    out: list[tuple[str, Value]] = []
    for attr, names in PREDICATE_PARAMS.items():
        value = getattr(p, attr)
        if value is None or value == ():
            continue
        if attr == "header_contains":
            out += [(prefix + names[0], value.header), (prefix + names[1], value.words)]
        elif attr == "header_matches":
            out += [(prefix + names[0], value.header), (prefix + names[1], value.patterns)]
        else:
            out.append((prefix + names[0], _value(value)))
    return out


def rule_command(rule: TransportRule, *, enabled: bool) -> str:
    """``New-TransportRule`` for ``rule``."""
    params: list[tuple[str, Value]] = [("Name", rule.name), ("Priority", rule.priority or 0),
                                       ("Enabled", enabled)]
    if rule.mode is not RuleMode.ENFORCE:
        params.append(("Mode", _bare(rule.mode)))
    params += _predicate_params(rule.conditions, "")
    params += _predicate_params(rule.exceptions, "ExceptIf")
    a = rule.actions
    if a.remove_header:
        params.append(("RemoveHeader", a.remove_header))
    if a.set_header is not None:
        params += [("SetHeaderName", a.set_header.name), ("SetHeaderValue", a.set_header.value)]
    if a.apply_html_disclaimer is not None:
        d = a.apply_html_disclaimer
        params += [("ApplyHtmlDisclaimerText", d.text),
                   ("ApplyHtmlDisclaimerLocation", _bare(d.location)),
                   ("ApplyHtmlDisclaimerFallbackAction", _bare(d.fallback_action))]
    if a.set_scl is not None:
        params.append(("SetSCL", a.set_scl))
    if a.route_message_outbound_connector:
        params.append(("RouteMessageOutboundConnector", a.route_message_outbound_connector))
    if a.reject is not None:
        params += [("RejectMessageReasonText", a.reject.reason_text),
                   ("RejectMessageEnhancedStatusCode", a.reject.enhanced_status_code)]
    if a.delete_message:
        params.append(("DeleteMessage", True))
    if a.quarantine:
        params.append(("Quarantine", True))
    if a.redirect_message_to:
        params.append(("RedirectMessageTo", a.redirect_message_to))
    if rule.stop_rule_processing:
        params.append(("StopRuleProcessing", True))
    if rule.comments:
        params.append(("Comments", rule.comments))
    return command("New-TransportRule", params)


def render_powershell(topology: Topology, plan: Plan) -> Script:
    """The four scripts for ``plan`` (lint first: :func:`mailroute.routing.lint`)."""
    return Script(install=_install(topology, plan), verify=_verify(topology, plan),
                  enable=_enable(plan), remove=_remove(plan))


def _header(topology: Topology, plan: Plan, what: str) -> str:
    name = topology.tenant.name
    if any(unicodedata.category(ch) in _LINE_BREAKING for ch in name):
        raise UnsafeValueError("control character in the tenant name", key="tenant.name")
    return (f"# mailroute {plan.topology} ({_TITLES[plan.topology]}) for {name}: {what}\n"
            "# Generated by mailroute; review before running. mailroute never runs it.\n"
            "$ErrorActionPreference = 'Stop'\n")


def _install(topology: Topology, plan: Plan) -> str:
    out = [_header(topology, plan, "install")]
    if plan.required_accepted_domains:
        out.append("\n# 0. Preconditions: the certificate domain must be an accepted domain "
                   "(add it in the Microsoft 365 admin centre)\n")
        for domain in plan.required_accepted_domains:
            q = ps_quote(domain, key="gateway.tls_identity")
            msg = ps_quote(f"{domain} is not an accepted domain: null-sender mail could not be "
                           "relayed (5.7.64)", key="gateway.tls_identity")
            out.append("if (-not (Get-AcceptedDomain | Where-Object { "
                       f"$_.DomainName.ToString() -eq {q} }})) {{\n  throw {msg}\n}}\n")
        out.append("Get-InboundConnector | Format-Table Name, ConnectorType, ConnectorSource, "
                   "Enabled, TlsSenderCertificateName, SenderIPAddresses\n"
                   "Get-OutboundConnector | Format-Table Name, ConnectorType, ConnectorSource, "
                   "Enabled, IsTransportRuleScoped, RecipientDomains, "
                   "RouteAllMessagesViaOnPremises\n"
                   "Get-TransportRule | Format-Table Priority, Name, State, Mode, "
                   "StopRuleProcessing, RouteMessageOutboundConnector\n")
    out.append("\n# 1. Connectors\n")
    t1 = plan.topology is TopologyKind.T1
    for outbound in plan.outbound_connectors:
        out.append(outbound_command(outbound, enabled=not t1))
    for inbound in plan.inbound_connectors:
        # a lock-down refuses mail still sent to EOP's MX: it waits for the enable script
        out.append(inbound_command(inbound, enabled=not is_lockdown(inbound)))
        if str(inbound.connector_type) == "OnPremises":
            out.append("# Some tenants get OnPremises inbound connectors created disabled; "
                       "this must print True:\n"
                       f"(Get-InboundConnector -Identity {ps_quote(inbound.name)}).Enabled\n")
    if plan.rules:
        out.append("\n# 2. Rules, created disabled (enable them after the verify script)\n")
        out.extend(rule_command(rule, enabled=False) for rule in plan.rules)
    if plan.arc_sealer:
        sealer = ps_quote(plan.arc_sealer, key="tenant.name")
        out.append("\n# The gateway ARC-seals inbound mail: add it to the trusted sealers "
                   "(merge, don't replace)\n"
                   "$current = @((Get-ArcConfig).ArcTrustedSealers -split ',' | "
                   "ForEach-Object { $_.Trim() } | Where-Object { $_ })\n"
                   f"$sealers = @($current + {sealer} | Sort-Object -Unique)\n"
                   "Set-ArcConfig -Identity Default -ArcTrustedSealers $sealers\n")
    rds = "" if plan.reject_direct_send else "# "
    out.append("\n# Reject anonymous mail from own domains that matches no connector\n"
               f"{rds}Set-OrganizationConfig -RejectDirectSend $true\n")
    out.append("\n# DNS (not done by this script):\n")
    out.extend(f"#   {_comment(line)}\n" for line in plan.dns)
    return "".join(out)


#: Unicode categories a comment line must not hold: control characters, and the line and
#: paragraph separators an editor shows as new lines.
_LINE_BREAKING = ("Cc", "Zl", "Zp")


def _comment(text: str) -> str:
    if any(unicodedata.category(ch) in _LINE_BREAKING for ch in text):
        raise UnsafeValueError("control character in a comment", key="tenant")
    return text


def _verify(topology: Topology, plan: Plan) -> str:
    out = [_header(topology, plan, "verify")]
    for inbound in plan.inbound_connectors:
        out.append(f"(Get-InboundConnector -Identity {ps_quote(inbound.name)}).Enabled\n")
    probe = topology.exo_config.probe_recipient
    if plan.outbound_connectors and is_placeholder_address(probe):
        out.append(f"# PLACEHOLDER: {_comment(probe)} is reserved for examples (RFC 2606); set "
                   "[exo_config] probe_recipient to a real external mailbox, or the checks "
                   "below test nothing (lint L-VERIFY-PLACEHOLDER)\n")
    for outbound in plan.outbound_connectors:
        out.append(command("Validate-OutboundConnector", [("Identity", outbound.name),
                                                          ("Recipients", (probe,))],
                           continued=False))
    out.append("Get-TransportRule | Where-Object { $_.Name -like 'mailroute *' } | Format-Table "
               "Priority, Name, State, Mode, StopRuleProcessing, RouteMessageOutboundConnector\n")
    out.append("# Read-back for `mailroute` to diff against the plan:\n"
               "Get-InboundConnector | ConvertTo-Json -Depth 4\n"
               "Get-OutboundConnector | ConvertTo-Json -Depth 4\n"
               "Get-TransportRule | ConvertTo-Json -Depth 4\n")
    if plan.rules and plan.topology is not TopologyKind.T1:
        out.append("# Rule tests with real samples (Test-Message), each mails a report:\n"
                   "#   internal unmarked message    -> expect 'mailroute 10' to route it\n"
                   "#   returned with a fresh marker -> expect '01' not matched, '10' excepted, "
                   "'11' applied\n"
                   "#   external with a forged marker -> expect '01' matched, then '10'\n"
                   "# PLACEHOLDER addresses in <angle brackets>: replace them before "
                   "running\n"
                   "# Test-Message -MessageFileData ([System.IO.File]::ReadAllBytes("
                   "'sample.eml')) -Sender '<sender>' -Recipients '<recipient>' "
                   "-SendReportTo '<your admin mailbox>' -TransportRules\n")
    return "".join(out)


def _enable(plan: Plan) -> str:
    out = ["# mailroute: enable after the verify script passed (rules in priority order)\n",
           "$ErrorActionPreference = 'Stop'\n"]
    if plan.topology is TopologyKind.T1:
        out.extend(command("Set-OutboundConnector", [("Identity", c.name), ("Enabled", True)],
                           continued=False) for c in plan.outbound_connectors)
    out.extend(command("Enable-TransportRule", [("Identity", r.name)], continued=False)
               for r in sorted(plan.rules, key=lambda r: r.priority or 0))
    lockdowns = [c for c in plan.inbound_connectors if is_lockdown(c)]
    if lockdowns:
        out.append("\n# Last, once the MX records point at the gateway and the old records' TTL "
                   "has passed:\n# from then on Exchange Online refuses (550 5.7.51) the "
                   "tenant's mail that does not come from the gateway\n")
        out.extend(command("Set-InboundConnector", [("Identity", c.name), ("Enabled", True)],
                           continued=False) for c in lockdowns)
    return "".join(out)


def _remove(plan: Plan) -> str:
    out = ["# mailroute: remove (rules first, then connectors)\n",
           "$ErrorActionPreference = 'Stop'\n"]
    out.extend(f"Remove-TransportRule -Identity {ps_quote(r.name)} -Confirm:$false\n"
               for r in plan.rules)
    out.extend(f"Remove-OutboundConnector -Identity {ps_quote(c.name)} -Confirm:$false\n"
               for c in plan.outbound_connectors)
    out.extend(f"Remove-InboundConnector -Identity {ps_quote(c.name)} -Confirm:$false\n"
               for c in plan.inbound_connectors)
    return "".join(out)
