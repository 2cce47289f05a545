"""Canonicalisation before signing (RFC 8551 section 3.1) and the long-line check."""

from __future__ import annotations

import pytest

from mailroute.limits import DEFAULT_LIMITS
from mailroute.mime import parse
from mailroute.mime.canonical import canonicalise, has_long_line
from tests.smime.test_mime_interop import EIGHT_BIT_LF, MESSAGE

MIXED_8BIT = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
              b"\r\nK\xc3\xb6ln\r\n--b\r\nContent-Type: application/octet-stream\r\n"
              b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff\r\n--b--\r\n")


@pytest.mark.parametrize(("prefix", "length", "expected"), [
    (0, 998, False), (0, 999, True), (5, 998, False), (5, 999, True), (600, 998, False),
    (600, 999, True), (1200, 2000, True)])
def test_long_line_finds_exactly_the_lines_over_998(prefix: int, length: int,
                                                    expected: bool) -> None:
    lines = b"x" * 76 + b"\r\n"
    data = lines * prefix + b"y" * length + b"\r\n" + lines * 3
    assert has_long_line(data) is expected


def test_long_line_does_not_count_the_crlf() -> None:
    assert not has_long_line(b"a" * 998 + b"\r\n" + b"b" * 998 + b"\r\n")


def test_a_canonical_message_is_left_byte_identical() -> None:
    assert canonicalise(parse(MESSAGE), DEFAULT_LIMITS).to_bytes() == MESSAGE


def test_a_from_line_is_protected_as_for_pgp_mime() -> None:
    # mbox delivery would write ">From here": the signed body must not contain the risk.
    risky = MESSAGE.replace(b"\r\nSo far", b"\r\nFrom here")
    result = canonicalise(parse(risky), DEFAULT_LIMITS).to_bytes()
    assert b"\r\n=46rom here, so good: a test.\r\n" in result
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in result


def test_lf_and_8bit_text_become_crlf_quoted_printable() -> None:
    result = canonicalise(parse(EIGHT_BIT_LF), DEFAULT_LIMITS)
    data = result.to_bytes()
    assert result.newline == b"\r\n"
    assert data.count(b"\n") == data.count(b"\r\n")
    assert data.isascii()
    assert result.root.transfer_encoding == "quoted-printable"
    assert b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln =20\r\n" in data  # trailing space protected


def test_8bit_leaves_are_re_encoded_by_type() -> None:
    result = canonicalise(parse(MIXED_8BIT), DEFAULT_LIMITS)
    text, binary = result.part((0,)), result.part((1,))
    assert text.transfer_encoding == "quoted-printable"
    assert text.body_bytes() == b"K=C3=B6ln"
    assert binary.transfer_encoding == "base64"
    assert binary.body_bytes() == b"AAH/\r\n"
    assert result.to_bytes().isascii()


def test_a_long_ascii_line_is_re_encoded() -> None:
    long_text = MESSAGE.replace(b"Hello, this is", b"Hello " + b"w" * 1200 + b" this is")
    result = canonicalise(parse(long_text), DEFAULT_LIMITS)
    assert result.root.transfer_encoding == "quoted-printable"
    assert not has_long_line(result.to_bytes())
