"""long_line over a range of a buffer: the range read as a text of its own."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from mailroute.mime.transfer import long_line


@given(st.lists(st.sampled_from([b"a" * 70, b"b", b"\r\n", b"\n", b"\r", b"c" * 500]),
                max_size=8).map(b"".join),
       st.sampled_from([76, 998]), st.integers(0, 1200), st.integers(0, 1200))
def test_long_line_of_a_range_reads_the_range_as_its_own_text(
        data: bytes, limit: int, start: int, end: int) -> None:
    piece = data[start:end]
    expected = bool(re.search(rb"[^\r\n]{%d}" % (limit + 1), piece))
    assert long_line(data, limit, start, min(end, len(data))) == expected


def test_a_range_as_long_as_the_limit_has_no_long_line() -> None:
    data = b"x" * 2000
    assert not long_line(data, 998, 500, 1498)
    assert long_line(data, 998, 500, 1499)
    assert not long_line(data, 76, 1000, 1000)
