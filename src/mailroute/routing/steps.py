"""What each trace step code means: one sentence and the documentation it rests on.

Every :class:`~mailroute.routing.decide.TraceStep` (and every
:class:`mailroute.gateway.GatewayStep` the simulator copies) carries a short code. This table
is the single source of the explanations: ``mailroute route --explain`` and
``mailroute simulate --explain`` print the sentence beside each step, and
``docs/routing/steps.md`` lists the same rows (a test compares the page with this table).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["STEP_TEXTS", "StepText", "explain"]


class StepText(NamedTuple):
    """The explanation of one step code.

    Attributes:
        node: who acts at this step (``Exchange Online`` or ``gateway``).
        sentence: what happens there, in one sentence.
        sources: the titles of the documentation pages the step rests on.
    """

    node: str
    sentence: str
    sources: tuple[str, ...]


_EXO = "Exchange Online"
_GW = "gateway"
_SET_UP = ("Set up connectors to route mail between Microsoft 365 or Office 365 and your own "
           "email servers")
_ADD_ON = "Integrate Microsoft 365 or Office 365 with an email add-on service"
_THIRD_PARTY = "Manage mail flow using a third-party cloud service with Exchange Online"

STEP_TEXTS: dict[str, StepText] = {
    "E1": StepText(_EXO, "Exchange Online compares the connection (TLS certificate name, client "
                   "IP address) with every enabled inbound connector to find the ones it "
                   "matches.", ("New-InboundConnector (cmdlet reference)", _SET_UP)),
    "E2": StepText(_EXO, "The message is attributed to the tenant as Originating: a mailbox "
                   "submission, a copy Exchange made itself, or mail over an OnPremises "
                   "connector whose certificate, sender or recipient domain is an accepted "
                   "domain; relay to outside domains needs certificate or sender attribution "
                   "(5.7.64 otherwise).",
                   ("Updated requirements for SMTP relay through Exchange Online "
                    "(Exchange team blog)", "Office 365 Message Attribution (Exchange team blog)",
                    "New-InboundConnector (cmdlet reference)")),
    "E3": StepText(_EXO, "Without OnPremises attribution the message is Incoming for the tenant "
                   "that owns the recipient domains: outside domains are refused (5.7.1), "
                   "unknown recipients of an Authoritative domain are refused by "
                   "Directory-Based Edge Blocking (5.4.1).",
                   ("Manage accepted domains in Exchange Online",
                    "Fix email delivery issues for error code 5.4.1 in Exchange Online")),
    "E4": StepText(_EXO, "A Partner inbound connector restricted to a certificate or IP "
                   "addresses refuses mail for its sender domains that arrives any other way "
                   "(5.7.51 TenantInboundAttribution).",
                   ("New-InboundConnector (cmdlet reference)", _THIRD_PARTY)),
    "E5": StepText(_EXO, "With RejectDirectSend, anonymous mail from an accepted domain that "
                   "matches no inbound connector is refused (5.7.68).",
                   ("Set-OrganizationConfig (cmdlet reference)",)),
    "E6": StepText(_EXO, "The header firewall removes X-MS-Exchange-Organization and Forest "
                   "fields that arrived over SMTP, and promotes or removes "
                   "X-MS-Exchange-CrossPremises fields depending on the connector's "
                   "CloudServicesMailEnabled.",
                   ("Header firewall (Exchange Server)",
                    "New-InboundConnector (cmdlet reference)")),
    "RES": StepText(_EXO, "Recipient resolution: addresses map to their primary address, "
                    "distribution groups expand into members, and a Microsoft 365 group's "
                    "mailbox receives the message while each member's copy is a new "
                    "submission.",
                    ("Mail flow rule conditions and exceptions (predicates) in Exchange Online",
                     "Journaling in Exchange Online")),
    "R": StepText(_EXO, "Transport rules run by priority: a rule whose conditions match some "
                  "recipients forks the message, applies its actions to the matching copy "
                  "(Enforce mode only) and may stop rule processing.",
                  ("Mail flow rules (transport rules) in Exchange Online",
                   "Mail flow rule actions in Exchange Online",
                   "New-TransportRule (cmdlet reference)")),
    "X": StepText(_EXO, "Each recipient is routed: a rule-selected connector, else local "
                  "delivery, else the most specific matching outbound connector (exact domain, "
                  "all accepted domains, wildcard, '*' last), else the recipient domain's MX.",
                  (_SET_UP, "Use connectors to configure mail flow in Microsoft 365 or "
                   "Office 365", "Manage accepted domains in Exchange Online")),
    "G1": StepText(_GW, "The gateway classifies the source: handed over by this tenant's "
                   "Exchange Online (TLS name, address range and tenant id all match) or from "
                   "the internet.", (_ADD_ON, _THIRD_PARTY)),
    "G2": StepText(_GW, "Loop guards before any work: too many Received fields, or the same "
                   "Message-ID, envelope sender, recipients and direction processed before, "
                   "is refused with 554 5.4.6.",
                   ("Loop Prevention in Exchange Online Demystified (Exchange team blog)",
                    "Email non-delivery reports and SMTP errors in Exchange Online")),
    "G3": StepText(_GW, "Header hygiene and the marker verdict: the bypass field is removed, "
                   "internet mail loses markers and forged X-MS-Exchange fields, and a fresh "
                   "own marker handed back by Exchange Online is a loop (554 5.4.6).",
                   ("Header firewall (Exchange Server)", _ADD_ON)),
    "G4": StepText(_GW, "A bounce (null sender or report) is never refused for a policy reason, "
                   "so the gateway never bounces a bounce.", (_ADD_ON,)),
    "G5": StepText(_GW, "The direction of each recipient is decided (inbound, outbound, "
                   "internal); a recipient outside the organisation is taken only from this "
                   "tenant's Exchange Online (its name and ranges at RCPT, its tenant id at "
                   "the final dot), never on the strength of the envelope sender.",
                   (_ADD_ON, _THIRD_PARTY)),
    "G6": StepText(_GW, "The gateway's policy refuses a recipient in the SMTP session rather "
                   "than accepting it and bouncing later, or changes the message (signs, "
                   "encrypts), which later Exchange Online rules see.", (_ADD_ON,)),
    "G7": StepText(_GW, "The gateway processes the message and mints its marker last, so "
                   "every copy it hands on carries exactly one valid marker.",
                   (_ADD_ON, "New-TransportRule (cmdlet reference)")),
    "G8": StepText(_GW, "The next hop: Exchange Online's smart host with the gateway's TLS "
                   "identity, or (gateway in front) the recipient's MX with the marker "
                   "removed.", (_ADD_ON, _SET_UP)),
    "S": StepText("service", "A further service in the chain (a signature service, an archive "
                  "or DLP appliance, from the scenario file) sets its own header and hands "
                  "the message back to Exchange Online through the tenant's connector for it.",
                  (_ADD_ON, _THIRD_PARTY)),
}


def explain(code: str) -> str:
    """The sentence for ``code``, or a note that the code is unknown (never raises)."""
    text = STEP_TEXTS.get(code)
    return text.sentence if text is not None else f"(no explanation for step {code})"
