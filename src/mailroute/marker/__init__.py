"""The HMAC loop marker (docs/marker.md): a header only this gateway can mint,
which Exchange rules recognise by its deployment tag and the gateway verifies.

- :mod:`~mailroute.marker.token`: the token grammar and its bounded parser.
- :mod:`~mailroute.marker.keyring`: the key file, HKDF derivation, signing and verifying keys.
- :mod:`~mailroute.marker.binding`: the length-prefixed MAC input.
- :mod:`~mailroute.marker.mint` / :mod:`~mailroute.marker.verify`: minting and verdicts.
- :mod:`~mailroute.marker.guard`: the processed-Message-ID store and the Received count.
"""

from mailroute.marker.binding import Binding, binding_of, normalise_message_id
from mailroute.marker.guard import (
    ProcessedStore,
    processed_key,
    received_count,
)
from mailroute.marker.keyring import KeyRing, MarkerKey, load_key_ring, parse_key_ring
from mailroute.marker.mint import DEFAULT_FIELD, direction_code, mark, mint_token
from mailroute.marker.token import TOKEN_PATTERN, Token, parse_token
from mailroute.marker.verify import MarkerCheck, Windows, check_message, check_value

__all__ = [
    "DEFAULT_FIELD",
    "TOKEN_PATTERN",
    "Binding",
    "KeyRing",
    "MarkerCheck",
    "MarkerKey",
    "ProcessedStore",
    "Token",
    "Windows",
    "binding_of",
    "check_message",
    "check_value",
    "direction_code",
    "load_key_ring",
    "mark",
    "mint_token",
    "normalise_message_id",
    "parse_key_ring",
    "parse_token",
    "processed_key",
    "received_count",

]
