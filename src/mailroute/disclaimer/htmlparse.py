"""Insertion points found by a real HTML5 parser: beautifulsoup4 on html5lib.

The document is parsed, never re-serialised: the parse only tells *where* the disclaimer
goes. html5lib's tokenizer is watched while the tree is built, so the offsets of the ``</body>``
and ``</html>`` end tags the parser actually honoured are known (one inside a comment, a
script or an attribute is never a token; one the parser ignores leaves it in the body). Reply
quote markers are looked up in the beautifulsoup4 tree, whose elements carry the position of
their start tag.

html5lib is slow on hostile input (a 20,000-deep ``<div>`` took it 46 s), so callers check
:mod:`~mailroute.disclaimer.locate`'s size and depth limits before coming here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import html5lib
from bs4 import BeautifulSoup, Tag
from bs4.builder._html5lib import HTML5TreeBuilder
from html5lib import _tokenizer, constants

from mailroute.disclaimer.htmlscan import (
    HtmlPoints,
    document_end,
    hr_before,
    quote_marker,
    scan_html,
)

__all__ = ["parse_points"]

_END_TAG = constants.tokenTypes["EndTag"]
_START_TAG = constants.tokenTypes["StartTag"]
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class _Recorder:
    """Offsets of honoured end tags, collected while html5lib builds the tree."""

    def __init__(self) -> None:
        self.body_end: tuple[int, int] | None = None  # (line, column) after the tag
        self.html_end: tuple[int, int] | None = None
        self.body_start: tuple[int, int] | None = None


class _RecordingTokenizer(_tokenizer.HTMLTokenizer):  # type: ignore[misc]
    """html5lib's tokenizer, noting the position of the tokens the parser acts on."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        parser = self.parser
        recorder: _Recorder = parser.mailroute_recorder
        after_body = (parser.phases["afterBody"], parser.phases["afterAfterBody"])
        for token in super().__iter__():
            kind = token["type"]
            if kind not in (_END_TAG, _START_TAG):
                before = parser.phase
                yield token
                if before in after_body and parser.phase not in after_body:
                    recorder.body_end = recorder.html_end = None  # content reopened the body
                continue
            name = token["name"]
            position = self.stream.position()
            before = parser.phase
            yield token
            if kind == _START_TAG:
                if name == "body" and recorder.body_start is None:
                    recorder.body_start = position
                if before in after_body and parser.phase not in after_body:
                    recorder.body_end = recorder.html_end = None
            elif name == "body" and parser.phase is after_body[0]:
                recorder.body_end, recorder.html_end = position, None
            elif name == "html" and parser.phase is after_body[1]:
                recorder.html_end = position
            elif before in after_body and parser.phase not in after_body:
                recorder.body_end = recorder.html_end = None


class _RecordingParser(html5lib.HTMLParser):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mailroute_recorder = _Recorder()

    def mainLoop(self) -> None:
        self.tokenizer.__class__ = _RecordingTokenizer
        super().mainLoop()


class HtmlTooCostly(Exception):
    """The document makes html5lib do quadratic work: the caller uses the linear scan."""


#: Content html5lib moves out of a table ("foster parenting") before giving up on the parse:
#: each move looks up its place among the siblings, so N moves cost N² (131 KB of
#: ``<table>x<p>x<p>...`` took 14 s). Mail that is not built to hurt moves a handful.
MAX_FOSTER_PARENTED = 2_000


def _count_foster_parenting(tree: Any) -> None:
    """Make ``tree`` raise :class:`HtmlTooCostly` past :data:`MAX_FOSTER_PARENTED` moves."""
    find = tree.getTableMisnestedNodePosition
    moves = 0

    def counted() -> Any:
        nonlocal moves
        moves += 1
        if moves > MAX_FOSTER_PARENTED:
            raise HtmlTooCostly
        return find()

    tree.getTableMisnestedNodePosition = counted


class _RecordingBuilder(HTML5TreeBuilder):
    """beautifulsoup4's html5lib builder, driving the recording parser."""

    recorder: _Recorder | None = None

    def prepare_markup(self, markup: Any, user_specified_encoding: Any = None,
                       document_declared_encoding: Any = None,
                       exclude_encodings: Any = None) -> Iterator[tuple[Any, None, None, bool]]:
        """The markup as it is, without beautifulsoup4's "looks like XML" warning: mail HTML
        from Outlook often starts with an XML declaration, and it is HTML all the same."""
        self.user_specified_encoding = user_specified_encoding
        yield (markup, None, None, False)

    def feed(self, markup: Any) -> None:
        parser = _RecordingParser(tree=self.create_treebuilder)
        _count_foster_parenting(parser.tree)
        assert self.underlying_builder is not None
        self.underlying_builder.parser = parser
        parser.parse(markup)
        self.recorder = parser.mailroute_recorder
        self.underlying_builder.parser = None


class _Offsets:
    """(line, column) in html5lib's CR-normalised stream -> offset in the original text."""

    def __init__(self, html: str) -> None:
        self.html = html
        self.starts = [0, *(m.end() for m in _LINE_BREAK.finditer(html))]

    def offset(self, line: int, column: int) -> int:
        return min(self.starts[line - 1] + column, len(self.html))

    def tag_start(self, after: int, name: str, *, end_tag: bool) -> int:
        """Where the ``<name`` (or ``</name``) tag that ends just before ``after`` starts."""
        prefix = f"</{name}" if end_tag else f"<{name}"
        window = max(0, after - 65536)
        found = self.html[window:after].lower().rfind(prefix)
        return window + found if found >= 0 else after


def parse_points(html: str) -> HtmlPoints:
    """Insertion points of ``html`` as html5lib reads it (see :class:`HtmlPoints`)."""
    if "<" not in html:  # no markup: nothing to parse (and no beautifulsoup4 warning)
        return scan_html(html)
    builder = _RecordingBuilder()
    soup = BeautifulSoup(html, builder=builder)
    recorder = builder.recorder
    assert recorder is not None
    where = _Offsets(html)
    if recorder.body_end is not None:
        bottom = where.tag_start(where.offset(*recorder.body_end), "body", end_tag=True)
    elif recorder.html_end is not None:
        bottom = where.tag_start(where.offset(*recorder.html_end), "html", end_tag=True)
    else:
        bottom = document_end(html)
    if recorder.body_start is not None:
        top = where.offset(*recorder.body_start)
    else:
        top = scan_html(html).top
    return HtmlPoints(bottom=bottom, top=top, quote=_quote(soup, where), simple=True,
                      max_depth=-1)


def _attrs(tag: Tag) -> dict[str, str]:
    return {name: " ".join(value) if isinstance(value, list) else str(value)
            for name, value in tag.attrs.items()}


def _quote(soup: BeautifulSoup, where: _Offsets) -> int | None:
    for tag in soup.find_all(["div", "blockquote"]):
        kind = quote_marker(tag.name, _attrs(tag))
        if kind is None:
            continue
        if tag.sourceline is None or tag.sourcepos is None:
            return None
        start = where.tag_start(where.offset(tag.sourceline, tag.sourcepos + 1), tag.name,
                                end_tag=False)
        if kind == "outlook-header":
            return hr_before(where.html, start)
        return start
    return None
