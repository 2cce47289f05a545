"""The values a one-hop decision returns: trace steps and per-recipient routes.

Both :func:`mailroute.routing.decide_exo` and :func:`mailroute.routing.decide_gateway`
explain themselves with :class:`TraceStep` tuples: which step (E1...E6, RES,
R for rules, X for routing, G1...G8; docs/routing/steps.md), which rule or connector, and why.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from mailroute.gateway.decide import GatewayStep
from mailroute.results import Reply

__all__ = ["Route", "RouteKind", "TraceStep", "step"]


class RouteKind(enum.StrEnum):
    """Where one recipient of one copy goes next, or how its journey ends."""

    LOCAL = "deliver"          # mailbox, public folder or group mailbox in EXO
    FORWARD = "forward"        # mailbox forwarding without local copy
    CONNECTOR = "connector"    # an outbound connector (smart host or MX)
    MX = "mx"                  # EOP default egress: the recipient domain's MX
    EXO = "exo"                # the gateway hands the message (back) to Exchange Online
    NDR = "ndr"                # a non-delivery report goes to the sender
    REJECT = "reject"          # refused in the SMTP session
    DROP = "drop"              # deleted silently
    QUARANTINE = "quarantine"  # held for an administrator
    AMBIGUOUS = "ambiguous"    # two connectors of equal specificity: the model picks none

    @property
    def is_terminal(self) -> bool:
        """True when the message does not travel on from here."""
        return self in _TERMINAL


_TERMINAL = frozenset({RouteKind.LOCAL, RouteKind.FORWARD, RouteKind.NDR, RouteKind.REJECT,
                       RouteKind.DROP, RouteKind.QUARANTINE, RouteKind.AMBIGUOUS})


#: One explained step of a decision: the gateway's step type, shared (see GatewayStep).
TraceStep = GatewayStep


def step(step_id: str, detail: str, *, rule: str | None = None,
         connector: str | None = None) -> TraceStep:
    """Build a :class:`TraceStep` (keyword form for readability at call sites)."""
    return TraceStep(step_id, detail, rule, connector)


class Route(NamedTuple):
    """The route of one recipient (immutable; a named tuple for the same reason as TraceStep).

    Attributes:
        recipient: the address the next hop receives (resolved).
        kind: where it goes.
        next_hop: host, domain or mailbox label (``""`` when terminal without a target).
        connector: the outbound connector used, if any.
        reply: the SMTP reply for rejections and NDRs.
        original: the address as the hop received it (before group expansion); ``""`` when
            the same as ``recipient``.
    """

    recipient: str
    kind: RouteKind
    next_hop: str = ""
    connector: str | None = None
    reply: Reply | None = None
    original: str = ""
