"""Every verdict of notes/exchange-online.md 5.7, rotation, replay and Exchange-like relaying."""

from __future__ import annotations

import pytest

from mailroute.item import Direction
from mailroute.marker import (
    DEFAULT_FIELD,
    Binding,
    KeyRing,
    Windows,
    binding_of,
    check_message,
    mark,
    normalise_message_id,
    parse_token,
)
from mailroute.marker.binding import mac_input
from mailroute.mime import build_leaf, parse
from mailroute.mime.message import Message
from mailroute.results import MarkerVerdict
from tests.marker.helpers import (
    DAY,
    HOUR,
    MESSAGE,
    NOW,
    OTHER_MESSAGE,
    OTHER_TAG,
    SECRET_A_B64,
    SECRET_B_B64,
    ring,
)

RING = ring()


def marked(data: bytes = MESSAGE, *, now: float = NOW) -> Message:
    message, _ = mark(parse(data), RING, now=now, direction=Direction.OUTBOUND)
    return message


def token_of(message: Message) -> str:
    value = message.headers.value(DEFAULT_FIELD)
    assert value is not None
    return value


def with_token(message: Message, token: str) -> Message:
    return message.without_header(DEFAULT_FIELD).with_header(DEFAULT_FIELD, token)


def verdict(message: Message, *, now: float = NOW, windows: Windows | None = None,
            key_ring: KeyRing = RING) -> MarkerVerdict:
    return check_message(message, key_ring, now=now, windows=windows or Windows()).verdict


# -- the verdicts ---------------------------------------------------------------------------

def test_fresh_marker_is_valid_fresh_with_key_and_age() -> None:
    check = check_message(marked(), RING, now=NOW + 60)
    assert check.verdict is MarkerVerdict.VALID_FRESH
    assert (check.key_id, check.age_seconds, check.valid) == ("k1", 60, True)


def test_marker_older_than_loop_window_is_valid_stale() -> None:
    assert verdict(marked(), now=NOW + HOUR) is MarkerVerdict.VALID_FRESH
    assert verdict(marked(), now=NOW + HOUR + 1) is MarkerVerdict.VALID_STALE


def test_marker_older_than_max_age_is_expired_and_not_valid() -> None:
    check = check_message(marked(), RING, now=NOW + 7 * DAY + 1)
    assert check.verdict is MarkerVerdict.EXPIRED
    assert not check.valid
    assert verdict(marked(), now=NOW + 7 * DAY) is MarkerVerdict.VALID_STALE


def test_message_without_marker_is_missing() -> None:
    check = check_message(parse(MESSAGE), RING, now=NOW)
    assert (check.verdict, check.key_id, check.age_seconds) == (MarkerVerdict.MISSING, None, None)


def test_marker_from_another_deployment_is_foreign() -> None:
    theirs = ring(tag=OTHER_TAG)
    message, _ = mark(parse(MESSAGE), theirs, now=NOW, direction=None)
    assert verdict(message) is MarkerVerdict.FOREIGN
    assert verdict(message, key_ring=theirs) is MarkerVerdict.VALID_FRESH


def test_same_secret_in_another_org_gives_bad_mac() -> None:
    other_org = ring(org_id="other.example")
    message, _ = mark(parse(MESSAGE), other_org, now=NOW, direction=None)
    assert verdict(message) is MarkerVerdict.BAD_MAC


def test_key_id_not_in_ring_is_unknown_key() -> None:
    other_kid = ring(keys=({"id": "k9", "secret": SECRET_A_B64},))
    message, _ = mark(parse(MESSAGE), other_kid, now=NOW, direction=None)
    check = check_message(message, RING, now=NOW)
    assert (check.verdict, check.key_id) == (MarkerVerdict.UNKNOWN_KEY, "k9")


def test_future_timestamp_beyond_skew_is_future() -> None:
    message = marked(now=NOW + 301)
    assert verdict(message, now=NOW) is MarkerVerdict.FUTURE
    assert verdict(marked(now=NOW + 300), now=NOW) is MarkerVerdict.VALID_FRESH
    assert not check_message(message, RING, now=NOW).valid


def test_marker_copied_onto_another_message_is_bad_mac() -> None:
    stolen = token_of(marked())
    victim = with_token(parse(OTHER_MESSAGE), stolen)
    assert verdict(victim) is MarkerVerdict.BAD_MAC


