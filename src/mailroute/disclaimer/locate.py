"""Where in an HTML body the disclaimer goes, within bounded time.

Three ways to find the offset, chosen per document:

- ``scan``: the linear scan (:mod:`~mailroute.disclaimer.htmlscan`) when it saw nothing an
  HTML5 parser could read differently; this is most mail, and costs one regex pass.
- ``html5lib``: beautifulsoup4 + html5lib (:mod:`~mailroute.disclaimer.htmlparse`) for every
  other document within the limits, or for every document with ``parser = "html5lib"``.
- ``fallback``: the linear scan's answer for documents past the size or nesting limit, where
  html5lib's time is not bounded well enough (a 20,000-deep ``<div>`` took it 46 s): before
  the last ``</body>`` it saw, else at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailroute.disclaimer.htmlscan import HtmlPoints, scan_html

__all__ = ["PARSERS", "PLACEMENTS", "HtmlLimits", "Location", "locate"]

PLACEMENTS = ("bottom", "top", "reply")
PARSERS = ("auto", "html5lib")


@dataclass(frozen=True, slots=True, kw_only=True)
class HtmlLimits:
    """Documents html5lib may see.

    Attributes:
        max_chars: characters of decoded HTML.
        max_depth: element nesting depth, as the linear scan counts it.
    """

    max_chars: int = 131_072
    max_depth: int = 64


@dataclass(frozen=True, slots=True)
class Location:
    """An insertion offset (in characters) and the method that found it."""

    offset: int
    method: str


def locate(html: str, placement: str, *, parser: str = "auto",
           limits: HtmlLimits = HtmlLimits()) -> Location:
    """The offset in ``html`` for a disclaimer at ``placement`` (bottom, top or reply)."""
    scanned = scan_html(html)
    if parser == "auto" and scanned.simple:
        return Location(_pick(scanned, placement), "scan")
    if len(html) > limits.max_chars or scanned.max_depth > limits.max_depth:
        return Location(_pick(scanned, placement), "fallback")
    from mailroute.disclaimer.htmlparse import parse_points  # only when needed: it is slow
    return Location(_pick(parse_points(html), placement), "html5lib")


def _pick(points: HtmlPoints, placement: str) -> int:
    if placement == "top":
        return points.top
    if placement == "reply" and points.quote is not None:
        return points.quote
    return points.bottom
