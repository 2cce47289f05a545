"""Three sample messages through a tenant: internal, outbound and inbound
(``exo-diff --probe``, docs/routing/exo-diff.md).

The senders and recipients come from the topology: the first two mailboxes of the directory
in the gateway's domains, and ``exo_config.probe_recipient`` as the external party.
"""

from __future__ import annotations

from mailroute.item import Envelope
from mailroute.records import record
from mailroute.routing.hop import MessageFacts
from mailroute.routing.match import domain_of, is_subdomain
from mailroute.routing.model import RecipientKind, Tenant
from mailroute.routing.simulate import Origin, Simulation, simulate
from mailroute.routing.topology import Topology

__all__ = ["Probe", "probe"]


@record(frozen=True)
class Probe:
    """One sample message and its simulation."""

    label: str
    simulation: Simulation

    @property
    def verdict(self) -> str:
        """``LOOP``, ``BYPASS`` or ``ok``, as ``simulate`` prints it."""
        sim = self.simulation
        return "LOOP" if sim.loop else "BYPASS" if sim.bypass else "ok"


def probe(topology: Topology, tenant: Tenant, *, now: int) -> tuple[Probe, ...]:
    """Simulate the internal, outbound and inbound sample through ``tenant`` (as it is).

    Returns no probe when the directory has no mailbox in the gateway's domains.
    """
    domains = topology.org_domains
    mailboxes = [r.primary.lower() for r in tenant.directory.recipients
                 if r.kind is RecipientKind.MAILBOX and not r.forwarding_smtp
                 and not r.delivery_failure
                 and any(is_subdomain(domain_of(r.primary), d) for d in domains)]
    if not mailboxes:
        return ()
    inside, other = mailboxes[0], mailboxes[1] if len(mailboxes) > 1 else mailboxes[0]
    outside = topology.exo_config.probe_recipient.lower()
    samples = (("internal", inside, other, Origin.MAILBOX),
               ("outbound", inside, outside, Origin.MAILBOX),
               ("inbound", outside, inside, Origin.INTERNET))
    out: list[Probe] = []
    for label, sender, rcpt, origin in samples:
        message_id = f"<probe.{label}@mailroute.invalid>"
        facts = MessageFacts(headers=(("From", sender), ("Message-ID", message_id)),
                             message_id=message_id, from_addrs=(sender,))
        sim = simulate(Envelope(mail_from=sender, rcpt_to=(rcpt,)), facts, topology,
                       tenant=tenant, origin=origin, now=now)
        out.append(Probe(f"{label} {sender} -> {rcpt}", sim))
    return tuple(out)
