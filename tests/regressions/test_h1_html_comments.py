"""H1: each HTML comment searched to the end of the document for ``--!>`` (quadratic:
1.12 MB of ``<!---->`` took 129 s). One search now finds whichever end comes first."""

from __future__ import annotations

from mailroute.disclaimer.htmlscan import scan_html
from mailroute.disclaimer.locate import locate
from tests.regressions.complexity import RATIO, fits_memory, growth, insert, message


def _comments(n: int) -> str:
    return "<html><body>\r\n" + "<!---->\r\n" * n + "</body></html>\r\n"


def test_comment_scan_grows_linearly() -> None:
    assert growth(_comments, scan_html, 20_000) <= RATIO


def test_insertion_into_a_comment_bomb_grows_linearly_in_time_and_memory() -> None:
    assert growth(lambda n: message(_comments(n)), insert, 10_000) <= RATIO
    bomb = message(_comments(80_000))
    assert fits_memory(len(bomb.to_bytes()), lambda: insert(bomb))


def test_the_first_comment_end_wins() -> None:
    html = "<body><!-- a --!> <p>x</p> --> </body>"
    points = scan_html(html)
    assert points.bottom == html.index("</body>")
    assert not points.simple  # "--!>" is a parse error: html5lib decides
    plain = "<body><!-- a --> <p>x</p> --!> </body>"
    assert scan_html(plain).simple
    assert locate(plain, "bottom").offset == plain.index("</body>")


def test_an_unterminated_comment_runs_to_the_end() -> None:
    html = "<body><p>x</p><!-- </body>"
    points = scan_html(html)
    assert points.bottom == len(html)
    assert not points.simple
