"""Which way a message travels: per recipient (the gateway's G5) and for the whole message.

One function decides for the runtime (the session derives a message's direction from it) and
for the routing simulator (which splits recipients by it), so the two cannot disagree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from mailroute.item import Direction
from mailroute.results import Reply

__all__ = ["LEAVING", "RELAY_REFUSAL", "TENANT_RELAY_REFUSAL", "Flow", "direction_of",
           "domain_of", "flow_of", "is_inside", "is_subdomain", "leaves", "may_relay",
           "message_direction"]


class Flow(enum.StrEnum):
    """Direction of one recipient relative to the organisation (G5)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    RELAY = "relay"

    @property
    def letter(self) -> str:
        """The marker's direction field (``i``, ``o``, ``n``, ``x``)."""
        return _LETTERS[self]


_LETTERS = {Flow.INBOUND: "i", Flow.OUTBOUND: "o", Flow.INTERNAL: "n", Flow.RELAY: "x"}

#: G5: a recipient outside the organisation, from anyone but this tenant's Exchange Online.
RELAY_REFUSAL = Reply(550, "5.7.1", "mailroute: relay not permitted")
#: G5 for a message whose connection looked like Exchange Online (its certificate name and
#: address ranges are shared by every Microsoft 365 tenant) but whose tenant id is not ours.
TENANT_RELAY_REFUSAL = Reply(550, "5.7.1", "mailroute: relay not permitted (not this "
                                           "tenant's Exchange Online)")
#: Flows that leave the organisation.
LEAVING = frozenset({Flow.OUTBOUND, Flow.RELAY})


def may_relay(flow: Flow, *, from_exo: bool) -> bool:
    """G5: may the gateway take a recipient of ``flow``?

    Mail for the organisation's own domains is taken from anyone. Mail that leaves the
    organisation (outbound, or outside to outside) only from this tenant's Exchange Online:
    the envelope sender is the client's to choose, so an own-domain sender proves nothing,
    and relaying on it would make the gateway an open relay.
    """
    return from_exo or flow not in LEAVING


def domain_of(address: str) -> str:
    """The lower-case domain of an address; ``""`` for the null sender or no ``@``."""
    return address.rpartition("@")[2].lower() if "@" in address else ""


def is_subdomain(domain: str, parent: str) -> bool:
    """True when ``domain`` is ``parent`` or below it."""
    domain, parent = domain.lower(), parent.lower()
    return domain == parent or domain.endswith("." + parent)


def is_inside(domain: str, org_domains: Iterable[str]) -> bool:
    """True when ``domain`` is one of ``org_domains`` or below one."""
    return bool(domain) and any(is_subdomain(domain, d) for d in org_domains)


def flow_of(sender: str, recipient: str, org_domains: Iterable[str]) -> Flow:
    """The flow of mail from ``sender`` to ``recipient``.

    A null sender (a bounce) flows towards its recipient: inbound to the organisation,
    outbound otherwise. Mail from outside to outside is ``RELAY``.
    """
    domains = tuple(org_domains)
    rcpt_in = is_inside(domain_of(recipient), domains)
    sender_domain = domain_of(sender)
    if not sender_domain:
        return Flow.INBOUND if rcpt_in else Flow.OUTBOUND
    if is_inside(sender_domain, domains):
        return Flow.INTERNAL if rcpt_in else Flow.OUTBOUND
    return Flow.INBOUND if rcpt_in else Flow.RELAY


def message_direction(sender: str, recipients: Iterable[str], org_domains: Iterable[str]
                      ) -> Direction:
    """The direction of a whole message from its recipients' flows (see :func:`direction_of`)."""
    domains = tuple(org_domains)
    return direction_of({flow_of(sender, r, domains) for r in recipients},
                        sender_inside=is_inside(domain_of(sender), domains))


def direction_of(flows: Iterable[Flow], *, sender_inside: bool) -> Direction:
    """The direction of a message whose recipients have ``flows``.

    Outbound when any recipient is outbound, internal when every recipient is internal,
    inbound otherwise (mail from outside, relayed mail included). Without recipients, the
    sender decides: outbound from inside, inbound from outside.
    """
    found = set(flows)
    if Flow.OUTBOUND in found:
        return Direction.OUTBOUND
    if found == {Flow.INTERNAL}:
        return Direction.INTERNAL
    if not found and sender_inside:
        return Direction.OUTBOUND
    return Direction.INBOUND


def leaves(sender: str, recipients: Iterable[str], org_domains: Iterable[str]) -> bool:
    """True when a recipient lies outside the organisation (outbound or relayed mail)."""
    domains = tuple(org_domains)
    return any(flow_of(sender, r, domains) in LEAVING for r in recipients)
