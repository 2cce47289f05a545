"""The stack of open elements, kept the way an HTML5 tree builder keeps it, for its depth.

The linear scan (:mod:`~mailroute.disclaimer.htmlscan`) needs the nesting depth html5lib will
build, to keep deep documents away from it. Counting "start tag +1, any end tag -1" is wrong:
``<div></x>`` repeated left that count at 0 while html5lib nested thousands of ``div``. Here an
end tag pops only its own open element, and only when a tree builder would (not across a
scope boundary such as ``table``, not across a "special" element for ``</span>``-like tags);
a start tag closes what it implies (``<p>`` closes an open ``p``, ``<li>`` an ``li``, ``<td>``
a cell). Where HTML's rules are richer (the adoption agency, foster parenting, implied
``tbody``) the model errs towards a deeper count, never a shallower one by more than the
implied elements.

Every operation is amortised O(1): each name and each kind of boundary keeps the stack
positions of its open elements, so no end tag walks the stack. Past :data:`DEPTH_CAP` open
elements nothing more is recorded (the depth stays at the cap): memory stays bounded, and a
document that deep is past any sensible limit anyway.
"""

from __future__ import annotations

__all__ = ["DEPTH_CAP", "OpenElements"]

DEPTH_CAP = 4096

_SCOPE = frozenset({"applet", "caption", "html", "table", "td", "th", "marquee", "object",
                    "template", "mi", "mo", "mn", "ms", "mtext", "annotation-xml",
                    "foreignobject", "desc", "title"})
_SPECIAL = _SCOPE | frozenset({
    "address", "area", "article", "aside", "base", "basefont", "bgsound", "blockquote", "body",
    "br", "button", "center", "col", "colgroup", "dd", "details", "dir", "div", "dl", "dt",
    "embed", "fieldset", "figcaption", "figure", "footer", "form", "frame", "frameset", "h1",
    "h2", "h3", "h4", "h5", "h6", "head", "header", "hgroup", "hr", "iframe", "img", "input",
    "keygen", "li", "link", "listing", "main", "menu", "meta", "nav", "noembed", "noframes",
    "noscript", "ol", "p", "param", "plaintext", "pre", "script", "search", "section",
    "select", "source", "style", "summary", "tbody", "textarea", "tfoot", "thead", "tr",
    "track", "ul", "wbr", "xmp"})
_FOREIGN = frozenset({"svg", "math"})
# Boundary kinds: the elements that stop a search down the stack.
_KINDS: dict[str, frozenset[str]] = {
    "scope": _SCOPE,
    "button": _SCOPE | {"button"},
    "special": _SPECIAL,
    "list": _SPECIAL - {"address", "div", "p"},  # what stops <li>, <dd>, <dt> closing one
    "table": frozenset({"html", "table", "template"}),
    "foreign": _FOREIGN,
}
_CLOSES_P = frozenset({
    "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div",
    "dl", "fieldset", "figcaption", "figure", "footer", "header", "hgroup", "main", "menu",
    "nav", "ol", "p", "search", "section", "summary", "ul", "h1", "h2", "h3", "h4", "h5", "h6",
    "pre", "listing", "form", "li", "dd", "dt", "plaintext", "table", "hr", "xmp"})
# A start tag -> (the open elements it closes, the boundary that stops the search).
_IMPLIED: dict[str, tuple[frozenset[str], str]] = {
    "li": (frozenset({"li"}), "list"),
    "dd": (frozenset({"dd", "dt"}), "list"),
    "dt": (frozenset({"dd", "dt"}), "list"),
    "td": (frozenset({"td", "th"}), "table"),
    "th": (frozenset({"td", "th"}), "table"),
    "tr": (frozenset({"tr"}), "table"),
    "button": (frozenset({"button"}), "scope"),
    "a": (frozenset({"a"}), "special"),
}
_P = frozenset({"p"})
_HEAD = frozenset({"head"})
_KINDS_OF: dict[str, tuple[str, ...]] = {}


def _kinds_of(name: str) -> tuple[str, ...]:
    """The boundary kinds ``name`` belongs to (cached: a scan asks per tag)."""
    kinds = _KINDS_OF.get(name)
    if kinds is None:
        kinds = tuple(kind for kind, members in _KINDS.items() if name in members)
        if len(_KINDS_OF) < 1024:  # a document can invent any number of names
            _KINDS_OF[name] = kinds
    return kinds
# A start tag -> the elements it closes only when one of them is the current node.
_CLOSES_CURRENT: dict[str, frozenset[str]] = {
    **{h: frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
       for h in ("h1", "h2", "h3", "h4", "h5", "h6")},
    "option": frozenset({"option"}),
    "optgroup": frozenset({"option", "optgroup"}),
    **{r: frozenset({"rb", "rp", "rt", "rtc"}) for r in ("rb", "rp", "rt", "rtc")},
}


class OpenElements:
    """The open elements of a document being scanned, and the deepest nesting seen."""

    __slots__ = ("_kinds", "_names", "_positions", "max_depth")

    def __init__(self) -> None:
        self._names: list[str] = []
        self._positions: dict[str, list[int]] = {}
        self._kinds: dict[str, list[int]] = {kind: [] for kind in _KINDS}
        self.max_depth = 0

    @property
    def depth(self) -> int:
        """The number of open elements (at most :data:`DEPTH_CAP`)."""
        return len(self._names)

    def in_foreign(self) -> bool:
        """True inside ``svg`` or ``math``, where ``/>`` closes an element."""
        return bool(self._kinds["foreign"])

    def start(self, name: str, *, self_closing: bool) -> None:
        """A start tag of a non-void element that is not raw text."""
        if len(self._names) >= DEPTH_CAP:
            return
        if name in _CLOSES_P:
            self._close(_P, "button")
        implied = _IMPLIED.get(name)
        if implied is not None:
            self._close(*implied)
        current = _CLOSES_CURRENT.get(name)
        if current is not None and self._names and self._names[-1] in current:
            self._pop_to(len(self._names) - 1)
        if name == "body":
            self._close(_HEAD, "table")
            return
        if self_closing and (name in _FOREIGN or self.in_foreign()):
            return  # HTML ignores "/>" on its own elements, foreign content honours it
        index = len(self._names)
        self._names.append(name)
        self._positions.setdefault(name, []).append(index)
        for kind in _kinds_of(name):
            self._kinds[kind].append(index)
        self.max_depth = max(self.max_depth, index + 1)

    def end(self, name: str) -> None:
        """An end tag: pops its element when a tree builder would, else nothing."""
        positions = self._positions.get(name)
        if not positions:
            return
        nearest = positions[-1]
        stops = self._kinds["scope" if name in _SPECIAL else "special"]
        if not stops or stops[-1] <= nearest:
            self._pop_to(nearest)

    def _close(self, names: frozenset[str], boundary: str) -> None:
        """Pop to the nearest open element named in ``names`` unless a ``boundary`` element
        is open above it."""
        nearest = -1
        for name in names:
            positions = self._positions.get(name)
            if positions:
                nearest = max(nearest, positions[-1])
        stops = self._kinds[boundary]
        if nearest >= 0 and (not stops or stops[-1] <= nearest):
            self._pop_to(nearest)

    def _pop_to(self, index: int) -> None:
        """Pop the element at ``index`` and every element above it."""
        names = self._names
        while len(names) > index:
            name = names.pop()
            self._positions[name].pop()
            for kind in _kinds_of(name):
                self._kinds[kind].pop()
