"""parse_content_type caches short values without sharing its defect lists."""

from __future__ import annotations

from mailroute.mime import parse_content_type
from mailroute.mime.defects import DefectKind


def test_cached_results_are_equal_and_defects_are_fresh_lists() -> None:
    first, defects = parse_content_type("text/html; charset=utf-8")
    again, _ = parse_content_type("text/html; charset=utf-8")
    assert first is again
    assert (first.mime_type, first.param("charset")) == ("text/html", "utf-8")
    bad, bad_defects = parse_content_type("nonsense", "text/plain")
    assert bad.mime_type == "text/plain"
    assert DefectKind.MALFORMED_CONTENT_TYPE in bad_defects
    bad_defects.clear()
    assert DefectKind.MALFORMED_CONTENT_TYPE in parse_content_type("nonsense", "text/plain")[1]
    assert defects == []


def test_default_type_is_part_of_the_key() -> None:
    assert parse_content_type(None, "text/plain")[0].mime_type == "text/plain"
    assert parse_content_type(None, "message/rfc822")[0].mime_type == "message/rfc822"


def test_long_values_are_parsed_the_same_way() -> None:
    value = "text/plain; charset=utf-8; x-long=" + "a" * 600
    ctype, defects = parse_content_type(value)
    assert ctype.param("x-long") == "a" * 600
    assert defects == []
