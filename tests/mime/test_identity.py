"""parse -> emit is the identity, on generated messages and on the stdlib's own corpus."""

from __future__ import annotations

import email
import email.policy
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroute.errors import MailrouteError
from mailroute.mime import AmbiguityPolicy, parse
from tests.mime.strategies import Built, messages

STDLIB_CORPUS = Path(sysconfig.get_path("stdlib")) / "test" / "test_email" / "data"
STDLIB_MESSAGES = sorted(STDLIB_CORPUS.glob("msg_*.txt"))


@settings(max_examples=300, deadline=None)
@given(messages())
def test_generated_messages_round_trip_byte_for_byte(built: Built) -> None:
    message = parse(built.data, on_ambiguity=AmbiguityPolicy.RECORD)
    assert message.root.to_bytes() == built.data


@settings(max_examples=200, deadline=None)
@given(messages())
def test_generated_messages_have_the_generated_leaves(built: Built) -> None:
    message = parse(built.data, on_ambiguity=AmbiguityPolicy.RECORD)
    leaves = [part for _, part in message.walk() if not part.is_multipart]
    assert len(leaves) == built.leaves


@settings(max_examples=100, deadline=None)
@given(messages())
def test_every_part_emits_the_bytes_the_stdlib_sees_for_it(built: Built) -> None:
    """Differential check: the leaf payloads agree with the stdlib's reading (CRLF input)."""
    data = built.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    ours = [p for _, p in parse(data, on_ambiguity="record").walk() if not p.is_multipart]
    theirs = [p for p in email.message_from_bytes(data, policy=email.policy.compat32).walk()
              if not p.is_multipart()]
    assert len(ours) == len(theirs)
    for mine, stdlib in zip(ours, theirs, strict=True):
        assert mine.mime_type == stdlib.get_content_type()


def test_stdlib_corpus_is_present() -> None:
    assert len(STDLIB_MESSAGES) >= 40, STDLIB_CORPUS


@pytest.mark.parametrize("path", STDLIB_MESSAGES, ids=lambda p: p.name)
def test_stdlib_corpus_round_trips(path: Path) -> None:
    data = path.read_bytes()
    assert parse(data, on_ambiguity=AmbiguityPolicy.RECORD).root.to_bytes() == data


@pytest.mark.parametrize("data", [
    b"",
    b"\r\n",
    b"Subject: no body",
    b"Subject: x\r\n\r\n",
    b"Subject: x\n\nbody without final newline",
    b"Subject: x\r\n\nmixed\r\nendings\n",
    b"Subject: x\r\n\r",
    b"\r",
    b"Subject: x\n\r",
    b"Subject: x\r\n folded\r\n\tagain\r\nX: 1",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nno close",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--",
    b"Content-Type: multipart/mixed; boundary=b\n\n--b\nA: 1\n\nx\n--b--  \n\ntrailing\n",
])
def test_edge_cases_round_trip(data: bytes) -> None:
    assert parse(data, on_ambiguity=AmbiguityPolicy.RECORD).root.to_bytes() == data


@settings(max_examples=300, deadline=None)
@given(built=messages(), cuts=st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=8)),
                                       max_size=6))
def test_mutated_messages_round_trip_or_raise_only_mailroute_errors(
        built: Built, cuts: list[tuple[int, bytes]]) -> None:
    """Splice random bytes into valid messages: the scanner returns or raises its own error."""
    data = built.data
    for position, insert in cuts:
        at = position % (len(data) + 1)
        data = data[:at] + insert + data[at + len(insert) // 2:]
    try:
        message = parse(data)
    except MailrouteError:
        return
    assert message.root.to_bytes() == data


def _both_scans_agree(data: bytes) -> None:
    from mailroute.limits import DEFAULT_LIMITS
    from mailroute.mime.headers import _scan_careful, _scan_plain

    fast = _scan_plain(data, 0, len(data), DEFAULT_LIMITS)
    if fast is None:
        return
    careful = _scan_careful(data, 0, len(data), DEFAULT_LIMITS, ())
    assert fast.block == careful.block
    assert (fast.separator, fast.body_start) == (careful.separator, careful.body_start)
    assert careful.defects == []


@settings(max_examples=300, deadline=None)
@given(built=messages(), noise=st.binary(max_size=40), at=st.integers(0, 400))
def test_fast_header_scan_agrees_with_the_careful_one(built: Built, noise: bytes,
                                                      at: int) -> None:
    """The regex fast path may only ever decline, never read a header block differently."""
    _both_scans_agree(built.data)
    _both_scans_agree(built.data[:at] + noise + built.data[at:])


@pytest.mark.parametrize("path", STDLIB_MESSAGES, ids=lambda p: p.name)
def test_fast_header_scan_agrees_on_the_stdlib_corpus(path: Path) -> None:
    _both_scans_agree(path.read_bytes())


def test_the_tree_of_every_corpus_message_emits_its_bytes(corpus_dir: Path) -> None:
    """The tree, not the input kept beside it, reproduces each message: what an edit
    elsewhere in the message relies on."""
    checked = 0
    for path in sorted(corpus_dir.glob("*.eml")):
        data = path.read_bytes()
        try:
            message = parse(data, on_ambiguity=AmbiguityPolicy.RECORD)
        except MailrouteError:
            continue  # the corpus's over-limit and malformed cases
        assert message.root.to_bytes() == data, path.name
        checked += 1
    assert checked >= 150


def test_an_unchanged_message_is_the_input_itself_and_an_edited_one_its_tree() -> None:
    """An unchanged message costs no copy; every edit (``replace`` included) is a new object
    that is emitted from its tree."""
    import dataclasses

    data = (b"From: a@example.net\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\n"
            b"body\r\n")
    message = parse(data)
    assert message.to_bytes() is data
    same_tree = dataclasses.replace(message)
    assert same_tree.to_bytes() == data
    assert same_tree.to_bytes() is not data
    edited = message.with_header("X-Added", "1")
    assert edited.to_bytes() == edited.root.to_bytes() == b"X-Added: 1\r\n" + data
