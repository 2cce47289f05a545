"""Finding the insertion point in HTML: the linear scan, html5lib, and the bounded fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute.disclaimer.htmlparse import MAX_FOSTER_PARENTED, HtmlTooCostly, parse_points
from mailroute.disclaimer.htmlscan import scan_html
from mailroute.disclaimer.insert import decode_body
from mailroute.disclaimer.locate import HtmlLimits, locate
from mailroute.mime import parse
from tests.disclaimer.conftest import Corpus, make_filter
from tests.disclaimer.helpers import run, stdlib

# (document, text right after the bottom insertion point, whether the scan alone may decide)
CASES = [
    ("<html><body><p>x</p></body></html>", "</body></html>", True),
    ("<html><body><p>x</p><!-- </body> --></BODY >\r\n</html>\r\n", "</BODY >", True),
    ("<p>no body at all</p>\n", "\n", True),   # the end, before the final line break
    ("<html><body>a</body>b</html>", "</html>", False),
    ("<html><body>a</body>\n<!-- c --></html>\n", "</body>", True),
    ("<script>var a='</body>';</script><body>z</body>", "</body>", True),
    ("<html><body><textarea></body></textarea>t</body></html>", "</body></html>", True),
    ("<html><body><a title='</body>'>x</a></body></html>", "</body></html>", True),
    ("<table><tr><td>x</body>y</td></tr></table>", "", False),
    ("<html><body><svg><title></body></title></svg>z</body></html>", "</body></html>", False),
    ("<html><body><!-- unterminated </body>", "", False),
    ("<html><body><a b\"c='</body>'>x</a>", "", False),
    ("<html><body>x</body></html>trailing", "", False),
]


@pytest.mark.parametrize(("document", "after", "simple"), CASES)
def test_bottom_before_the_honoured_end_tag(document: str, after: str, simple: bool) -> None:
    assert scan_html(document).simple is simple
    parsed = parse_points(document)
    assert document[parsed.bottom:].startswith(after)
    assert after or parsed.bottom == len(document)
    if simple:
        assert scan_html(document).bottom == parsed.bottom
    assert locate(document, "bottom").method == ("scan" if simple else "html5lib")
    assert locate(document, "bottom").offset == parsed.bottom


REPLIES = [
    ('<div>new</div><div id="appendonsend"></div><hr><div id="divRplyFwdMsg">F</div>',
     '<div id="appendonsend">'),
    ('<div>new</div><hr style="x">\n<div id="divRplyFwdMsg">F</div>', '<hr style="x">'),
    ('<div dir="ltr">new</div><br><div class="gmail_quote gmail_quote_container">q</div>',
     '<div class="gmail_quote gmail_quote_container">'),
    ('<div>new</div><div class="moz-cite-prefix">On x wrote:</div><blockquote type="cite">',
     '<div class="moz-cite-prefix">'),
    ('<div>new</div><div><br><blockquote type="cite">q</blockquote></div>',
     '<blockquote type="cite">'),
    ('<div>new</div><div id="mail-editor-reference-message-container">q</div>',
     '<div id="mail-editor-reference-message-container">'),
    ('<div>new</div><div class="yahoo_quoted" id="y">q</div>', '<div class="yahoo_quoted"'),
    ('<p>new</p><div><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm '
     '0cm 0cm"><p><b>Von:</b> Max</p></div></div>', '<div style="border:none;border-top'),
]


@pytest.mark.parametrize(("body", "marker"), REPLIES)
def test_reply_placement_above_the_quote(body: str, marker: str) -> None:
    document = f"<html><body>{body}</body></html>"
    expected = document.index(marker)
    assert scan_html(document).quote == expected
    assert parse_points(document).quote == expected
    assert locate(document, "reply").offset == expected
    assert locate(document, "reply", parser="html5lib").offset == expected


def test_reply_without_a_quote_goes_to_the_bottom() -> None:
    document = "<html><body><p>new</p></body></html>"
    assert locate(document, "reply").offset == document.index("</body>")


@pytest.mark.parametrize(("document", "after_top"), [
    ('<html><head><title>t</title></head><body class="x"><p>a</p></body></html>', "<p>a"),
    ("<!DOCTYPE html><p>a</p>", "<p>a"),
    ("<html><head></head><p>a</p></html>", "<p>a"),
])
def test_top_placement(document: str, after_top: str) -> None:
    assert document[locate(document, "top").offset:].startswith(after_top)
    assert document[parse_points(document).top:].startswith(after_top)


def test_scan_and_html5lib_agree_on_every_corpus_html_body(corpus: Corpus) -> None:
    compared = 0
    for entry in corpus.entries:
        message = parse(corpus.data(entry))
        for _, part in message.walk():
            if part.mime_type != "text/html" or part.is_multipart:
                continue
            text, _ = decode_body(part)
            assert text is not None
            scanned, parsed = scan_html(text), parse_points(text)
            assert scanned.simple
            assert (scanned.bottom, scanned.top, scanned.quote) == \
                (parsed.bottom, parsed.top, parsed.quote), entry["file"]
            compared += 1
    assert compared > 100


def test_deep_nesting_uses_the_linear_fallback() -> None:
    bomb = "<html><body>" + "<div>" * 20_000 + "x" + "</div>" * 20_000 + "</body></html>"
    located = locate(bomb, "bottom", parser="html5lib")
    assert located.method == "fallback"
    assert bomb[located.offset:] == "</body></html>"
    unclosed = "<html><body>" + "<div><svg>" * 10_000 + "x"
    located = locate(unclosed, "bottom")
    assert located.method == "fallback"
    assert located.offset == len(unclosed)


def test_quadratic_foster_parenting_uses_the_linear_fallback() -> None:
    """Found by the disclaimer audit: 131 KB of ``<table>x<p>x<p>...`` made html5lib move
    every piece out of the table, each move costing the number of moves before it (14 s)."""
    hostile = "<svg></svg><table>" + "x<p>" * (MAX_FOSTER_PARENTED + 1)
    located = locate(hostile, "bottom")
    assert located.method == "fallback"
    assert located.offset == len(hostile)
    with pytest.raises(HtmlTooCostly):
        parse_points(hostile)
    mild = "<html><body><svg></svg><table>" + "x<p>" * 10 + "</table></body></html>"
    assert locate(mild, "bottom").method == "html5lib"


@pytest.mark.parametrize("document", ["<table><math><html>", "<table><tr><svg><html>"])
def test_html5lib_tripping_over_its_own_assertions_uses_the_linear_fallback(
        document: str) -> None:
    """Found by the disclaimer audit: an AssertionError inside html5lib was an internal
    error (4.3.0) for the whole message."""
    located = locate(document, "bottom")
    assert located.method == "fallback"
    assert located.offset == len(document)


def test_size_limit_uses_the_linear_fallback() -> None:
    document = "<html><body><svg></svg>" + "<p>x</p>" * 1000 + "</body></html>"
    assert locate(document, "bottom").method == "html5lib"
    small = HtmlLimits(max_chars=1000)
    located = locate(document, "bottom", limits=small)
    assert located.method == "fallback"
    assert document[located.offset:] == "</body></html>"


def test_filter_reports_the_fallback_for_a_bomb(tmp_path: Path) -> None:
    bomb = ("<html><body>" + "<div>" * 20_000 + "x").encode()
    data = (b"From: a@corp.example\r\nTo: b@partner.example\r\nSubject: deep\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n" + bomb)
    step = make_filter(tmp_path, html_parser="html5lib", var=["greeting=x"])
    result = run(step, data)
    assert result.item is not None
    assert result.item.annotation("disclaimer.html-locator") == "fallback"
    assert result.data is not None
    html = stdlib(result.data).get_content()
    assert html.startswith(bomb.decode())
    assert html.endswith("</p></div>")
