"""Which ``Get-*`` property holds which model attribute, and how its value is written.

One table per object kind, used in both directions: :mod:`.readback` parses the JSON that
``Get-AcceptedDomain``, ``Get-InboundConnector``, ``Get-OutboundConnector``,
``Get-TransportRule`` and ``Get-OrganizationConfig`` print with ``ConvertTo-Json``, and
:mod:`.export` writes the same shapes (the round-trip tests and ``exo-diff --write-plan``).
The property names are the cmdlets' own (docs/routing/exo-diff.md lists the sources).
"""

from __future__ import annotations

import enum
from datetime import datetime

from mailroute.records import record
from mailroute.routing.model import (
    ConnectorSource,
    ConnectorType,
    DisclaimerFallback,
    DisclaimerLocation,
    DomainType,
    MessageType,
    RecipientAddressType,
    RuleErrorAction,
    RuleMode,
    Scope,
    SenderAddressLocation,
    TlsSettings,
)

__all__ = [
    "ACCEPTED_DOMAIN",
    "ACTIONS",
    "INBOUND",
    "OUTBOUND",
    "PREDICATES",
    "RULE",
    "Field",
    "Kind",
]


class Kind(enum.Enum):
    """How a property's value is written in the export."""

    TEXT = "text"          # string; null = the model default
    BOOL = "bool"
    INT = "int"
    TEXTS = "texts"        # MultiValuedProperty: array (one value may come bare)
    DOMAINS = "domains"    # like TEXTS, entries may carry the "smtp:*;1" address-space form
    DATE = "date"          # ISO 8601 or "/Date(ms)/"


@record(frozen=True)
class Field:
    """One model attribute and the ``Get-*`` property that holds it.

    ``enum`` is the model's enum type for enum-valued properties (the value is the member's
    string; numbers are refused, see docs/routing/exo-diff.md).
    """

    attr: str
    prop: str
    kind: Kind = Kind.TEXT
    enum: type[enum.Enum] | None = None


B, N, L, D = Kind.BOOL, Kind.INT, Kind.TEXTS, Kind.DOMAINS

ACCEPTED_DOMAIN: tuple[Field, ...] = (
    Field("domain", "DomainName"),
    Field("type", "DomainType", enum=DomainType),
    Field("match_subdomains", "MatchSubDomains", B),
    Field("is_initial", "InitialDomain", B),
)

INBOUND: tuple[Field, ...] = (
    Field("name", "Name"),
    Field("connector_type", "ConnectorType", enum=ConnectorType),
    Field("enabled", "Enabled", B),
    Field("sender_domains", "SenderDomains", D),
    Field("sender_ip_addresses", "SenderIPAddresses", L),
    Field("tls_sender_certificate_name", "TlsSenderCertificateName"),
    Field("require_tls", "RequireTls", B),
    Field("restrict_domains_to_certificate", "RestrictDomainsToCertificate", B),
    Field("restrict_domains_to_ip_addresses", "RestrictDomainsToIPAddresses", B),
    Field("associated_accepted_domains", "AssociatedAcceptedDomains", D),
    Field("cloud_services_mail_enabled", "CloudServicesMailEnabled", B),
    Field("treat_messages_as_internal", "TreatMessagesAsInternal", B),
    Field("ef_skip_last_ip", "EFSkipLastIP", B),
    Field("ef_skip_ips", "EFSkipIPs", L),
    Field("ef_users", "EFUsers", L),
    Field("connector_source", "ConnectorSource", enum=ConnectorSource),
    Field("comment", "Comment"),
)

OUTBOUND: tuple[Field, ...] = (
    Field("name", "Name"),
    Field("connector_type", "ConnectorType", enum=ConnectorType),
    Field("enabled", "Enabled", B),
    Field("recipient_domains", "RecipientDomains", D),
    Field("is_transport_rule_scoped", "IsTransportRuleScoped", B),
    Field("use_mx_record", "UseMXRecord", B),
    Field("smart_hosts", "SmartHosts", L),
    Field("tls_settings", "TlsSettings", enum=TlsSettings),
    Field("tls_domain", "TlsDomain"),
    Field("all_accepted_domains", "AllAcceptedDomains", B),
    Field("route_all_messages_via_on_premises", "RouteAllMessagesViaOnPremises", B),
    Field("cloud_services_mail_enabled", "CloudServicesMailEnabled", B),
    Field("sender_rewriting_enabled", "SenderRewritingEnabled", B),
    Field("connector_source", "ConnectorSource", enum=ConnectorSource),
    Field("comment", "Comment"),
)

