"""A linear scan of an HTML document for the offsets a disclaimer can be inserted at.

One left-to-right pass with compiled regular expressions (no backtracking across the
document, no recursion): tags, comments, doctypes and the raw-text elements whose content is
not markup (``script``, ``style``, ``textarea``, ``title`` ...) are skipped the way an HTML5
tokenizer skips them. The result is trusted on its own only when the scan saw nothing an
HTML5 parser could read differently (``simple``); otherwise html5lib decides, and this scan
is the bounded fallback for documents too large or too deep for html5lib.
"""

from __future__ import annotations

import re

from mailroute.disclaimer.htmlstack import OpenElements
from mailroute.patterns import on_first_use
from mailroute.records import record

__all__ = ["HtmlPoints", "quote_marker", "scan_html"]

_NON_SPACE = re.compile(r"[^\t\n\f\r ]")
_SPACES = ("\t", "\n", "\f", "\r", " ", "/")
# Shorter attribute text holds fewer attributes than any sensible limit: not counted.
_SHORT_TAG = 256
_OPEN = re.compile(r"<(?:!--|[!?/A-Za-z])")
# Possessive quantifiers throughout: the engine keeps no backtracking state per attribute, so
# an unterminated tag with millions of attributes costs one linear pass and no memory (with
# plain "*" the failed match of "<a b b b ..." held about 190 bytes per input byte).
_START = re.compile(
    r"<([A-Za-z][^\t\n\f\r />\x00]*+)"
    r"((?:[\t\n\f\r ]++[^\t\n\f\r \"'>/=\x00]++"
    r"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r \"'=<>`]++))?+)*+)"
    r"[\t\n\f\r ]*+(/?)>")
_END = re.compile(r"</([A-Za-z][^\t\n\f\r />\x00]*+)[\t\n\f\r ]*+>")
_LENIENT_TAG = on_first_use(r"</?([A-Za-z][^\t\n\f\r />\x00]*+)[^>]*+>?")
_COMMENT_END = on_first_use(r"--!?>")
_ATTR = on_first_use(
    r"([^\t\n\f\r \"'>/=\x00]+)(?:[\t\n\f\r ]*=[\t\n\f\r ]*"
    r"(?:\"([^\"]*)\"|'([^']*)'|([^\t\n\f\r \"'=<>`]+)))?")
_RAW_TEXT = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes",
                       "textarea", "title"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                   "meta", "param", "source", "track", "wbr", "image", "keygen", "basefont",
                   "bgsound", "frame", "menuitem"})
# Elements after which an HTML5 parser no longer treats </body> the simple way.
_UNSIMPLE = frozenset({"svg", "math", "template", "frameset", "plaintext", "select"})
_TABLE = "table"
_HR_BEFORE = on_first_use(r"<hr(?:[\t\n\f\r /][^<>]*)?>[\t\n\f\r ]*\Z", re.IGNORECASE)
_HEAD_ONLY = frozenset({"head", "meta", "link", "style", "title", "base", "script", "noscript",
                        "template"})
_MARKER_HINTS = ("appendonsend", "rplyfwdmsg", "reference-message-container", "gmail_quote",
                 "moz-cite-prefix", "yahoo_quoted", "cite", "border-top")


@record(frozen=True)
class HtmlPoints:
    """Offsets (in characters of the decoded HTML) where a disclaimer may go.

    Attributes:
        bottom: just before the closing ``</body>`` (or ``</html>``), else the end (before
            the final line breaks).
        top: just after the ``<body>`` start tag (or ``</head>``, ``<html>``, the doctype).
        quote: the start of the first reply-quote marker (Outlook, Gmail, Apple Mail,
            Thunderbird, Yahoo), or ``None``.
        simple: nothing in the document can be read differently by an HTML5 parser.
        max_depth: the deepest element nesting the scan counted.
        max_attributes: the most attributes one tag may have (white space runs in the tag;
            0 when every tag is short): html5lib's time grows with the square of a tag's
            attributes.
    """

    bottom: int
    top: int
    quote: int | None
    simple: bool
    max_depth: int
    max_attributes: int = 0


