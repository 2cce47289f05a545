"""Quoted-printable output never cuts a UTF-8 character at a soft line break.

Regression test: binascii.b2a_qp breaks at column 76 whatever the bytes, so a body re-encoded by
replace_text could carry ``=C3=`` / ``=96`` across two lines. That is legal quoted-printable,
but decoders that work line by line (alterMIME#12, amavis) turn it into mojibake.
"""

from __future__ import annotations

import binascii

from hypothesis import given
from hypothesis import strategies as st

from mailroute.mime.transfer import encode_payload

CONTINUATION = (b"=8", b"=9", b"=A", b"=B")


def _check(text: str, newline: bytes) -> None:
    data = text.encode("utf-8")
    body = encode_payload(data, "quoted-printable", newline)
    lines = body.split(newline)
    for number, line in enumerate(lines):
        assert len(line) <= 76
        if line.endswith(b"=") and number + 1 < len(lines):
            assert not lines[number + 1].startswith(CONTINUATION), (line, lines[number + 1])
            assert not line[:-1].endswith(b"=")
            assert line[-3:-2] != b"="
    normal = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert binascii.a2b_qp(body.replace(newline, b"\n")) == normal


def test_cyrillic_line_is_not_cut_inside_a_character() -> None:
    cut_by_binascii = 0
    for shift in range(6):
        text = "x" * shift + "Повідомлення про зустріч: будь ласка, підтвердіть участь. " * 4
        plain = binascii.b2a_qp(text.encode(), istext=True)
        cut_by_binascii += any(line.startswith(CONTINUATION) for line in plain.split(b"=\n"))
        _check(text + "\n", b"\r\n")
    assert cut_by_binascii, "binascii alone cuts characters (the case this guards against)"


@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=400),
       st.sampled_from([b"\r\n", b"\n"]))
def test_any_text_round_trips_without_cut_characters(text: str, newline: bytes) -> None:
    _check(text, newline)
