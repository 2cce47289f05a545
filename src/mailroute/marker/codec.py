"""The production marker as the routing simulator's :class:`~mailroute.routing.MarkerCodec`.

``simulate(..., markers=RingMarkers(ring))`` runs a simulation with the deployment's real key
ring, token format and verdicts instead of the simulator's stand-in, so that what the
simulator predicts for a topology is what the gateway's filters will decide.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailroute.marker.binding import Binding, normalise_message_id
from mailroute.marker.keyring import KeyRing
from mailroute.marker.mint import RandomSource, mint_token
from mailroute.marker.token import MAX_FIELD_LENGTH
from mailroute.marker.verify import Windows, check_value
from mailroute.results import MarkerVerdict
from mailroute.routing.hop import MessageFacts
from mailroute.routing.markers import MarkerCheck

__all__ = ["RingMarkers", "binding_of_facts"]


def binding_of_facts(message: MessageFacts) -> Binding:
    """The :class:`Binding` of a simulated message (its Message-ID and From addresses)."""
    return Binding(message_id=normalise_message_id(message.message_id),
                   from_addresses=",".join(sorted({a.lower() for a in message.from_addrs})))


@dataclass(frozen=True, slots=True)
class RingMarkers:
    """Mints and verifies with a real :class:`KeyRing` (implements ``MarkerCodec``)."""

    ring: KeyRing
    windows: Windows = field(default_factory=Windows)
    random: RandomSource = secrets.token_bytes

    def mint(self, message: MessageFacts, direction: str, now: int) -> str:
        """A token for ``message``.

        Raises:
            KeyUnavailableError: no key may sign at ``now``.
        """
        return mint_token(self.ring, now=now, direction=direction,
                          binding=binding_of_facts(message), random=self.random).to_str()

    def verify(self, values: Sequence[str], message: MessageFacts, now: int) -> MarkerCheck:
        """The verdict on every value of the marker field (several are malformed)."""
        if not values:
            return MarkerCheck(MarkerVerdict.MISSING)
        if len(values) > 1 or len(values[0]) > MAX_FIELD_LENGTH:
            return MarkerCheck(MarkerVerdict.MALFORMED)
        check = check_value(values[0], self.ring, now=now, windows=self.windows,
                            binding=lambda: binding_of_facts(message))
        return MarkerCheck(check.verdict, check.age_seconds)
