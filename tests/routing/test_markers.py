"""The EXO marker pattern and the simulation codec's verdicts (notes section 5)."""

from __future__ import annotations

import re

import pytest

from mailroute.marker.token import TOKEN_PATTERN
from mailroute.results import MarkerVerdict
from mailroute.routing import marker_exception_pattern, simulation_markers
from tests.routing.support import NOW, codec, message

TAGS = ["g7k2qd", "abcdef", "zz2345", "a7b7c7"]


def _token(tag: str, *, kid: str = "k1", direction: str = "o") -> str:
    return simulation_markers(tag, "org", kid=kid).mint(message(), direction, NOW)


@pytest.mark.parametrize("tag", TAGS)
def test_exception_pattern_matches_tokens_with_the_configured_tag(tag: str) -> None:
    pattern = re.compile(marker_exception_pattern(tag), re.IGNORECASE)
    for kid in ("a", "k1", "abcdefgh"):
        for direction in "ionx":
            token = _token(tag, kid=kid, direction=direction)
            assert TOKEN_PATTERN.fullmatch(token)
            assert pattern.search(token)
            assert pattern.search("  " + token)  # unanchored: leading whitespace kept by EXO


@pytest.mark.parametrize("tag", TAGS)
def test_exception_pattern_rejects_tokens_with_another_tag(tag: str) -> None:
    pattern = re.compile(marker_exception_pattern(tag), re.IGNORECASE)
    for other in TAGS:
        if other != tag:
            assert not pattern.search(_token(other))


def test_exception_pattern_is_the_documented_literal() -> None:
    assert marker_exception_pattern("g7k2qd") == r"v1\.g7k2qd\."


@pytest.mark.parametrize("tag", ["G7K2QD", "g7k2q", "g7k2qd1", "g7k2q1", "a.b.c.", "g7k2q$"])
def test_exception_pattern_refuses_tags_outside_the_alphabet(tag: str) -> None:
    with pytest.raises(ValueError, match="6 characters"):
        marker_exception_pattern(tag)


def _verdict(values: list[str], now: int = NOW) -> MarkerVerdict:
    return codec().verify(values, message(), now).verdict


def test_fresh_own_marker_is_valid_fresh_with_its_age() -> None:
    token = codec().mint(message(), "o", NOW - 30)
    check = codec().verify([token], message(), NOW)
    assert check.verdict is MarkerVerdict.VALID_FRESH
    assert check.age_seconds == 30


@pytest.mark.parametrize(("age", "verdict"), [
    (3600, MarkerVerdict.VALID_FRESH), (3601, MarkerVerdict.VALID_STALE),
    (7 * 86400 + 1, MarkerVerdict.EXPIRED), (-300, MarkerVerdict.VALID_FRESH),
    (-301, MarkerVerdict.FUTURE)])
def test_age_windows(age: int, verdict: MarkerVerdict) -> None:
    token = codec().mint(message(), "o", NOW - age)
    assert _verdict([token]) is verdict


def test_other_verdicts() -> None:
    token = codec().mint(message(), "o", NOW)
    assert _verdict([]) is MarkerVerdict.MISSING
    assert _verdict([token, token]) is MarkerVerdict.MALFORMED
    assert _verdict([token + "x"]) is MarkerVerdict.MALFORMED
    assert _verdict(["true"]) is MarkerVerdict.MALFORMED
    assert _verdict([_token("abcdef")]) is MarkerVerdict.FOREIGN
    assert _verdict([token.replace(".sim1.", ".sim2.")]) is MarkerVerdict.UNKNOWN_KEY
    assert _verdict([token[:-1] + ("A" if token[-1] != "A" else "B")]) is MarkerVerdict.BAD_MAC


def test_marker_copied_onto_another_message_is_bad_mac() -> None:
    token = codec().mint(message(message_id="<other@example.net>"), "o", NOW)
    assert _verdict([token]) is MarkerVerdict.BAD_MAC