#: Transport rule properties outside conditions, exceptions and actions. ``enabled`` is
#: the ``State`` property (``Enabled``/``Disabled``), handled by the reader and writer.
RULE: tuple[Field, ...] = (
    Field("name", "Name"),
    Field("priority", "Priority", N),
    Field("comments", "Comments"),
    Field("mode", "Mode", enum=RuleMode),
    Field("activation_date", "ActivationDate", Kind.DATE),
    Field("expiry_date", "ExpiryDate", Kind.DATE),
    Field("stop_rule_processing", "StopRuleProcessing", B),
    Field("rule_error_action", "RuleErrorAction", enum=RuleErrorAction),
    Field("sender_address_location", "SenderAddressLocation", enum=SenderAddressLocation),
    Field("recipient_address_type", "RecipientAddressType", enum=RecipientAddressType),
)

#: Conditions; exceptions are the same properties with the ``ExceptIf`` prefix. The two
#: header predicates are pairs (``HeaderContainsMessageHeader`` + ``HeaderContainsWords``,
#: ``HeaderMatchesMessageHeader`` + ``HeaderMatchesPatterns``), handled by the reader.
PREDICATES: tuple[Field, ...] = (
    Field("from_scope", "FromScope", enum=Scope),
    Field("sent_to_scope", "SentToScope", enum=Scope),
    Field("sender_domain_is", "SenderDomainIs", L),
    Field("recipient_domain_is", "RecipientDomainIs", L),
    Field("message_type_matches", "MessageTypeMatches", enum=MessageType),
    Field("scl_over", "SCLOver", N),
    Field("sender_ip_ranges", "SenderIpRanges", L),
    Field("message_size_over", "MessageSizeOver", N),
    Field("from_addresses", "From", L),
    Field("from_address_matches_patterns", "FromAddressMatchesPatterns", L),
    Field("from_member_of", "FromMemberOf", L),
    Field("sent_to", "SentTo", L),
    Field("recipient_address_matches_patterns", "RecipientAddressMatchesPatterns", L),
    Field("recipient_address_contains_words", "RecipientAddressContainsWords", L),
    Field("any_of_recipient_address_matches_patterns",
          "AnyOfRecipientAddressMatchesPatterns", L),
    Field("any_of_to_header", "AnyOfToHeader", L),
)

#: Actions with a single property; header set, disclaimer and reject are pairs/triples.
ACTIONS: tuple[Field, ...] = (
    Field("route_message_outbound_connector", "RouteMessageOutboundConnector"),
    Field("remove_header", "RemoveHeader"),
    Field("set_scl", "SetSCL", N),
    Field("delete_message", "DeleteMessage", B),
    Field("quarantine", "Quarantine", B),
    Field("redirect_message_to", "RedirectMessageTo", L),
    Field("route_message_outbound_require_tls", "RouteMessageOutboundRequireTls", B),
)

#: Pair/triple properties (reader and writer both use these names).
SET_HEADER = ("SetHeaderName", "SetHeaderValue")
DISCLAIMER = ("ApplyHtmlDisclaimerText", "ApplyHtmlDisclaimerLocation",
              "ApplyHtmlDisclaimerFallbackAction")
DISCLAIMER_ENUMS = (DisclaimerLocation, DisclaimerFallback)
REJECT = ("RejectMessageReasonText", "RejectMessageEnhancedStatusCode")
HEADER_WORDS = ("HeaderContainsMessageHeader", "HeaderContainsWords")
HEADER_PATTERNS = ("HeaderMatchesMessageHeader", "HeaderMatchesPatterns")
EXCEPT = "ExceptIf"

#: ``Get-OrganizationConfig`` properties the model reads.
ORGANIZATION: tuple[Field, ...] = (
    Field("reject_direct_send", "RejectDirectSend", B),
)

#: The keys of the combined export object, and the file names of a one-file-per-cmdlet
#: export directory.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("AcceptedDomains", "Get-AcceptedDomain.json"),
    ("InboundConnectors", "Get-InboundConnector.json"),
    ("OutboundConnectors", "Get-OutboundConnector.json"),
    ("TransportRules", "Get-TransportRule.json"),
    ("OrganizationConfig", "Get-OrganizationConfig.json"),
)


def iso(value: datetime) -> str:
    """A date as PowerShell 7's ``ConvertTo-Json`` writes it (ISO 8601)."""
    return value.isoformat()
