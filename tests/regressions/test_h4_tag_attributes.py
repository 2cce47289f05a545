"""H4: an unterminated start tag with many attributes (``<a b b b ...``) made the tag regex keep
backtracking state for every attribute: about 190 bytes per input byte (16 MB took 3.1 GB).
The tag regexes are possessive now; and a tag with many attributes is kept from html5lib,
which is quadratic in them."""

from __future__ import annotations

from mailroute.disclaimer.htmlscan import scan_html
from mailroute.disclaimer.locate import locate
from tests.regressions.complexity import (
    RATIO,
    fits_memory,
    growth,
    insert,
    message,
)


def _tag(n: int) -> str:
    return "<body><p>x</p><a " + "b " * n


def test_tag_reading_grows_linearly_in_time_and_memory() -> None:
    assert growth(_tag, scan_html, 100_000) <= RATIO
    html = _tag(2_000_000)  # 4 MB: 760 MB before
    assert fits_memory(len(html), lambda: scan_html(html))


def test_insertion_grows_linearly() -> None:
    assert growth(lambda n: message(_tag(n)), insert, 80_000) <= RATIO


def test_many_attributes_keep_a_document_from_html5lib() -> None:
    html = "<body><svg></svg><a " + "".join(f"b{i} " for i in range(5000)) + ">x</a></body>"
    assert scan_html(html).max_attributes >= 5000
    assert locate(html, "bottom").method == "fallback"
    few = "<body><svg></svg><a b c d>x</a></body>"
    assert locate(few, "bottom").method == "html5lib"


def test_the_unterminated_tag_is_still_text_to_the_end() -> None:
    html = _tag(10)
    points = scan_html(html)
    assert not points.simple
    assert points.bottom == len(html)
    large = _tag(200_000)  # past html_max_chars: the linear scan's answer
    assert fits_memory(len(large), lambda: locate(large, "bottom"))
    assert locate(large, "bottom").offset == len(large)