def test_marker_on_same_message_id_with_another_from_is_bad_mac() -> None:
    message = marked()
    forged = message.replace_header("From", "Mallory <mallory@example.org>")
    assert verdict(forged) is MarkerVerdict.BAD_MAC


def test_removed_message_id_is_bad_mac() -> None:
    assert verdict(marked().without_header("Message-ID")) is MarkerVerdict.BAD_MAC


def test_secret_of_another_key_gives_bad_mac() -> None:
    impostor = ring(keys=({"id": "k1", "secret": SECRET_B_B64},))
    message, _ = mark(parse(MESSAGE), impostor, now=NOW, direction=None)
    assert verdict(message) is MarkerVerdict.BAD_MAC


@pytest.mark.parametrize("value", [
    "",
    "true",
    "v1",
    "v2.g7k2qd.k1.1790000000.AAAAAAAAAAAAAAAA.o." + "A" * 43,
    "v1.g7k2qd.k1.179000000.AAAAAAAAAAAAAAAA.o." + "A" * 43,       # 9-digit time
    "v1.g7k2qd.k1.1790000000.AAAAAAAAAAAAAAA.o." + "A" * 43,        # 15-char nonce
    "v1.g7k2qd.k1.1790000000.AAAAAAAAAAAAAAAA.q." + "A" * 43,       # unknown direction
    "v1.g7k2qd.k1.1790000000.AAAAAAAAAAAAAAAA.o." + "A" * 42,       # short mac
    "v1.g7k2qd.toolongkid.1790000000.AAAAAAAAAAAAAAAA.o." + "A" * 43,
    "v1.g7k2qd.k1.1790000000.AAAAAAAAAAAAAAA=.o." + "A" * 43,        # padding
    "x" * 300,
])
def test_values_outside_the_grammar_are_malformed(value: str) -> None:
    assert verdict(with_token(parse(MESSAGE), value)) is MarkerVerdict.MALFORMED


def test_truncated_marker_is_malformed() -> None:
    token = token_of(marked())
    for cut in (1, 10, 43, 44, len(token) - 1):
        assert verdict(with_token(marked(), token[:-cut])) is MarkerVerdict.MALFORMED


def test_duplicated_field_makes_both_malformed() -> None:
    message = marked()
    doubled = message.with_header(DEFAULT_FIELD, token_of(message), position="bottom")
    assert verdict(doubled) is MarkerVerdict.MALFORMED


def test_two_valid_markers_of_two_messages_are_malformed() -> None:
    message = marked()
    doubled = message.with_header(DEFAULT_FIELD, token_of(marked(OTHER_MESSAGE)))
    assert verdict(doubled) is MarkerVerdict.MALFORMED


def test_duplicated_token_in_one_field_is_malformed() -> None:
    token = token_of(marked())
    assert verdict(with_token(marked(), f"{token} {token}")) is MarkerVerdict.MALFORMED
    assert verdict(with_token(marked(), token + token)) is MarkerVerdict.MALFORMED


def test_upper_cased_fields_are_malformed_or_bad_mac() -> None:
    token = token_of(marked())
    parts = token.split(".")
    for index in range(len(parts)):
        changed = parts.copy()
        changed[index] = changed[index].swapcase()
        if changed[index] == parts[index]:  # all digits: nothing to change
            continue
        expected = (MarkerVerdict.BAD_MAC if index in (4, 6) else MarkerVerdict.MALFORMED)
        assert verdict(with_token(marked(), ".".join(changed))) is expected, index


def test_field_name_is_case_insensitive_and_surrounding_space_is_ignored() -> None:
    message = marked()
    token = token_of(message)
    relaid = message.without_header(DEFAULT_FIELD).with_header("x-mailroute-mark", f"  {token}")
    assert verdict(relaid) is MarkerVerdict.VALID_FRESH


def test_oversize_field_is_malformed_before_parsing() -> None:
    message = with_token(parse(MESSAGE), "v1." + "a" * 1500)
    check = check_message(message, RING, now=NOW)
    assert check.verdict is MarkerVerdict.MALFORMED
    assert "oversize" in check.reason


# -- time windows and replay --------------------------------------------------------------

