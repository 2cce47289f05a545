"""The token grammar, and the property that no mutation of a valid token verifies."""

from __future__ import annotations

import re

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mailroute.errors import MessageError
from mailroute.item import Direction
from mailroute.marker import (
    DEFAULT_FIELD,
    TOKEN_PATTERN,
    check_message,
    mark,
    normalise_message_id,
    parse_token,
)
from mailroute.marker.binding import from_addresses
from mailroute.marker.token import MAX_FIELD_LENGTH, format_time
from mailroute.mime import parse, parse_addresses
from mailroute.mime.message import Message
from mailroute.results import MarkerVerdict
from tests.marker.helpers import MESSAGE, NOW, TAG, ring

RING = ring()
MARKED, TOKEN = mark(parse(MESSAGE), RING, now=NOW, direction=Direction.OUTBOUND)
VALUE = TOKEN.to_str()
# The regex of notes/exchange-online.md 5.3, copied verbatim: the implementation must agree.
NOTE_REGEX = re.compile(r"^v1\.[a-z2-7]{6}\.[a-z0-9]{1,8}\.[0-9]{10}\.[A-Za-z0-9_-]{16}"
                        r"\.[ionx]\.[A-Za-z0-9_-]{43}$")
ALPHABET = st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=+/ \t:;\"()<>@ü\u00a0")


def carrying(value: str) -> Message:
    return MARKED.replace_header(DEFAULT_FIELD, value)


def test_minted_token_matches_the_note_regex_and_its_parts() -> None:
    assert NOTE_REGEX.fullmatch(VALUE)
    assert len(VALUE) <= 100
    assert (TOKEN.tag, TOKEN.kid, TOKEN.t, TOKEN.d) == (TAG, "k1", str(NOW), "o")
    assert (len(TOKEN.nonce), len(TOKEN.mac)) == (16, 43)
    assert parse_token(VALUE) == TOKEN
    assert TOKEN_PATTERN.fullmatch(VALUE)


def test_two_mints_of_one_message_differ_in_nonce_and_mac() -> None:
    _, again = mark(parse(MESSAGE), RING, now=NOW, direction=Direction.OUTBOUND)
    assert again.nonce != TOKEN.nonce
    assert again.mac != TOKEN.mac


def test_parse_rejects_oversize_values_before_matching() -> None:
    padded = VALUE + " " * (MAX_FIELD_LENGTH - len(VALUE) + 1)
    assert parse_token(padded.strip()) == TOKEN
    assert parse_token(padded) is None


def test_time_field_is_ten_digits() -> None:
    assert format_time(5) == "0000000005"
    for bad in (-1, 10**10):
        try:
            format_time(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


@st.composite
def mutations(draw: st.DrawFn) -> str:
    """The token with one to three edits: replace, insert, delete, duplicate, swap case."""
    text = VALUE
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "duplicate", "case"]))
        i = draw(st.integers(0, max(len(text) - 1, 0)))
        if kind == "replace" and text:
            text = text[:i] + draw(ALPHABET) + text[i + 1:]
        elif kind == "insert":
            text = text[:i] + draw(ALPHABET) + text[i:]
        elif kind == "delete" and text:
            j = draw(st.integers(i + 1, len(text)))
            text = text[:i] + text[j:]
        elif kind == "duplicate" and text:
            j = draw(st.integers(i + 1, len(text)))
            text = text[:j] + text[i:j] + text[j:]
        elif kind == "case" and text:
            text = text[:i] + text[i].swapcase() + text[i + 1:]
    return text


@settings(max_examples=500, deadline=None)
@given(mutations())
def test_no_mutation_of_a_valid_token_verifies(mutated: str) -> None:
    assume(mutated.strip(" \t") != VALUE)
    check = check_message(carrying(mutated), RING, now=NOW)
    assert not check.valid
    assert check.verdict in {MarkerVerdict.MALFORMED, MarkerVerdict.FOREIGN,
                             MarkerVerdict.UNKNOWN_KEY, MarkerVerdict.BAD_MAC,
                             MarkerVerdict.FUTURE, MarkerVerdict.EXPIRED}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=300))
def test_arbitrary_values_never_verify(value: str) -> None:
    check = check_message(carrying(value.strip(" \t") or "x"), RING, now=NOW)
    assert not check.valid


def test_unmutated_token_in_the_same_harness_verifies() -> None:
    # The property above would pass vacuously if the harness broke every token.
    assert check_message(carrying(VALUE), RING, now=NOW).verdict is MarkerVerdict.VALID_FRESH


# -- the fast paths of the binding agree with the general parsers --------------------------

ID_CHARS = st.sampled_from("abcXYZ019.-_+$!<>@ ()\"\\\t")
FROM_CHARS = st.sampled_from("abcXYZ019.-_+ü <>@,;:()\"\\=?\t[]'!#%&*/^`{|}~$")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ID_CHARS, max_size=40))
def test_message_id_fast_path_agrees_with_the_scan(value: str) -> None:
    from mailroute.marker.binding import _scan_message_id

    assert normalise_message_id(value) == _scan_message_id(value)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=FROM_CHARS, max_size=40))
def test_from_fast_path_agrees_with_getaddresses(value: str) -> None:
    message = parse(b"From: " + value.strip(" \t").encode() + b"\r\n\r\n")
    field = message.headers.get("From")
    assert field is not None
    try:
        general = ",".join(sorted(set(parse_addresses(field))))
    except MessageError:
        general = ""
    assert from_addresses(message) == general
