"""The loop marker as routing sees it: the EXO match pattern and a pluggable verifier.

The gateway decision (:func:`mailroute.routing.decide_gateway`) needs the verdicts of section
5.7 and a fresh marker for every message it hands back to EXO. It gets both from a
:class:`MarkerCodec`. mailroute's marker filter is the production codec;
:class:`SimulatedMarkers` is a self-contained stand-in with the token format of section 5.3
and the MAC binding of section 5.4 under a fixed simulation key, so that the simulator and
the tests can mint genuine, stale, forged, foreign and replayed markers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from mailroute.results import MarkerVerdict

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mailroute.routing.hop import MessageFacts

__all__ = [
    "MARKER_TOKEN_RE",
    "MarkerCheck",
    "MarkerCodec",
    "SimulatedMarkers",
    "marker_exception_pattern",
]

#: The full-match token grammar of section 5.3 (the gateway's parser).
MARKER_TOKEN_RE = re.compile(
    r"^v1\.([a-z2-7]{6})\.([a-z0-9]{1,8})\.([0-9]{10})\.([A-Za-z0-9_-]{16})\.([ionx])"
    r"\.([A-Za-z0-9_-]{43})$")
_TAG_RE = re.compile(r"^[a-z2-7]{6}$")
_MAX_VALUE = 256


def marker_exception_pattern(tag: str) -> str:
    """The pattern EXO rules use to recognise this deployment's marker: ``v1\\.<tag>\\.``.

    Unanchored on purpose (section 5.3): leading whitespace EXO might keep in a value must not
    turn every returning message into a loop. Raises ``ValueError`` for a tag outside
    ``[a-z2-7]{6}``, so that the pattern never contains regex syntax from configuration.
    """
    if not _TAG_RE.match(tag):
        raise ValueError("marker tag must be 6 characters a-z, 2-7")
    return rf"v1\.{tag}\."


@dataclass(frozen=True, slots=True)
class MarkerCheck:
    """A verification result: the verdict and, for verdicts with a valid MAC, the age."""

    verdict: MarkerVerdict
    age_seconds: int | None = None


class MarkerCodec(Protocol):
    """What the gateway decision needs from the marker implementation."""

    def verify(self, values: Sequence[str], message: MessageFacts, now: int) -> MarkerCheck:
        """Verify every value of the marker field of ``message`` (several -> MALFORMED)."""
        ...

    def mint(self, message: MessageFacts, direction: str, now: int) -> str:
        """A fresh token for ``message``; ``direction`` is ``i``, ``o``, ``n`` or ``x``."""
        ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _lp(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


@lru_cache(maxsize=64)
def _derive(secret: bytes, kid: str) -> bytes:
    """HKDF-SHA256 (RFC 5869, empty salt, one block) of section 5.4."""
    prk = hmac.new(b"\x00" * 32, secret, hashlib.sha256).digest()
    info = b"mailroute/mark/v1/" + kid.encode("ascii")
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def _normal_message_id(message_id: str) -> str:
    compact = "".join(message_id.split())
    local, at, domain = compact.rpartition("@")
    return f"{local}{at}{domain.lower()}" if at else compact


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedMarkers:
    """A marker codec for simulations and tests (one key, id ``kid``, fixed secret).

    Args:
        tag: the deployment tag.
        org_id: the tenant id bound into the MAC.
        loop_window_s: age up to which a valid marker is ``VALID_FRESH``.
        max_age_s: age after which it is ``EXPIRED``.
        max_future_skew_s: tolerated clock skew.
        kid: the key id.
        secret: the simulation key (not a secret: simulations only).
    """

    tag: str
    org_id: str
    loop_window_s: int = 3600
    max_age_s: int = 7 * 86400
    max_future_skew_s: int = 300
    kid: str = "sim1"
    secret: bytes = b"mailroute simulation key, not for production use"

    def _key(self) -> bytes:
        return _derive(self.secret, self.kid)

    def _mac(self, fields: tuple[str, ...], message: MessageFacts) -> str:
        data = b"mailroute-mark\x00" + b"".join(_lp(f) for f in fields)
        data += _lp(self.org_id) + _lp(_normal_message_id(message.message_id))
        data += _lp(",".join(sorted(a.lower() for a in message.from_addrs)))
        return _b64(hmac.new(self._key(), data, hashlib.sha256).digest())

    def mint(self, message: MessageFacts, direction: str, now: int) -> str:
        """A genuine token; the nonce is derived from the inputs (simulations are repeatable)."""
        seed = f"{message.message_id}|{direction}|{now}".encode()
        nonce = _b64(hashlib.sha256(seed).digest()[:12])
        fields = ("1", self.tag, self.kid, f"{now:010d}", nonce, direction)
        return f"v1.{self.tag}.{self.kid}.{now:010d}.{nonce}.{direction}." + self._mac(
            fields, message)

    def verify(self, values: Sequence[str], message: MessageFacts, now: int) -> MarkerCheck:
        """Section 5.7 verdicts."""
        if not values:
            return MarkerCheck(MarkerVerdict.MISSING)
        value = values[0].strip()
        if len(values) > 1 or len(value) > _MAX_VALUE:
            return MarkerCheck(MarkerVerdict.MALFORMED)
        parsed = MARKER_TOKEN_RE.match(value)
        if parsed is None:
            return MarkerCheck(MarkerVerdict.MALFORMED)
        tag, kid, issued, nonce, direction, mac = parsed.groups()
        if tag != self.tag:
            return MarkerCheck(MarkerVerdict.FOREIGN)
        if kid != self.kid:
            return MarkerCheck(MarkerVerdict.UNKNOWN_KEY)
        age = now - int(issued)
        if age < -self.max_future_skew_s:
            return MarkerCheck(MarkerVerdict.FUTURE)
        expected = self._mac(("1", tag, kid, issued, nonce, direction), message)
        if not hmac.compare_digest(expected, mac):
            return MarkerCheck(MarkerVerdict.BAD_MAC)
        if age > self.max_age_s:
            return MarkerCheck(MarkerVerdict.EXPIRED, age)
        if age > self.loop_window_s:
            return MarkerCheck(MarkerVerdict.VALID_STALE, age)
        return MarkerCheck(MarkerVerdict.VALID_FRESH, max(age, 0))