def test_replay_past_the_loop_window_is_stale_and_past_max_age_expired() -> None:
    harvested = token_of(marked())
    replayed = with_token(parse(MESSAGE), harvested)
    assert verdict(replayed, now=NOW + 2 * HOUR) is MarkerVerdict.VALID_STALE
    assert verdict(replayed, now=NOW + 8 * DAY) is MarkerVerdict.EXPIRED


def test_windows_are_configurable() -> None:
    windows = Windows(max_age=100, loop_window=10, max_future_skew=0)
    assert verdict(marked(), now=NOW + 10, windows=windows) is MarkerVerdict.VALID_FRESH
    assert verdict(marked(), now=NOW + 11, windows=windows) is MarkerVerdict.VALID_STALE
    assert verdict(marked(), now=NOW + 101, windows=windows) is MarkerVerdict.EXPIRED
    assert verdict(marked(now=NOW + 1), now=NOW, windows=windows) is MarkerVerdict.FUTURE


# -- rotation -----------------------------------------------------------------------------

ROTATING = ring(keys=(
    {"id": "old", "secret": SECRET_A_B64, "sign_until": NOW, "verify_until": NOW + 7 * DAY},
    {"id": "new", "secret": SECRET_B_B64, "not_before": NOW},
))


def test_old_key_signs_until_sign_until_then_the_new_one() -> None:
    assert ROTATING.signing_key(NOW - 1).kid == "old"
    assert ROTATING.signing_key(NOW).kid == "new"
    _, before = mark(parse(MESSAGE), ROTATING, now=NOW - 1, direction=None)
    _, after = mark(parse(MESSAGE), ROTATING, now=NOW, direction=None)
    assert (before.kid, after.kid) == ("old", "new")


def test_old_key_verifies_until_verify_until_then_is_unknown() -> None:
    message, _ = mark(parse(MESSAGE), ROTATING, now=NOW - 1, direction=None)
    assert verdict(message, now=NOW + DAY, key_ring=ROTATING) is MarkerVerdict.VALID_STALE
    assert verdict(message, now=NOW + 7 * DAY - 1, key_ring=ROTATING) is MarkerVerdict.VALID_STALE
    assert verdict(message, now=NOW + 7 * DAY, key_ring=ROTATING) is MarkerVerdict.UNKNOWN_KEY


def test_new_key_distributed_before_not_before_already_verifies() -> None:
    early = ring(keys=({"id": "new", "secret": SECRET_B_B64, "not_before": NOW + HOUR},))
    message, _ = mark(parse(MESSAGE), ROTATING, now=NOW + HOUR, direction=None)
    assert verdict(message, now=NOW + HOUR, key_ring=early) is MarkerVerdict.VALID_FRESH


def test_latest_not_before_wins_among_keys_that_may_sign() -> None:
    overlapping = ring(keys=(
        {"id": "b", "secret": SECRET_A_B64, "not_before": NOW - DAY},
        {"id": "a", "secret": SECRET_B_B64, "not_before": NOW - HOUR},
        {"id": "c", "secret": SECRET_B_B64, "not_before": NOW + HOUR},
    ))
    assert overlapping.signing_key(NOW).kid == "a"
    assert overlapping.signing_key(NOW + HOUR).kid == "c"


# -- what the MAC binds, and Exchange-like relaying ----------------------------------------

def test_message_id_normalisation() -> None:
    assert normalise_message_id(" <Abc.Def@Mail.Example.NET> ") == "<Abc.Def@mail.example.net>"
    assert normalise_message_id("(comment) <a (inner (nested)) b@X.ORG>") == "<ab@x.org>"
    assert normalise_message_id('<"Q @x"@Y>') == '<"Q @x"@y>'


def test_binding_sorts_and_lower_cases_from_addresses() -> None:
    message = parse(b"From: B <b@Example.NET>, a@example.ORG\r\nMessage-ID: <1@h>\r\n\r\n")
    binding = binding_of(message)
    assert binding.from_addresses == "a@example.org,b@example.net"
    assert binding.message_id == "<1@h>"