def quote_marker(name: str, attrs: dict[str, str]) -> str | None:
    """Which reply-quote marker the start tag ``name`` with ``attrs`` is, if any."""
    ident = attrs.get("id", "").lower()
    classes = attrs.get("class", "").lower().split()
    if name == "div":
        if ident in ("appendonsend", "x_appendonsend"):
            return "outlook-appendonsend"
        if ident in ("divrplyfwdmsg", "x_divrplyfwdmsg"):
            return "outlook-header"
        if ident == "mail-editor-reference-message-container":
            return "outlook-mac"
        if "gmail_quote" in classes:
            return "gmail"
        if "moz-cite-prefix" in classes:
            return "thunderbird"
        if "yahoo_quoted" in classes:
            return "yahoo"
        style = "".join(attrs.get("style", "").lower().split())
        if "border-top:solid#e1e1e1" in style or "border-top:solid#b5c4df" in style:
            return "outlook-desktop"  # the line above "From: ... Sent: ..." in Word HTML
    if name == "blockquote" and attrs.get("type", "").lower() == "cite":
        return "cite"
    return None


def hr_before(html: str, start: int) -> int:
    """``start``, or the start of an ``<hr>`` tag that precedes it with only white space
    between (Outlook's separator line above its reply header)."""
    match = _HR_BEFORE().search(html, max(0, start - 512), start)
    return match.start() if match else start


def parse_attributes(text: str) -> dict[str, str]:
    """Attribute name (lower case) -> value of a start tag's attribute text; first wins."""
    attrs: dict[str, str] = {}
    for match in _ATTR().finditer(text):
        name = match.group(1).lower()
        if name not in attrs:
            attrs[name] = next((g for g in match.group(2, 3, 4) if g is not None), "")
    return attrs


class _State:
    """The mutable state of one scan (kept out of the frozen result)."""

    __slots__ = ("after_body", "body_end", "body_seen", "body_start_end", "doctype_end",
                 "head_end", "html_end", "html_start_end", "max_attributes", "open", "quote",
                 "simple", "tables")

    def __init__(self) -> None:
        self.simple = True
        self.max_attributes = 0
        self.open = OpenElements()
        self.tables = 0
        self.body_end: int | None = None
        self.html_end: int | None = None
        self.after_body = False
        self.body_start_end: int | None = None
        self.head_end: int | None = None
        self.html_start_end: int | None = None
        self.doctype_end: int | None = None
        self.quote: int | None = None
        self.body_seen = False

    def attributes(self, tag: str) -> None:
        """Note the attributes ``tag`` (the text after its name, longer than
        :data:`_SHORT_TAG`) can hold, at most: its runs of white space and ``/``."""
        if len(tag) > self.max_attributes:  # a tag has fewer attributes than characters
            runs = sum(tag.count(space) for space in _SPACES)
            self.max_attributes = max(self.max_attributes, runs)

    def content(self) -> None:
        """Non-space text or an element after </body>: the parser reopens the body.

        Where the end then is depends on parser details: html5lib decides such documents.
        """
        if self.after_body:
            self.body_end = self.html_end = None
            self.after_body = False
            self.simple = False


def scan_html(html: str) -> HtmlPoints:
    """Scan ``html`` once and return its insertion points."""
    state = _State()
    length = len(html)
    pos = 0
    while pos < length:
        match = _OPEN.search(html, pos)
        text_end = match.start() if match else length
        if state.after_body and _NON_SPACE.search(html, pos, text_end):
            state.content()
        if match is None:
            break
        pos = _step(html, match.start(), state)
    return _points(state, document_end(html))


def document_end(html: str) -> int:
    """Where a disclaimer goes in a document without ``</body>`` and ``</html>``: at the
    end, before its final line breaks (the body goes on ending with one)."""
    return len(html.rstrip("\r\n"))


def _step(html: str, start: int, state: _State) -> int:
    """Consume the markup at ``start``; return the offset after it."""
    second = html[start + 1]
    if second == "/":
        return _end_tag(html, start, state)
    if second != "!" and second != "?":
        return _start_tag(html, start, state)
    if html.startswith("<!--", start):
        return _comment(html, start, state)
    if html.startswith("<![CDATA[", start):
        state.simple = False
    close = html.find(">", start)  # doctype or bogus comment
    end = len(html) if close < 0 else close + 1
    if html[start:start + 9].lower() == "<!doctype" and state.doctype_end is None:
        state.doctype_end = end
    return end


