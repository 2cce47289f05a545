"""Scenario facts: what a topology alone cannot state (docs/routing/scenario.md).

A :class:`Scenario` adds to one simulation: recipients whose delivery fails (Exchange
writes an NDR), the gateway's own verdict per recipient (refuse, or change the message:
sign, encrypt), further services in the chain with their own connectors and rules (a
signature service, an archive), delays before a node's n-th visit (the clock advances, so
marker age and rule activation change), further tenants on the same EOP (with a shared
gateway when their gateway host names are equal), and whether the tenant's rules are taken
as they are instead of regenerated. :mod:`.scenario_load` reads it from a TOML file.
"""

from __future__ import annotations

import enum

from mailroute.gateway.flow import Flow
from mailroute.records import record, replace
from mailroute.routing.hop import MessageFacts, MessageFlag
from mailroute.routing.model import Recipient, RecipientKind, Tenant, parse_reply
from mailroute.routing.topology import Topology

__all__ = [
    "Delay",
    "DeliveryFailure",
    "GatewayAction",
    "Scenario",
    "ScenarioMessage",
    "Service",
    "ServiceReturn",
    "parse_reply",
]

_ORIGINS = ("mailbox", "internet", "direct", "gateway")  # simulate.Origin's values


@record(frozen=True, kw_only=True)
class DeliveryFailure:
    """Delivery to this mailbox fails after the last rule pass: Exchange writes an NDR.

    Args:
        address: a directory mailbox (any of its proxy addresses).
        reply: the NDR's status, e.g. ``552 5.2.2 mailbox full`` or ``550 5.2.2 quota``.
    """

    address: str
    reply: str = "552 5.2.2 Mailbox full"

    def __post_init__(self) -> None:
        parse_reply(self.reply)


@record(frozen=True, kw_only=True)
class GatewayAction:
    """The gateway's own verdict for some recipients (G6): refuse, or change the message.

    Args:
        recipients: the recipients it applies to (empty: all).
        flows: the directions it applies to (empty: all).
        reject: refuse these recipients in the session with this reply (``encrypt or
            reject`` without a certificate), e.g. ``550 5.7.1 no certificate``.
        set_flags / clear_flags: message facts the gateway's change sets or clears (it
            signs: ``signed``; it encrypts: ``encrypted``; it decrypts: clear ``encrypted``).
    """

    recipients: tuple[str, ...] = ()
    flows: tuple[Flow, ...] = ()
    reject: str | None = None
    set_flags: tuple[MessageFlag, ...] = ()
    clear_flags: tuple[MessageFlag, ...] = ()

    def __post_init__(self) -> None:
        if self.reject is not None:
            if not parse_reply(self.reject).code >= 400:
                raise ValueError("reject needs a 4xx or 5xx reply")
            if self.set_flags or self.clear_flags:
                raise ValueError("an action either rejects or changes the message")

    def applies(self, flow: Flow, recipient: str) -> bool:
        """True when this action covers ``recipient`` on a ``flow`` pass."""
        return (not self.flows or flow in self.flows) and (
            not self.recipients or recipient.lower() in (r.lower() for r in self.recipients))


class ServiceReturn(enum.StrEnum):
    """Where a service sends the message it processed."""

    EXO = "exo"  # back to the tenant's smart host (signature services, DLP appliances)
    MX = "mx"    # on to the recipient's MX (an outbound relay)


@record(frozen=True, kw_only=True)
class Service:
    """A third-party service in the chain (docs/routing/scenario.md).

    Exchange reaches it through an outbound connector whose smart host is ``hostname``;
    it returns the message as ``tls_identity`` from ``egress_ip`` (so an inbound connector
    of the tenant identifies it), after setting ``set_headers`` (its "processed" header).
    The connectors and the rule routing to it are the tenant's own objects.
    """

    name: str
    hostname: str
    tls_identity: str
    egress_ip: str
    set_headers: tuple[tuple[str, str], ...] = ()
    returns: ServiceReturn = ServiceReturn.EXO


