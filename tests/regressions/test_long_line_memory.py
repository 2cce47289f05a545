"""A disclaimer on a body that is one line over 998 bytes: base64 written as one line, or a
7bit line that must become quoted-printable when the disclaimer brings non-ASCII. These held
the body 5-9 times (a list of every base64 line, whole-body copies for line-length checks and
line-break normalisation); now the re-encoding is done a slice at a time, within 3x."""

from __future__ import annotations

import base64
import binascii

import pytest

from mailroute.disclaimer.insert import Settings, add_disclaimer
from mailroute.mime import decode_payload, encode_payload, parse
from mailroute.mime.transfer import long_line
from tests.regressions.complexity import disclaimer, fits_memory, message, peak

SIZE = 8_000_000
UMLAUT = disclaimer("-- \nVertraulich. Grüße aus Köln.\n", "<p>Vertraulich. Grüße.</p>")


def _with_disclaimer(data: bytes) -> bytes:
    return add_disclaimer(parse(data), UMLAUT, Settings()).message.to_bytes()


@pytest.mark.parametrize(("body", "encoding"), [
    (base64.b64encode(b"x" * SIZE).decode() + "\r\n", "base64"),
    ("x" * SIZE + "\r\n", "7bit"),
])
def test_a_one_line_body_gets_its_disclaimer_within_3x_the_message(body: str,
                                                                    encoding: str) -> None:
    data = message(body, subtype="plain", encoding=encoding).to_bytes()
    out = _with_disclaimer(data)
    decoded = decode_payload(parse(out).root).data
    assert decoded.startswith(b"x" * 1000)
    assert "Grüße aus Köln".encode() in decoded
    assert fits_memory(len(data), lambda: _with_disclaimer(data)), peak(
        lambda: _with_disclaimer(data)) / len(data)


def test_quoted_printable_of_one_long_line_reads_back_with_short_lines() -> None:
    text = ("ä" * 70_000 + "x" * 50_001 + " \t\r\nnext line\r\n").encode() * 2
    encoded = encode_payload(text, "quoted-printable", b"\r\n")
    assert not long_line(encoded, 76)
    assert binascii.a2b_qp(encoded) == text
    assert b"=C3=\r\n=A4" not in encoded  # no soft break inside a UTF-8 character


def test_base64_written_in_slices_is_the_plain_encoding_in_lines_of_76() -> None:
    data = bytes(range(256)) * 1000 + b"tail"
    encoded = encode_payload(data, "base64", b"\n", prefix=b"PREFIX\n")
    plain = base64.encodebytes(data)  # 76-character lines, each ending in LF
    assert encoded == b"PREFIX\n" + plain
    assert encode_payload(b"", "base64", b"\r\n") == b"\r\n"


def test_long_line_sees_a_long_line_without_copying_it() -> None:
    assert long_line(b"a" * 200_000 + b"\r\n")
    assert not long_line((b"a" * 998 + b"\r\n") * 200)
    assert long_line(b"b\r\n" * 40_000 + b"a" * 999 + b"\r\n")
    assert not long_line(b"a" * 900 + b"\r" + b"a" * 900 + b"\n")  # a bare CR breaks a line
