"""Minting: the newest key allowed to sign makes one token for one message.

A message without a Message-ID gets one first, because the MAC binds it; the token then
replaces every marker field the message carried, so a message leaving the gateway carries
exactly one marker, and it verifies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from mailroute.errors import TemporaryError
from mailroute.item import Direction
from mailroute.limits import Limits
from mailroute.marker.binding import Binding, binding_of, compute_mac, mac_input
from mailroute.marker.keyring import KeyRing
from mailroute.marker.token import NONCE_BYTES, VERSION, Token, b64url_encode, format_time
from mailroute.mime.headers import HeaderField, make_field
from mailroute.mime.message import Message

__all__ = [
    "DEFAULT_FIELD",
    "RandomSource",
    "direction_code",
    "ensure_message_id",
    "is_host_name",
    "mark",
    "marker_field",
    "message_id_domain",
    "mint_token",
    "mint_value",
]

DEFAULT_FIELD = "X-Mailroute-Mark"
RandomSource = Callable[[int], bytes]  # os.urandom, which secrets.token_bytes is
_HOST = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
_CODES = {Direction.INBOUND: "i", Direction.OUTBOUND: "o", Direction.INTERNAL: "n"}


def direction_code(direction: Direction | None) -> str:
    """``i``, ``o`` or ``n``; ``x`` when the direction is mixed or unknown."""
    return _CODES.get(direction, "x") if direction is not None else "x"


def message_id_domain(ring: KeyRing, configured: str | None = None) -> str:
    """The domain for a generated Message-ID: ``configured``, else the ring's org id when it
    is a host name, else ``<tag>.mailroute.invalid``."""
    if configured:
        return configured
    if is_host_name(ring.org_id):
        return ring.org_id.lower()
    return f"{ring.tag}.mailroute.invalid"


def is_host_name(text: str) -> bool:
    """True for a dotted DNS host name."""
    return _HOST.fullmatch(text) is not None


def ensure_message_id(message: Message, domain: str,
                      random: RandomSource = os.urandom) -> Message:
    """``message`` with a ``Message-ID: <random@domain>`` added when it has none."""
    if message.headers.get("Message-ID") is not None:
        return message
    local = random(16).hex()
    return message.with_header("Message-ID", f"<{local}@{domain}>")


def mint_token(ring: KeyRing, *, now: float, direction: str, binding: Binding,
               random: RandomSource = os.urandom) -> Token:
    """A token for ``binding``, signed with the ring's signing key at ``now``.

    Raises:
        KeyUnavailableError: no key may sign at ``now``.
        TemporaryError: the clock is outside the range the token can express.
    """
    return Token(*_fields(ring, now, direction, binding, random))


def mint_value(ring: KeyRing, *, now: float, direction: str, binding: Binding,
               random: RandomSource = os.urandom) -> str:
    """The field value :func:`mint_token` would give, without building the token object
    (the routing simulator mints at every gateway pass)."""
    return ".".join((VERSION, *_fields(ring, now, direction, binding, random)))


def _fields(ring: KeyRing, now: float, direction: str, binding: Binding,
            random: RandomSource) -> tuple[str, str, str, str, str, str]:
    """tag, kid, t, nonce, d and mac of a new token."""
    key = ring.signing_key(now)
    try:
        t = format_time(int(now))
    except ValueError as exc:
        raise TemporaryError("clock outside the range of the marker time field") from exc
    nonce = b64url_encode(random(NONCE_BYTES))
    data = mac_input(tag=ring.tag, kid=key.kid, t=t, nonce=nonce, d=direction,
                     org_id=ring.org_id, binding=binding)
    return ring.tag, key.kid, t, nonce, direction, compute_mac(key.mac_key, data)


def mark(message: Message, ring: KeyRing, *, now: float, direction: Direction | None,
         field_name: str = DEFAULT_FIELD, id_domain: str | None = None,
         limits: Limits | None = None, random: RandomSource = os.urandom,
         ) -> tuple[Message, Token]:
    """Add a Message-ID if missing, remove every ``field_name`` field, add one new marker.

    Returns the marked message and its token.

    Raises:
        KeyUnavailableError: no key may sign at ``now`` (the message is left unmarked).
    """
    ring.signing_key(now)  # refuse before changing anything
    message = ensure_message_id(message, message_id_domain(ring, id_domain), random)
    token = mint_token(ring, now=now, direction=direction_code(direction),
                       binding=binding_of(message, limits), random=random)
    message = message.without_header(field_name).with_field(
        marker_field(field_name, token, message.newline))
    return message, token


def marker_field(name: str, token: Token, newline: bytes = b"\r\n") -> HeaderField:
    """The marker field: one line, since the token has no white space to fold at.

    Raises:
        UnsafeHeaderValueError: ``name`` is not a valid field name.
    """
    return make_field(name, token.to_str(), newline=newline)
