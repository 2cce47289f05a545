"""The anti-spoofing step of the gateway decision: own-domain mail from the internet.

With the MX on the gateway, a message from the internet whose From names one of the
organisation's domains reaches Exchange Online over the gateway's certificate-identified
connector and looks internal there. So the gateway refuses it unless DMARC found an aligned
DKIM or SPF pass. The ``dkim-verify`` filter and the routing simulator's gateway step both
call :func:`decide_spoof`, so that ``mailroute simulate`` predicts what the gateway does.
"""

from __future__ import annotations

import enum

from mailroute.gateway.flow import is_inside
from mailroute.records import record
from mailroute.results import Reply

__all__ = ["SPOOF_REPLY", "SpoofAction", "SpoofFacts", "SpoofPolicy", "decide_spoof"]

SPOOF_REPLY = Reply(550, "5.7.1", "sender domain authentication failed (DMARC)")
_TRY_LATER = Reply(451, "4.7.5", "cannot check sender domain authentication now")


class SpoofPolicy(enum.StrEnum):
    """What an own-domain spoof leads to."""

    REJECT = "reject"
    QUARANTINE = "quarantine"
    FLAG = "flag"
    OFF = "off"


class SpoofAction(enum.StrEnum):
    """What the gateway does with the message."""

    PASS = "pass"  # noqa: S105 - an action, not a password
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    QUARANTINE = "quarantine"
    FLAG = "flag"


@record(frozen=True, kw_only=True)
class SpoofFacts:
    """What the decision needs to know of one message.

    Attributes:
        from_domain: the domain of the From address, lower case ("" when none).
        from_internet: the message did not come back from the organisation's own tenant.
        aligned: DMARC found an aligned DKIM or SPF pass for ``from_domain``.
        enforced: the domain's DMARC policy is quarantine or reject and the message failed.
        dns_trouble: a DNS failure may explain the missing pass (temperror).
    """

    from_domain: str
    from_internet: bool
    aligned: bool
    enforced: bool = True
    dns_trouble: bool = False


def decide_spoof(facts: SpoofFacts, org_domains: tuple[str, ...], policy: SpoofPolicy, *,
                 requires_policy: bool = False) -> tuple[SpoofAction, Reply | None]:
    """The action for ``facts``, and the reply when the message is refused or deferred.

    Only internet mail claiming one of ``org_domains`` without an aligned pass is a spoof;
    a DNS problem defers it (451 4.7.5) rather than refuse it; with ``requires_policy`` only
    domains whose DMARC policy asks for enforcement are refused.
    """
    if (policy is SpoofPolicy.OFF or facts.aligned or not facts.from_internet
            or not is_inside(facts.from_domain, org_domains)):
        return SpoofAction.PASS, None
    if facts.dns_trouble:
        return SpoofAction.TEMPFAIL, _TRY_LATER
    if requires_policy and not facts.enforced:
        return SpoofAction.PASS, None
    return SpoofAction(policy.value), SPOOF_REPLY if policy is SpoofPolicy.REJECT else None
