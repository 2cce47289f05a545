"""replace_text keeps a charset only when the text survives it unchanged.

Regression test: Python's shift_jis codec encodes "¥" (U+00A5) as the byte 0x5C, which decodes
as "\\": encoding without an error is not enough, the charset must also give the text back.
"""

from __future__ import annotations

from mailroute.mime import decode_text, parse

MESSAGE = (b"From: a@example.net\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=shift_jis\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "東京".encode("shift_jis") + b"\r\n")


def test_lossy_mapping_switches_to_utf8() -> None:
    edited = parse(MESSAGE).replace_text((), "東京\n¥100\n")
    assert edited.root.charset == "utf-8"
    assert decode_text(edited.root).replace("\r\n", "\n") == "東京\n¥100\n"


def test_text_that_round_trips_keeps_its_charset() -> None:
    edited = parse(MESSAGE).replace_text((), "東京\n100 円\n")
    assert edited.root.charset == "shift_jis"
    assert decode_text(edited.root).replace("\r\n", "\n") == "東京\n100 円\n"