def refold(data: bytes) -> bytes:
    """Exchange-style refolding: Message-ID and From moved onto continuation lines, long
    Subject folded, a comment added to the Message-ID, domain case changed."""
    return (data
            .replace(b"Message-ID: <20260921.abc123@Mail.Example.NET>",
                     b"Message-ID:\r\n <20260921.abc123@mail.example.net> (relayed)")
            .replace(b"From: Alice Example <Alice@Example.NET>",
                     b"From: =?utf-8?q?Alice_Example?=\r\n\t<alice@example.net>")
            .replace(b"Subject: quarterly report",
                     b"Subject: [EXTERNAL] quarterly report with a subject long enough\r\n"
                     b" to be folded by the relay"))


def test_marker_survives_exchange_like_relaying() -> None:
    message = marked()
    data = message.to_bytes()
    relaid = parse(refold(data))
    assert relaid.to_bytes() != data
    for position in ("top", "bottom"):
        relaid = relaid.with_header("Received", "from gw.example.net by "
                                    "AM0PR01MB1234.eurprd01.prod.outlook.com", position="top")
        relaid = relaid.with_header("X-MS-Exchange-CrossTenant-Id",
                                    "11111111-2222-3333-4444-555555555555", position=position)
        relaid = relaid.with_header("ARC-Seal", "i=1; a=rsa-sha256; d=outlook.com; s=arcselector"
                                    + " b=" + "x" * 300, position=position)
    relaid = relaid.replace_text((), "Hello Bob,\nthe figures are attached.\n\n"
                                     "-- \nThis e-mail is confidential. Disclaimer.\n")
    relaid = parse(relaid.to_bytes())
    assert b"Disclaimer" in relaid.to_bytes()
    assert verdict(relaid, now=NOW + 30) is MarkerVerdict.VALID_FRESH


def test_marker_survives_a_disclaimer_that_wraps_the_body() -> None:
    message = marked()
    footer = build_leaf("text/plain", "Disclaimer\n", charset="utf-8", newline=message.newline)
    wrapped = parse(message.wrap((), after=(footer,)).to_bytes())
    assert wrapped.part(()).is_multipart
    assert verdict(wrapped) is MarkerVerdict.VALID_FRESH


def test_message_without_message_id_gets_one_before_minting() -> None:
    bare = MESSAGE.replace(b"Message-ID: <20260921.abc123@Mail.Example.NET>\r\n", b"")
    message, _ = mark(parse(bare), RING, now=NOW, direction=None)
    added = message.headers.value("Message-ID")
    assert added is not None
    assert added.endswith("@example.net>")
    assert verdict(parse(message.to_bytes())) is MarkerVerdict.VALID_FRESH


def test_minting_replaces_every_marker_with_exactly_one_valid_one() -> None:
    message = parse(MESSAGE).with_header(DEFAULT_FIELD, "forged").with_header(
        DEFAULT_FIELD, token_of(marked(OTHER_MESSAGE)), position="bottom")
    remarked, token = mark(message, RING, now=NOW, direction=Direction.INBOUND)
    assert remarked.headers.count(DEFAULT_FIELD) == 1
    assert token.d == "i"
    assert parse_token(token_of(remarked)) == token
    assert verdict(remarked) is MarkerVerdict.VALID_FRESH


def test_marker_is_one_unfolded_line_at_the_top() -> None:
    data = marked().to_bytes()
    first = data.split(b"\r\n", 1)[0]
    assert first.startswith(b"X-Mailroute-Mark: v1.g7k2qd.k1.1790000000.")
    assert len(first) < 998


def test_mac_input_is_the_length_prefixed_layout_of_5_4() -> None:
    data = mac_input(tag="g7k2qd", kid="k1", t="1790000000", nonce="n" * 16, d="o",
                     org_id="example.net",
                     binding=Binding(message_id="<a@b>", from_addresses="ä@x"))
    expected = (b"mailroute-mark\x00" + b"\x00\x00\x00\x011" + b"\x00\x00\x00\x06g7k2qd"
                + b"\x00\x00\x00\x02k1" + b"\x00\x00\x00\x0a1790000000"
                + b"\x00\x00\x00\x10" + b"n" * 16 + b"\x00\x00\x00\x01o"
                + b"\x00\x00\x00\x0bexample.net" + b"\x00\x00\x00\x05<a@b>"
                + b"\x00\x00\x00\x04\xc3\xa4@x")
    assert data == expected
