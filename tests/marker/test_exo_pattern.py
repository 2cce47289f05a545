"""The Exchange-side pattern routing generates recognises our markers and nobody else's.

Shared with the routing issue: ``marker_exception_pattern`` is what the generated transport
rules put into ``ExceptIfHeaderMatchesPatterns``, and ``patterns_match`` is routing's model of
how Exchange evaluates it (unanchored, case-insensitive).
"""

from __future__ import annotations

import base64
import re
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from mailroute.item import Direction
from mailroute.marker import (
    DEFAULT_FIELD,
    KeyRing,
    check_message,
    mark,
    parse_key_ring,
    parse_token,
)
from mailroute.marker.binding import Binding
from mailroute.marker.keyring import SIMULATION_SECRET
from mailroute.marker.token import TOKEN_PATTERN
from mailroute.marker.verify import Windows, check_value
from mailroute.mime import parse
from mailroute.mime.headers import HeaderField
from mailroute.results import MarkerVerdict
from mailroute.routing import marker_exception_pattern
from mailroute.routing.hop import MessageFacts
from mailroute.routing.markers import simulation_markers
from mailroute.routing.match import patterns_match
from tests.marker.helpers import MESSAGE, NOW, OTHER_TAG, TAG, ring

RING = ring()
PATTERN = (marker_exception_pattern(TAG),)
TAGS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=6, max_size=6)


def minted_value(key_ring: KeyRing = RING, direction: Direction | None = None) -> str:
    message, _ = mark(parse(MESSAGE), key_ring, now=NOW, direction=direction)
    value = message.headers.value(DEFAULT_FIELD)
    assert value is not None
    return value


def test_pattern_matches_a_freshly_minted_marker() -> None:
    for direction in (None, *Direction):
        value = minted_value(direction=direction)
        assert patterns_match(value, PATTERN)
        assert re.search(PATTERN[0], value, re.IGNORECASE)


def test_pattern_matches_the_field_however_exchange_presents_the_value() -> None:
    message, _ = mark(parse(MESSAGE), RING, now=NOW, direction=None)
    field = message.headers.get(DEFAULT_FIELD)
    assert isinstance(field, HeaderField)
    raw = field.raw_value.decode("ascii")
    for shown in (raw, raw.strip(), "\r\n " + raw.strip(), raw.upper()):
        assert patterns_match(shown, PATTERN), shown


def test_pattern_matches_no_marker_of_another_deployment() -> None:
    assert not patterns_match(minted_value(ring(tag=OTHER_TAG)), PATTERN)


@settings(max_examples=200, deadline=None)
@given(TAGS)
def test_pattern_matches_no_marker_with_any_other_tag(tag: str) -> None:
    value = minted_value(ring(tag=tag))
    assert patterns_match(value, (marker_exception_pattern(tag),))
    if tag != TAG:
        assert not patterns_match(value, PATTERN)
        assert check_message(parse(MESSAGE).with_header(DEFAULT_FIELD, value), RING,
                             now=NOW).verdict is MarkerVerdict.FOREIGN


def test_routing_token_grammar_agrees_with_the_marker_grammar() -> None:
    value = minted_value()
    assert TOKEN_PATTERN.fullmatch(value)
    assert parse_token(value) is not None


def test_routing_simulated_markers_verify_under_the_same_key() -> None:
    """The simulator's default codec is the real marker: a key file holding the simulation
    secret accepts its tokens, so the simulator's verdicts are those the gateway would give."""
    org_id = "11111111-2222-3333-4444-555555555555"
    sim = simulation_markers(TAG, org_id)
    sim_ring = parse_key_ring(tomllib.loads(
        f'tag = "{TAG}"\norg_id = "{org_id}"\n[[key]]\nid = "sim1"\n'
        f'secret = "{base64.b64encode(SIMULATION_SECRET).decode()}"\n'))
    facts = MessageFacts(message_id="<abc.1@Example.NET>", from_addrs=("alice@example.net",))
    token = sim.mint(facts, "o", NOW)
    binding = Binding(message_id="<abc.1@example.net>", from_addresses="alice@example.net")
    check = check_value(token, sim_ring, now=NOW + 5, windows=Windows(), binding=binding)
    assert (check.verdict, check.age_seconds) == (MarkerVerdict.VALID_FRESH, 5)
    assert patterns_match(token, PATTERN)