def _comment(html: str, start: int, state: _State) -> int:
    body = start + 4
    if html.startswith(">", body) or html.startswith("->", body):
        state.simple = False
        return html.find(">", body) + 1
    close = _COMMENT_END().search(html, body)  # one search: "-->" or "--!>", whichever is first
    if close is None:
        state.simple = False
        return len(html)
    if close.end() - close.start() == 4:
        state.simple = False
    return close.end()


def _end_tag(html: str, start: int, state: _State) -> int:
    match = _END.match(html, start)
    if match is None:
        state.simple = False
        lenient = _LENIENT_TAG().match(html, start)
        if lenient is None:  # "</" + non-letter: a bogus comment up to ">"
            close = html.find(">", start)
            return len(html) if close < 0 else close + 1
        name = lenient.group(1).lower()
        end = lenient.end()
        if end - lenient.end(1) > _SHORT_TAG:
            state.attributes(html[lenient.end(1):end])
    else:
        name = match.group(1).lower()
        end = match.end()
    if name not in ("body", "html"):
        state.open.end(name)
    if name == _TABLE:
        state.tables = max(0, state.tables - 1)
    if name in ("body", "html") and state.tables:
        state.simple = False  # an open table makes a parser ignore these end tags
    if name == "body":
        state.body_end, state.html_end, state.after_body = start, None, True
    elif name == "html":
        state.html_end = start
        state.after_body = True
    else:
        state.content()
        if name == "head":
            state.head_end = end
    return end


def _start_tag(html: str, start: int, state: _State) -> int:
    match = _START.match(html, start)
    if match is None:
        state.simple = False
        lenient = _LENIENT_TAG().match(html, start)
        assert lenient is not None  # _OPEN matched "<" + letter
        state.content()
        if lenient.end() - lenient.end(1) > _SHORT_TAG:
            state.attributes(html[lenient.end(1):lenient.end()])
        name = lenient.group(1).lower()
        if name not in _VOID:  # html5lib opens it all the same (<div a=""b>): count it
            state.open.start(name, self_closing=lenient.group().endswith("/>"))
        return lenient.end()
    name = match.group(1).lower()
    end = match.end()
    if match.end(2) - match.start(2) > _SHORT_TAG:
        state.attributes(match.group(2))
    if name in _UNSIMPLE:
        state.simple = False
    if name == "html":
        if state.html_start_end is None:
            state.html_start_end = end
        return end
    if state.after_body:
        state.content()
    if name in _HEAD_ONLY and state.body_seen:
        state.simple = False  # a parser drops or moves these once the body has begun
    if name not in _HEAD_ONLY:
        state.body_seen = True
    if name == "body":
        state.open.start(name, self_closing=False)
        if state.body_start_end is None:
            state.body_start_end = end
        return end
    if name == _TABLE:
        state.tables += 1
    if name not in _VOID and name not in _RAW_TEXT:
        state.open.start(name, self_closing=bool(match.group(3)))
    if state.quote is None and name in ("div", "blockquote"):
        raw_attrs = match.group(2)
        lowered = raw_attrs.lower()
        if any(hint in lowered for hint in _MARKER_HINTS):
            kind = quote_marker(name, parse_attributes(raw_attrs))
            if kind is not None:
                state.quote = hr_before(html, start) if kind == "outlook-header" else start
    if name in _RAW_TEXT:
        return _raw_text(html, name, end, state)
    return end


def _raw_text(html: str, name: str, end: int, state: _State) -> int:
    closing = re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE).search(html, end)
    if closing is None:
        state.simple = False
        return len(html)
    if name == "script" and "<!--" in html[end:closing.start()]:
        state.simple = False
    close = html.find(">", closing.start())
    return len(html) if close < 0 else close + 1


def _points(state: _State, end: int) -> HtmlPoints:
    bottom = next((p for p in (state.body_end, state.html_end) if p is not None), end)
    top = next((p for p in (state.body_start_end, state.head_end, state.html_start_end,
                            state.doctype_end) if p is not None), 0)
    return HtmlPoints(bottom=bottom, top=top, quote=state.quote, simple=state.simple,
                      max_depth=state.open.max_depth, max_attributes=state.max_attributes)