@record(frozen=True, kw_only=True)
class Delay:
    """The clock advances by ``seconds`` before the ``visit``-th visit of node ``at``.

    ``at`` is ``exo``, ``gateway`` or ``service:NAME``; visits are counted over the whole
    simulation from 1 (a gateway outage that makes Exchange's queue retry hours later is
    a delay before the gateway's visit).
    """

    at: str
    seconds: int
    visit: int = 1

    def __post_init__(self) -> None:
        if self.seconds < 0 or self.visit < 1:
            raise ValueError("seconds must be >= 0 and visit >= 1")
        if not (self.at in ("exo", "gateway") or self.at.startswith("service:")):
            raise ValueError("at must be exo, gateway or service:NAME")


@record(frozen=True, kw_only=True)
class ScenarioMessage:
    """The message a scenario file simulates (the ``simulate`` flags, as a table)."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    origin: str = "mailbox"
    flags: tuple[MessageFlag, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    message_id: str = "<scenario@mailroute.invalid>"
    now: int = 1_800_000_000

    def __post_init__(self) -> None:
        if self.origin not in _ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(_ORIGINS)}")
        if not self.rcpt_to:
            raise ValueError("rcpt_to needs at least one recipient")

    def facts(self) -> MessageFacts:
        """The message facts (From from ``mail_from`` unless a From header is given)."""
        headers = self.headers
        if not any(k.lower() == "from" for k, _ in headers) and self.mail_from:
            headers = (("From", self.mail_from), *headers)
        headers = (*headers, ("Message-ID", self.message_id))
        return MessageFacts(headers=headers, message_id=self.message_id,
                            from_addrs=(self.mail_from.lower(),) if self.mail_from else (),
                            flags=frozenset(self.flags))


@record(frozen=True, kw_only=True)
class Scenario:
    """Everything a simulation adds to the topology (all parts optional).

    Args:
        delivery_failures: mailboxes whose delivery fails.
        gateway_actions: the gateway's verdicts and changes, first match per recipient.
        services: further services, found by their host name.
        delays: clock advances before node visits.
        tenants: further tenants (topology and tenant as simulated) on the same EOP.
    """

    delivery_failures: tuple[DeliveryFailure, ...] = ()
    gateway_actions: tuple[GatewayAction, ...] = ()
    services: tuple[Service, ...] = ()
    delays: tuple[Delay, ...] = ()
    tenants: tuple[tuple[Topology, Tenant], ...] = ()

    def action(self, flow: Flow, recipient: str) -> GatewayAction | None:
        """The first gateway action that covers ``recipient`` on a ``flow`` pass."""
        return next((a for a in self.gateway_actions if a.applies(flow, recipient)), None)

    def service_for(self, host: str) -> Service | None:
        """The service whose host name is ``host``."""
        return next((s for s in self.services if s.hostname.lower() == host.lower()), None)

    def with_failures(self, tenant: Tenant) -> Tenant:
        """``tenant`` with this scenario's delivery failures on its mailboxes.

        Raises:
            ValueError: a failure names an address that is not a mailbox of ``tenant``.
        """
        mine = [f for f in self.delivery_failures if tenant.directory.lookup(f.address)]
        if not mine:
            return tenant
        failing = {}
        for f in mine:
            entry = tenant.directory.lookup(f.address)
            if entry is None or entry.kind is not RecipientKind.MAILBOX:
                raise ValueError(f"{f.address} is not a mailbox")
            failing[entry.primary.lower()] = f.reply
        recipients: list[Recipient] = [
            replace(r, delivery_failure=failing[r.primary.lower()])
            if r.primary.lower() in failing else r for r in tenant.directory.recipients]
        return replace(tenant, directory=replace(tenant.directory, recipients=tuple(recipients)))
