"""What fuzz/html_fuzz.py found: each input, reduced, with the property it broke (the result
parses to the same MIME structure plus the footer; nothing but a MailrouteError is raised)."""

from __future__ import annotations

from mailroute.disclaimer.insert import Settings, add_disclaimer, decode_body
from mailroute.mime import Message, parse
from tests.regressions.complexity import disclaimer


def _structure(message: Message) -> list[tuple[tuple[int, ...], str]]:
    return [(path, part.mime_type) for path, part in message.walk()]


def _insert(data: bytes) -> tuple[Message, Message]:
    before = parse(data, on_ambiguity="record")
    result = add_disclaimer(before, disclaimer(), Settings())
    return before, parse(result.message.to_bytes(), on_ambiguity="record")


def test_a_message_that_ends_in_its_header_gets_a_body_not_header_fields() -> None:
    for data in (b"From: Anna Weber", b"From: Anna Weber\r\n", b"From: Anna\r\nSubject: x\r"):
        _, after = _insert(data)
        text, _ = decode_body(after.root)
        assert text is not None
        assert "Confidential" in text
        assert after.headers.get("Confidential") is None


def test_wrapping_a_message_that_ends_in_its_header_keeps_the_fields_apart() -> None:
    data = (b"From: a@example.net\r\nContent-Type: multipart/signed; protocol=x\r\n"
            b"X-Last: no line break\r")
    before, after = _insert(data)
    assert _structure(after) == [((), "multipart/mixed"), ((0,), "multipart/signed"),
                                 ((1,), "text/plain")]
    assert after.headers.value("X-Last") == "no line break"
    content_type = after.headers.value("Content-Type")
    assert content_type is not None
    assert content_type.startswith("multipart/mixed")
    assert before.headers.value("From") == after.headers.value("From")


def test_an_undecodable_content_type_skips_the_body_instead_of_raising() -> None:
    body = b"Content-Transfer-Encoding: 8bit\r\n\r\n<html><body>Z\xc3\xbcrich</body></html>\r\n"
    data = b"From: a@example.net\r\nContent-Type: text/html; x=\xa2\xa2\r\n" + body
    result = add_disclaimer(parse(data, on_ambiguity="record"), disclaimer(), Settings())
    assert result.skipped == (((), "unwritable-content-type"),)
    assert result.message.to_bytes() == data
    # the fuzzer's own input has no media type at all: readers disagree, nothing is tried
    data = b"From: a@example.net\r\nContent-Type: \xa2\xa2\xa2\r\n" + body
    result = add_disclaimer(parse(data, on_ambiguity="record"), disclaimer(), Settings())
    assert result.skipped == ()
    assert result.message.to_bytes() == data


def test_a_bare_cr_before_a_boundary_does_not_split_the_part_when_re_encoded() -> None:
    # "\r--alt" is not a delimiter line; quoted-printable would write the CR as a line break
    data = (b"From: a@example.net\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
            b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            b"<p>Z\xc3\xbcrich</p>\r--alt\r\x05</body>\r\n--alt--\r\n")
    before, after = _insert(data)
    assert _structure(after) == _structure(before)
    text, _ = decode_body(after.part((0,)))
    assert text is not None
    assert "Confidential" in text
    assert "\r--alt\r" in text


def test_a_non_ascii_parameter_keeps_the_part_what_it_was_when_it_becomes_utf8() -> None:
    """The part switches to UTF-8 (the footer's dash does not fit us-ascii); the rewritten
    Content-Type was one RFC 2047 word because of the raw UTF-8 parameter, and the fuzzer's
    HTML part was read as text/plain. Non-ASCII values are now written in RFC 2231 form."""
    data = ("From: a@example.net\r\nContent-Type: text/plain; charset=us-ascii; "
            "x-note=\"Notiz \u2014 heute\"; format=flowed\r\n\r\nHi\r\n").encode()
    before = parse(data, on_ambiguity="record")
    result = add_disclaimer(before, disclaimer(text="-- \nVertraulich \u2014 intern\n"),
                            Settings())
    after = parse(result.message.to_bytes(), on_ambiguity="record")
    assert _structure(after) == _structure(before) == [((), "text/plain")]
    assert after.root.charset == "utf-8"
    assert after.root.content_type.param("x-note") == "Notiz \u2014 heute"
    assert after.root.content_type.param("format") == "flowed"


def test_a_parameter_name_that_is_no_token_skips_the_body() -> None:
    """The fuzzer's parameter name held NULs and an em dash: no writer gives that back, so
    the body is left alone instead of rewriting the Content-Type unreadably."""
    data = ("From: a@example.net\r\nContent-Type: text/plain; charset=us-ascii; "
            "n\u2014x=1\r\n\r\nHi\r\n").encode()
    result = add_disclaimer(parse(data, on_ambiguity="record"),
                            disclaimer(text="-- \nVertraulich \u2014 intern\n"), Settings())
    assert result.skipped == (((), "unwritable-content-type"),)
    assert result.message.to_bytes() == data


def test_a_content_type_too_long_to_write_back_skips_the_body() -> None:
    """A parameter of 3,600 non-ASCII characters (folded over four lines) reads within the
    limits, but written back in RFC 2231 form (each character as %XX%XX) it would not: the
    part is left alone."""
    folded = "\r\n ".join(["ü" * 900] * 4)
    data = ("From: a@example.net\r\nContent-Type: text/plain; charset=us-ascii;\r\n"
            f" x-note=\"{folded}\"\r\n\r\nHi\r\n").encode()
    result = add_disclaimer(parse(data, on_ambiguity="record"),
                            disclaimer(text="-- \nVertraulich \u2014 intern\n"), Settings())
    assert result.skipped == (((), "unwritable-content-type"),)
    assert result.message.to_bytes() == data
