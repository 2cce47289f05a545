"""Verification: from the marker fields of a message to one verdict of
docs/marker.md ("Verdicts and gateway actions"), with a reason, the key id and the age.

Order of the checks: field count and size, the grammar (no cryptography before the token
matched it exactly), the deployment tag, the key id, the MAC (constant-time comparison), then
the time: in the future beyond the skew, older than ``max_age``, older than the loop window.
"""

from __future__ import annotations

from collections.abc import Callable

from mailroute.digests import compare_digest
from mailroute.limits import Limits
from mailroute.marker.binding import Binding, binding_of, compute_mac, mac_input
from mailroute.marker.keyring import KeyRing
from mailroute.marker.mint import DEFAULT_FIELD
from mailroute.marker.token import MAX_FIELD_LENGTH, parse_token
from mailroute.mime.message import Message
from mailroute.records import record
from mailroute.results import MarkerVerdict

__all__ = ["MarkerCheck", "Windows", "check_message", "check_value"]


@record(frozen=True, kw_only=True)
class Windows:
    """The time windows of verification, in seconds.

    Attributes:
        max_age: older markers are ``expired`` (default 7 days).
        loop_window: markers at most this old are ``valid-fresh`` (default 1 hour).
        max_future_skew: markers issued later than ``now`` plus this are ``future``.
    """

    max_age: int = 7 * 24 * 3600
    loop_window: int = 3600
    max_future_skew: int = 300

    def __post_init__(self) -> None:
        if min(self.max_age, self.loop_window, self.max_future_skew) < 0:
            raise ValueError("marker time windows must not be negative")


@record(frozen=True)
class MarkerCheck:
    """The result of verifying a message's marker.

    Attributes:
        verdict: one of the verdicts of 5.7.
        reason: a short text in mailroute's own words (never message content or secrets).
        key_id: the key id of a well-formed token of this deployment, else ``None``.
        age_seconds: ``now - t`` once the MAC verified, else ``None``.
    """

    verdict: MarkerVerdict
    reason: str
    key_id: str | None = None
    age_seconds: int | None = None

    @property
    def valid(self) -> bool:
        """True for ``valid-fresh`` and ``valid-stale``."""
        return self.verdict.is_valid

    def to_json(self) -> dict[str, object]:
        """The ``marker verify --json`` object of CLI.md."""
        return {"valid": self.valid, "verdict": self.verdict.value, "reason": self.reason,
                "key_id": self.key_id, "age_seconds": self.age_seconds}


DEFAULT_WINDOWS = Windows()


def check_message(message: Message, ring: KeyRing, *, now: float,
                  windows: Windows = DEFAULT_WINDOWS, field_name: str = DEFAULT_FIELD,
                  limits: Limits | None = None) -> MarkerCheck:
    """Verify the marker fields of ``message``'s top-level header."""
    fields = message.headers.get_all(field_name)
    if not fields:
        return MarkerCheck(MarkerVerdict.MISSING, f"no {field_name} field")
    if len(fields) > 1:
        return MarkerCheck(MarkerVerdict.MALFORMED, f"{len(fields)} marker fields, one expected")
    if len(fields[0].raw) > 4 * MAX_FIELD_LENGTH:  # before unfolding it
        return MarkerCheck(MarkerVerdict.MALFORMED, "marker field is oversize")
    return check_value(fields[0].value, ring, now=now, windows=windows,
                       binding=lambda: binding_of(message, limits))


def check_value(value: str, ring: KeyRing, *, now: float, windows: Windows,
                binding: Binding | Callable[[], Binding]) -> MarkerCheck:
    """Verify one field value against ``binding`` (or a callable computing it on demand)."""
    if len(value) > MAX_FIELD_LENGTH:
        return MarkerCheck(MarkerVerdict.MALFORMED, "marker field is oversize")
    token = parse_token(value)
    if token is None:
        return MarkerCheck(MarkerVerdict.MALFORMED, "marker does not match the v1 format")
    if token.tag != ring.tag:
        return MarkerCheck(MarkerVerdict.FOREIGN, "marker carries another deployment's tag")
    key = ring.verifying_key(token.kid, now)
    if key is None:
        return MarkerCheck(MarkerVerdict.UNKNOWN_KEY, "key id unknown or retired",
                           key_id=token.kid)
    facts = binding if isinstance(binding, Binding) else binding()
    expected = compute_mac(key.mac_key, mac_input(
        tag=token.tag, kid=token.kid, t=token.t, nonce=token.nonce, d=token.d,
        org_id=ring.org_id, binding=facts))
    if not compare_digest(expected.encode("ascii"), token.mac.encode("ascii")):
        return MarkerCheck(MarkerVerdict.BAD_MAC, "MAC does not match this message",
                           key_id=token.kid)
    age = int(now) - token.issued_at
    if age < -windows.max_future_skew:
        return MarkerCheck(MarkerVerdict.FUTURE,
                           f"issued {-age} s in the future (skew allowed "
                           f"{windows.max_future_skew} s)", key_id=token.kid, age_seconds=age)
    if age > windows.max_age:
        return MarkerCheck(MarkerVerdict.EXPIRED,
                           f"age {age} s exceeds max age {windows.max_age} s",
                           key_id=token.kid, age_seconds=age)
    if age > windows.loop_window:
        return MarkerCheck(MarkerVerdict.VALID_STALE,
                           f"age {age} s exceeds loop window {windows.loop_window} s",
                           key_id=token.kid, age_seconds=age)
    return MarkerCheck(MarkerVerdict.VALID_FRESH,
                       f"age {age} s within loop window {windows.loop_window} s",
                       key_id=token.kid, age_seconds=age)

