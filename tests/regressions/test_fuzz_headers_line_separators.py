"""Found by fuzz/headers_fuzz.py: a value holding U+2028 (or another character that
``str.splitlines`` breaks at) came back changed, because the stdlib's RFC 2047 encoder folds
there. make_field now refuses such values, as it refuses CR, LF and NUL."""

from __future__ import annotations

import pytest

from mailroute.errors import UnsafeHeaderValueError
from mailroute.mime import parse
from mailroute.mime.headers import make_field

SEPARATORS = ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("separator", SEPARATORS, ids=[hex(ord(s)) for s in SEPARATORS])
@pytest.mark.parametrize("text", ["plain ascii", "ꂠ non-ascii"])
def test_a_value_with_a_line_separator_is_refused(separator: str, text: str) -> None:
    with pytest.raises(UnsafeHeaderValueError, match="line break or NUL"):
        make_field("X-Note", text + separator + "Bcc: victim@example.org")


def test_the_fuzzer_input_shape_now_round_trips_without_the_separator() -> None:
    value = "ꂠ" * 20 + " \u2020\u2020 " + "\U00057079"
    field = make_field("YYYY", value)
    message = parse(field.raw + b"\r\nbody\r\n")
    assert message.headers.fields == (field,)
    assert field.decoded() == value
