"""Where in an HTML body the disclaimer goes, within bounded time.

Three ways to find the offset, chosen per document:

- ``scan``: the linear scan (:mod:`~mailroute.disclaimer.htmlscan`) when it saw nothing an
  HTML5 parser could read differently; this is most mail, and costs one regex pass.
- ``html5lib``: beautifulsoup4 + html5lib (:mod:`~mailroute.disclaimer.htmlparse`) for every
  other document within the limits, or for every document with ``parser = "html5lib"``.
- ``fallback``: the linear scan's answer for documents past the size or nesting limit, where
  html5lib's time is not bounded well enough (a 20,000-deep ``<div>`` took it 46 s): before
  the last ``</body>`` it saw, else at the end. Also for every document once the message's
  html5lib budget (:class:`HtmlBudget`) is spent, so that a message of hundreds of HTML
  bodies costs no more than a few large ones, for a document that makes html5lib move more
  than ``MAX_FOSTER_PARENTED`` pieces out of tables (quadratic), and for one html5lib's own
  assertions trip over.
"""

from __future__ import annotations

from mailroute.disclaimer.htmlscan import HtmlPoints, scan_html
from mailroute.disclaimer.htmlstack import DEPTH_CAP
from mailroute.records import record

__all__ = ["PARSERS", "PLACEMENTS", "HtmlBudget", "HtmlLimits", "Location", "locate"]

PLACEMENTS = ("bottom", "top", "reply")
PARSERS = ("auto", "html5lib")


@record(frozen=True, kw_only=True)
class HtmlLimits:
    """Documents html5lib may see.

    Attributes:
        max_chars: characters of decoded HTML.
        max_depth: element nesting depth, as the linear scan counts it (it counts up to
            4096: a deeper document is never given to html5lib, whatever this says).
        max_message_chars: characters of HTML html5lib may see over all bodies of one
            message; bodies after that use the linear scan's answer.
        max_attributes: attributes in one tag (html5lib is quadratic in them: 10,000 in one
            tag took it 3 s).
    """

    max_chars: int = 131_072
    max_depth: int = 64
    max_message_chars: int = 262_144
    max_attributes: int = 1024


class HtmlBudget:
    """What is left of one message's html5lib budget (``HtmlLimits.max_message_chars``)."""

    __slots__ = ("left",)

    def __init__(self, chars: int) -> None:
        self.left = chars

    def spend(self, chars: int) -> bool:
        """Take ``chars`` from the budget; False (and nothing taken) when they do not fit."""
        if chars > self.left:
            return False
        self.left -= chars
        return True


@record(frozen=True)
class Location:
    """An insertion offset (in characters) and the method that found it."""

    offset: int
    method: str


DEFAULT_HTML_LIMITS = HtmlLimits()


def locate(html: str, placement: str, *, parser: str = "auto",
           limits: HtmlLimits = DEFAULT_HTML_LIMITS, budget: HtmlBudget | None = None) -> Location:
    """The offset in ``html`` for a disclaimer at ``placement`` (bottom, top or reply).

    ``budget`` is the message's html5lib budget, shared by its bodies (default: a fresh
    one of ``limits.max_message_chars``).
    """
    scanned = scan_html(html)
    if parser == "auto" and scanned.simple:
        return Location(_pick(scanned, placement), "scan")
    if budget is None:
        budget = HtmlBudget(limits.max_message_chars)
    if (len(html) > limits.max_chars or scanned.max_depth > limits.max_depth
            or scanned.max_depth >= DEPTH_CAP or scanned.max_attributes > limits.max_attributes
            or not budget.spend(len(html))):
        return Location(_pick(scanned, placement), "fallback")
    from mailroute.disclaimer.htmlparse import HtmlTooCostly, parse_points  # slow: on demand
    try:
        points = parse_points(html)
    except HtmlTooCostly:
        return Location(_pick(scanned, placement), "fallback")
    except (AssertionError, IndexError, KeyError, AttributeError, TypeError, ValueError):
        # html5lib's own consistency checks fail on some foreign content in tables
        # (<table><math><html>): the linear scan's answer, as for a document past a limit
        return Location(_pick(scanned, placement), "fallback")
    return Location(_pick(points, placement), "html5lib")


def _pick(points: HtmlPoints, placement: str) -> int:
    if placement == "top":
        return points.top
    if placement == "reply" and points.quote is not None:
        return points.quote
    return points.bottom
