"""The Exchange Online tenant as frozen values (docs/routing/topology-reference.md).

Attribute names are the Python spelling of the PowerShell parameters (``SenderDomains`` ->
``sender_domains``); defaults are Exchange Online's, so that a model read back from ``Get-*``
output and one written from scratch agree. Nothing here performs I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping  # run time: the loader resolves annotations
from datetime import datetime
from types import MappingProxyType
from typing import Any

from mailroute.records import field, record
from mailroute.results import Reply

__all__ = [
    "AcceptedDomain",
    "Actions",
    "ConnectorSource",
    "ConnectorType",
    "Directory",
    "DisclaimerFallback",
    "DisclaimerLocation",
    "DomainType",
    "ExoDisclaimer",
    "HeaderPatterns",
    "HeaderWords",
    "InboundConnector",
    "JournalRule",
    "JournalScope",
    "MessageType",
    "OrgConfig",
    "OutboundConnector",
    "Predicates",
    "Recipient",
    "RecipientAddressType",
    "RecipientKind",
    "RejectAction",
    "RuleErrorAction",
    "RuleMode",
    "Scope",
    "SenderAddressLocation",
    "SetHeader",
    "Tenant",
    "TlsSettings",
    "TransportRule",
    "parse_reply",
]

_REPLY = re.compile(r"^([2-5]\d\d) ([2-5]\.\d{1,3}\.\d{1,3})(?: (.*))?$")


def parse_reply(text: str) -> Reply:
    """``"552 5.2.2 Mailbox full"`` as a :class:`~mailroute.results.Reply`.

    Raises:
        ValueError: not ``CODE X.Y.Z text`` with matching classes.
    """
    found = _REPLY.match(text.strip())
    if found is None:
        raise ValueError(f"expected 'CODE X.Y.Z text', got {text!r}")
    return Reply(int(found.group(1)), found.group(2), found.group(3) or "")


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


class DomainType(enum.StrEnum):
    """``Set-AcceptedDomain -DomainType``."""

    AUTHORITATIVE = "Authoritative"
    INTERNAL_RELAY = "InternalRelay"


class RecipientKind(enum.StrEnum):
    """Directory object types that can receive mail."""

    MAILBOX = "Mailbox"
    MAIL_USER = "MailUser"
    MAIL_CONTACT = "MailContact"
    DISTRIBUTION_GROUP = "DistributionGroup"
    UNIFIED_GROUP = "UnifiedGroup"
    PUBLIC_FOLDER = "PublicFolder"


class ConnectorType(enum.StrEnum):
    """``-ConnectorType`` of inbound and outbound connectors."""

    ON_PREMISES = "OnPremises"
    PARTNER = "Partner"


class ConnectorSource(enum.StrEnum):
    """``ConnectorSource``: who created the connector (HybridWizard = HCW, never edited)."""

    DEFAULT = "Default"
    HYBRID_WIZARD = "HybridWizard"
    MIGRATED = "Migrated"


class TlsSettings(enum.StrEnum):
    """``New-OutboundConnector -TlsSettings``."""

    ENCRYPTION_ONLY = "EncryptionOnly"
    CERTIFICATE_VALIDATION = "CertificateValidation"
    DOMAIN_VALIDATION = "DomainValidation"


class RuleMode(enum.StrEnum):
    """``New-TransportRule -Mode``."""

    ENFORCE = "Enforce"
    AUDIT = "Audit"
    AUDIT_AND_NOTIFY = "AuditAndNotify"


class RuleErrorAction(enum.StrEnum):
    """``-RuleErrorAction`` (recorded, not simulated)."""

    IGNORE = "Ignore"
    DEFER = "Defer"


class SenderAddressLocation(enum.StrEnum):
    """``-SenderAddressLocation``: which sender address sender predicates read."""

    HEADER = "Header"
    ENVELOPE = "Envelope"
    HEADER_OR_ENVELOPE = "HeaderOrEnvelope"


class RecipientAddressType(enum.StrEnum):
    """``-RecipientAddressType``: resolved primary address or the address as written."""

    RESOLVED = "Resolved"
    ORIGINAL = "Original"


class Scope(enum.StrEnum):
    """``-FromScope`` / ``-SentToScope``."""

    IN_ORGANIZATION = "InOrganization"
    NOT_IN_ORGANIZATION = "NotInOrganization"


class MessageType(enum.StrEnum):
    """``-MessageTypeMatches``."""

    OOF = "OOF"
    AUTO_FORWARD = "AutoForward"
    ENCRYPTED = "Encrypted"
    CALENDARING = "Calendaring"
    PERMISSION_CONTROLLED = "PermissionControlled"
    VOICEMAIL = "Voicemail"
    SIGNED = "Signed"
    APPROVAL_REQUEST = "ApprovalRequest"
    READ_RECEIPT = "ReadReceipt"


class DisclaimerLocation(enum.StrEnum):
    """``-ApplyHtmlDisclaimerLocation``."""

    APPEND = "Append"
    PREPEND = "Prepend"


class DisclaimerFallback(enum.StrEnum):
    """``-ApplyHtmlDisclaimerFallbackAction``: what to do when the body cannot be changed."""

    WRAP = "Wrap"
    IGNORE = "Ignore"
    REJECT = "Reject"


class JournalScope(enum.StrEnum):
    """``New-JournalRule -Scope``."""

    GLOBAL = "Global"
    INTERNAL = "Internal"
    EXTERNAL = "External"


@record(frozen=True, kw_only=True)
class AcceptedDomain:
    """An accepted domain (``Get-AcceptedDomain``).

    Args:
        domain: lower-case domain name (``DomainName``).
        type: ``DomainType``; default Authoritative.
        match_subdomains: ``MatchSubDomains``; only meaningful for InternalRelay.
        is_initial: the ``*.onmicrosoft.com`` domain (MX fixed at EOP).
    """

    domain: str
    type: DomainType = DomainType.AUTHORITATIVE
    match_subdomains: bool = False
    is_initial: bool = False


@record(frozen=True, kw_only=True)
class Recipient:
    """A directory object that can receive mail.

    Args:
        primary: primary SMTP address.
        kind: object type.
        proxies: further proxy addresses (``EmailAddresses``).
        members: primary addresses of members (groups only).
        external_address: target of a MailContact or MailUser (``ExternalEmailAddress``).
        forwarding_smtp: mailbox forwarding target (``ForwardingSmtpAddress``).
        deliver_and_forward: ``DeliverToMailboxAndForward``.
        delivery_failure: delivery to this mailbox fails with this status after the rules
            (``"552 5.2.2 Mailbox full"``): Exchange writes an NDR (a scenario fact,
            docs/routing/scenario.md).
    """

    primary: str
    kind: RecipientKind = RecipientKind.MAILBOX
    proxies: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    external_address: str | None = None
    forwarding_smtp: str | None = None
    deliver_and_forward: bool = False
    delivery_failure: str | None = None

    def __post_init__(self) -> None:
        if self.delivery_failure is not None:
            parse_reply(self.delivery_failure)


@record(frozen=True, kw_only=True)
class Directory:
    """The recipients EXO knows, indexed by every proxy address (lower-case)."""

    recipients: tuple[Recipient, ...] = ()
    _index: Mapping[str, Recipient] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=_empty_mapping)

    def __post_init__(self) -> None:
        index: dict[str, Recipient] = {}
        for recipient in self.recipients:
            for address in (recipient.primary, *recipient.proxies):
                index[address.lower()] = recipient
        object.__setattr__(self, "_index", MappingProxyType(index))

    def lookup(self, address: str) -> Recipient | None:
        """The recipient one of whose proxy addresses is ``address``, or ``None``."""
        return self._index.get(address.lower())


@record(frozen=True, kw_only=True)
class InboundConnector:
    """Mail into EXO (``New-InboundConnector``; fields: docs/routing/topology-reference.md)."""

    name: str
    connector_type: ConnectorType = ConnectorType.PARTNER
    enabled: bool = True
    sender_domains: tuple[str, ...] = ("*",)
    sender_ip_addresses: tuple[str, ...] = ()
    tls_sender_certificate_name: str | None = None
    require_tls: bool = True
    restrict_domains_to_certificate: bool = False
    restrict_domains_to_ip_addresses: bool = False
    associated_accepted_domains: tuple[str, ...] = ()
    cloud_services_mail_enabled: bool = False
    treat_messages_as_internal: bool = False
    ef_skip_last_ip: bool = False
    ef_skip_ips: tuple[str, ...] = ()
    ef_users: tuple[str, ...] = ()
    connector_source: ConnectorSource = ConnectorSource.DEFAULT
    comment: str = ""

    @property
    def enhanced_filtering(self) -> bool:
        """True when Enhanced Filtering for Connectors is on."""
        return self.ef_skip_last_ip or bool(self.ef_skip_ips)


@record(frozen=True, kw_only=True)
class OutboundConnector:
    """Mail out of EXO (``New-OutboundConnector``; docs/routing/topology-reference.md)."""

    name: str
    connector_type: ConnectorType = ConnectorType.PARTNER
    enabled: bool = True
    recipient_domains: tuple[str, ...] = ()
    is_transport_rule_scoped: bool = False
    use_mx_record: bool = True
    smart_hosts: tuple[str, ...] = ()
    tls_settings: TlsSettings | None = None
    tls_domain: str | None = None
    all_accepted_domains: bool = False
    route_all_messages_via_on_premises: bool = False
    cloud_services_mail_enabled: bool = False
    sender_rewriting_enabled: bool = False
    connector_source: ConnectorSource = ConnectorSource.DEFAULT
    comment: str = ""


@record(frozen=True, kw_only=True)
class HeaderWords:
    """``HeaderContainsMessageHeader`` + ``HeaderContainsWords`` (words are OR-ed)."""

    header: str
    words: tuple[str, ...]


@record(frozen=True, kw_only=True)
class HeaderPatterns:
    """``HeaderMatchesMessageHeader`` + ``HeaderMatchesPatterns`` (regexes are OR-ed)."""

    header: str
    patterns: tuple[str, ...]


@record(frozen=True, kw_only=True)
class Predicates:
    """Conditions (AND of the set ones) or exceptions (OR of the set ones) of a rule.

    Each attribute is the PowerShell parameter in snake case (exceptions add ``ExceptIf``).
    Per-recipient predicates (``sent_to_scope``, ``recipient_domain_is``, ``sent_to``,
    ``recipient_address_*``) fork the message; the others apply to the whole message.
    """

    header_contains: HeaderWords | None = None
    header_matches: HeaderPatterns | None = None
    from_scope: Scope | None = None
    sent_to_scope: Scope | None = None
    sender_domain_is: tuple[str, ...] = ()
    recipient_domain_is: tuple[str, ...] = ()
    message_type_matches: MessageType | None = None
    scl_over: int | None = None
    sender_ip_ranges: tuple[str, ...] = ()
    message_size_over: int | None = None
    from_addresses: tuple[str, ...] = ()
    from_address_matches_patterns: tuple[str, ...] = ()
    from_member_of: tuple[str, ...] = ()
    sent_to: tuple[str, ...] = ()
    recipient_address_matches_patterns: tuple[str, ...] = ()
    recipient_address_contains_words: tuple[str, ...] = ()
    any_of_recipient_address_matches_patterns: tuple[str, ...] = ()
    any_of_to_header: tuple[str, ...] = ()
    per_recipient: bool = field(init=False, repr=False, compare=False, default=False)
    message_level: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        per = bool(self.sent_to_scope or self.recipient_domain_is or self.sent_to
                   or self.recipient_address_matches_patterns
                   or self.recipient_address_contains_words)
        whole = bool(self.header_contains or self.header_matches or self.from_scope
                     or self.sender_domain_is or self.message_type_matches
                     or self.scl_over is not None or self.sender_ip_ranges
                     or self.message_size_over is not None or self.from_addresses
                     or self.from_address_matches_patterns or self.from_member_of
                     or self.any_of_recipient_address_matches_patterns
                     or self.any_of_to_header)
        object.__setattr__(self, "per_recipient", per)
        object.__setattr__(self, "message_level", whole)

    @property
    def is_empty(self) -> bool:
        """True when no predicate is set."""
        return not (self.per_recipient or self.message_level)


_NO_PREDICATES = Predicates()


@record(frozen=True, kw_only=True)
class SetHeader:
    """``SetHeaderName`` + ``SetHeaderValue``."""

    name: str
    value: str


@record(frozen=True, kw_only=True)
class ExoDisclaimer:
    """``ApplyHtmlDisclaimerText`` / ``-Location`` / ``-FallbackAction``."""

    text: str
    location: DisclaimerLocation = DisclaimerLocation.APPEND
    fallback_action: DisclaimerFallback = DisclaimerFallback.WRAP


@record(frozen=True, kw_only=True)
class RejectAction:
    """``RejectMessageReasonText`` + ``RejectMessageEnhancedStatusCode``."""

    reason_text: str = "Delivery not authorized, message refused"
    enhanced_status_code: str = "5.7.1"


@record(frozen=True, kw_only=True)
class Actions:
    """Actions of a transport rule (all set ones are applied)."""

    route_message_outbound_connector: str | None = None
    set_header: SetHeader | None = None
    remove_header: str | None = None
    apply_html_disclaimer: ExoDisclaimer | None = None
    set_scl: int | None = None
    reject: RejectAction | None = None
    delete_message: bool = False
    quarantine: bool = False
    redirect_message_to: tuple[str, ...] = ()
    route_message_outbound_require_tls: bool = False

    @property
    def diverts(self) -> bool:
        """True for actions that take the message away from normal routing."""
        return bool(self.route_message_outbound_connector or self.reject or self.delete_message
                    or self.quarantine or self.redirect_message_to)


@record(frozen=True, kw_only=True)
class TransportRule:
    """A mail flow rule (``New-TransportRule``).

    ``priority`` ``None`` means "after the rules before it in the file".
    """

    name: str
    priority: int | None = None
    comments: str = ""
    enabled: bool = True
    mode: RuleMode = RuleMode.ENFORCE
    activation_date: datetime | None = None
    expiry_date: datetime | None = None
    stop_rule_processing: bool = False
    rule_error_action: RuleErrorAction = RuleErrorAction.IGNORE
    sender_address_location: SenderAddressLocation = SenderAddressLocation.HEADER
    recipient_address_type: RecipientAddressType = RecipientAddressType.RESOLVED
    conditions: Predicates = _NO_PREDICATES
    exceptions: Predicates = _NO_PREDICATES
    actions: Actions = field(default_factory=Actions)

    def active(self, now: datetime | None) -> bool:
        """True when enabled and ``now`` lies inside the activation window."""
        if not self.enabled:
            return False
        if now is None:
            return True
        if self.activation_date is not None and now < self.activation_date:
            return False
        return self.expiry_date is None or now < self.expiry_date


@record(frozen=True, kw_only=True)
class JournalRule:
    """``New-JournalRule``: recipient scope and the journal mailbox address."""

    name: str
    journal_email_address: str
    scope: JournalScope = JournalScope.GLOBAL
    recipient: str | None = None
    enabled: bool = True


@record(frozen=True, kw_only=True)
class OrgConfig:
    """Tenant-wide settings (``Set-OrganizationConfig``, ``Set-ArcConfig``, journal rules)."""

    reject_direct_send: bool = False
    arc_trusted_sealers: tuple[str, ...] = ()
    connection_ip_allow_list: tuple[str, ...] = ()
    journal_rules: tuple[JournalRule, ...] = ()
    hop_limit: int = 20


@record(frozen=True, kw_only=True)
class Tenant:
    """An Exchange Online tenant with its connectors, rules and DNS facts.

    Args:
        name: the organisation's main domain, e.g. ``example.net``.
        tenant_id: the directory id EXO stamps as ``X-MS-Exchange-CrossTenant-Id``.
        initial_domain: ``<tenant>.onmicrosoft.com``.
        exo_smart_host: where gateways deliver; derived from ``name`` when empty.
        mx: DNS facts, domain -> ``"eop"``, ``"gateway"`` or a host name.
        spf: DNS facts, domain -> SPF record (lint only).
    """

    name: str
    tenant_id: str
    initial_domain: str
    exo_smart_host: str = ""
    accepted_domains: tuple[AcceptedDomain, ...] = ()
    directory: Directory = field(default_factory=Directory)
    inbound_connectors: tuple[InboundConnector, ...] = ()
    outbound_connectors: tuple[OutboundConnector, ...] = ()
    transport_rules: tuple[TransportRule, ...] = ()
    org: OrgConfig = field(default_factory=OrgConfig)
    mx: tuple[tuple[str, str], ...] = ()
    spf: tuple[tuple[str, str], ...] = ()
    _domains: Mapping[str, AcceptedDomain] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=_empty_mapping)
    _rules: tuple[TransportRule, ...] = field(
        init=False, repr=False, compare=False, hash=False, default=())

    def __post_init__(self) -> None:
        if not self.exo_smart_host:
            host = self.name.replace(".", "-") + ".mail.protection.outlook.com"
            object.__setattr__(self, "exo_smart_host", host)
        domains = {d.domain.lower(): d for d in self.accepted_domains}
        initial = self.initial_domain.lower()
        domains.setdefault(initial, AcceptedDomain(domain=initial, is_initial=True))
        object.__setattr__(self, "_domains", MappingProxyType(domains))
        order = sorted(enumerate(self.transport_rules),
                       key=lambda p: (p[1].priority if p[1].priority is not None else p[0], p[0]))
        object.__setattr__(self, "_rules", tuple(rule for _, rule in order))

    @property
    def rules_by_priority(self) -> tuple[TransportRule, ...]:
        """The transport rules in evaluation order (priority 0 first)."""
        return self._rules

    @property
    def domains(self) -> Mapping[str, AcceptedDomain]:
        """Accepted domains by lower-case name, the initial domain always included."""
        return self._domains

    def accepted_domain(self, domain: str) -> AcceptedDomain | None:
        """The accepted domain that covers ``domain`` (exactly or via MatchSubDomains)."""
        domain = domain.lower()
        found = self._domains.get(domain)
        if found is not None:
            return found
        parts = domain.split(".")
        for i in range(1, len(parts) - 1):
            parent = self._domains.get(".".join(parts[i:]))
            if parent is not None and parent.match_subdomains:
                return parent
        return None

    def mx_of(self, domain: str) -> str | None:
        """The injected MX fact for ``domain`` (initial domain: always ``"eop"``)."""
        domain = domain.lower()
        if domain == self.initial_domain.lower():
            return "eop"
        for name, target in self.mx:
            if name.lower() == domain:
                return target
        return None

    def outbound_connector(self, name: str) -> OutboundConnector | None:
        """The outbound connector called ``name``, or ``None``."""
        for connector in self.outbound_connectors:
            if connector.name == name:
                return connector
        return None
