"""H3: the nesting depth dropped on *any* end tag, so ``<div></x>`` repeated stayed at depth 0
while html5lib nested 14,000 divs (44 s); and the limits were per body, so a message of many
HTML bodies multiplied them. Depth is now the length of a real stack of open elements, and
html5lib has a budget per message."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute.disclaimer.htmlscan import scan_html
from mailroute.disclaimer.htmlstack import DEPTH_CAP
from mailroute.disclaimer.insert import Settings, add_disclaimer
from mailroute.disclaimer.locate import HtmlBudget, HtmlLimits, locate
from mailroute.mime import parse
from tests.disclaimer.conftest import make_filter
from tests.regressions.complexity import RATIO, disclaimer, growth, insert, message

_BOMB = "<svg></svg>" + "<div></x>" * 14_000


@pytest.mark.parametrize(("html", "depth"), [
    ("<div></x>" * 5, 5),                         # a mismatched end tag pops nothing
    ("<div></div>" * 5, 1),
    ("<div><span></div>", 2),                     # </div> pops the span it closes too
    ("<div><table></div>", 2),                    # ... but not across a table
    ("<span><div></span>", 2),                    # nor </span> across a special element
    ("<p>a<p>b<p>c", 1),                          # <p> closes an open p
    ("<ul><li>a<li>b</ul>", 2),
    ("<div/>" * 4, 4),                            # "/>" means nothing on an HTML element
    ("<svg>" + "<g/>" * 4 + "</svg>", 1),         # ... and closes a foreign one
    ('<div a=""b>' * 3, 3),                       # a malformed start tag opens all the same
    ("<table><tr><td>" * 3, 9),
])
def test_depth_is_that_of_a_stack_of_open_elements(html: str, depth: int) -> None:
    assert scan_html(html).max_depth == depth


def test_the_bomb_is_counted_and_kept_from_html5lib() -> None:
    assert scan_html(_BOMB).max_depth == DEPTH_CAP  # 14,000 open: the count stops at the cap
    assert locate(_BOMB, "bottom").method == "fallback"
    # a limit above the cap cannot let such a document through
    assert locate(_BOMB, "bottom", limits=HtmlLimits(max_depth=10 ** 6)).method == "fallback"


def test_depth_counting_grows_linearly() -> None:
    assert growth(lambda n: "<svg></svg>" + "<div></x>" * n, scan_html, 20_000) <= RATIO
    assert growth(lambda n: message("<svg></svg>" + "<div></x>\r\n" * n), insert,
                  10_000) <= RATIO


def _many_bodies(count: int, html: str) -> bytes:
    parts = b"".join(
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html.encode() + b"\r\n"
        for _ in range(count))
    return (b"From: a@example.net\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n' + parts + b"--b--\r\n")


def test_html5lib_budget_is_shared_by_the_bodies_of_a_message() -> None:
    # <svg> makes each body ambiguous, so each would go to html5lib
    body = "<html><body><svg></svg><p>" + "x" * 1000 + "</p></body></html>"
    limits = HtmlLimits(max_message_chars=3 * len(body))
    result = add_disclaimer(parse(_many_bodies(8, body)), disclaimer(),
                            Settings(html_limits=limits))
    assert result.locators == ("html5lib",) * 3 + ("fallback",) * 5
    assert len(result.inserted) == 8  # past the budget, bodies still get the disclaimer


def test_budget_spending() -> None:
    budget = HtmlBudget(10)
    assert budget.spend(6)
    assert not budget.spend(6)  # nothing taken when it does not fit
    assert budget.spend(4)
    assert budget.left == 0


def test_the_budget_is_a_policy_option(tmp_path: Path) -> None:
    step = make_filter(tmp_path, html_max_message_chars=0)
    assert step.settings.html_limits.max_message_chars == 0
    data = _many_bodies(1, "<html><body><svg></svg><p>x</p></body></html>")
    result = add_disclaimer(parse(data), disclaimer(), step.settings)
    assert result.locators == ("fallback",)
