"""The loop marker as routing sees it: the EXO match pattern, and the real marker as a codec.

The gateway decision needs the marker verdicts and a fresh marker for every message it hands
back to EXO. It gets both from a :class:`MarkerCodec`; :class:`RingMarkers` is the production
marker of :mod:`mailroute.marker` (token grammar, HKDF keys, binding, verdicts) over a
:class:`~mailroute.marker.keyring.KeyRing`: a deployment's real ring, or the fixed simulation
ring of :func:`simulation_markers`. There is no second implementation of the marker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from mailroute.marker.binding import Binding, normalise_message_id
from mailroute.marker.keyring import KeyRing, fixed_key_ring
from mailroute.marker.mint import RandomSource, mint_value
from mailroute.marker.token import MAX_FIELD_LENGTH, TAG_PATTERN
from mailroute.marker.verify import MarkerCheck, Windows, check_value
from mailroute.records import field, record
from mailroute.results import MarkerVerdict

if TYPE_CHECKING:
    from mailroute.routing.hop import MessageFacts

__all__ = [
    "MarkerCodec",
    "RingMarkers",
    "binding_of_facts",
    "marker_exception_pattern",
    "simulation_markers",
]


def marker_exception_pattern(tag: str) -> str:
    """The pattern EXO rules use to recognise this deployment's marker: ``v1\\.<tag>\\.``.

    Unanchored on purpose: leading whitespace EXO might keep in a value must not turn every
    returning message into a loop. Raises ``ValueError`` for a tag outside ``[a-z2-7]{6}``, so
    that the pattern never contains regex syntax from configuration.
    """
    if not TAG_PATTERN.fullmatch(tag):
        raise ValueError("marker tag must be 6 characters a-z, 2-7")
    return rf"v1\.{tag}\."


class MarkerCodec(Protocol):
    """What the gateway decision needs from the marker implementation."""

    def verify(self, values: Sequence[str], message: MessageFacts, now: int) -> MarkerCheck:
        """Verify every value of the marker field of ``message`` (several -> MALFORMED)."""
        ...

    def mint(self, message: MessageFacts, direction: str, now: int) -> str:
        """A fresh token for ``message``; ``direction`` is ``i``, ``o``, ``n`` or ``x``."""
        ...


def binding_of_facts(message: MessageFacts) -> Binding:
    """The :class:`Binding` of a simulated message (its Message-ID and From addresses)."""
    return Binding(message_id=normalise_message_id(message.message_id),
                   from_addresses=",".join(sorted({a.lower() for a in message.from_addrs})))


@record(frozen=True)
class RingMarkers:
    """Mints and verifies with a real :class:`KeyRing` (implements ``MarkerCodec``)."""

    ring: KeyRing
    windows: Windows = field(default_factory=Windows)
    random: RandomSource | None = None

    def mint(self, message: MessageFacts, direction: str, now: int) -> str:
        """A token for ``message``.

        Raises:
            KeyUnavailableError: no key may sign at ``now``.
        """
        random = self.random or _repeatable_nonces(message, direction, now)
        return mint_value(self.ring, now=now, direction=direction,
                          binding=binding_of_facts(message), random=random)

    def verify(self, values: Sequence[str], message: MessageFacts, now: int) -> MarkerCheck:
        """The verdict on every value of the marker field (several are malformed)."""
        if not values:
            return MarkerCheck(MarkerVerdict.MISSING, "no marker field")
        if len(values) > 1:
            return MarkerCheck(MarkerVerdict.MALFORMED, f"{len(values)} marker fields, "
                                                        "one expected")
        if len(values[0]) > MAX_FIELD_LENGTH:
            return MarkerCheck(MarkerVerdict.MALFORMED, "marker field is oversize")
        return check_value(values[0], self.ring, now=now, windows=self.windows,
                           binding=lambda: binding_of_facts(message))


def _repeatable_nonces(message: MessageFacts, direction: str, now: int) -> RandomSource:
    """A nonce derived from the inputs, so that a simulation prints the same tokens each run
    (a token has one nonce, so one seed per mint is enough)."""
    digest = hashlib.sha256(f"{message.message_id}|{direction}|{now}".encode()).digest()
    return lambda size: digest[:size]


@lru_cache(maxsize=64)
def simulation_markers(tag: str, org_id: str, *, windows: Windows | None = None,
                       kid: str = "sim1") -> RingMarkers:
    """The real marker over the fixed simulation ring (:func:`fixed_key_ring`).

    This is the simulator's default codec: genuine tokens of the deployment's tag and org id,
    minted with repeatable nonces, under a key that is public and never used by a gateway.
    Codecs are immutable, so one is made per set of arguments (the key derivation is the
    expensive part).
    """
    return RingMarkers(fixed_key_ring(tag, org_id, kid=kid), windows or Windows())
