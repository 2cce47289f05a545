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

from typing import NamedTuple

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
# A start tag -> the elements it closes only when one of them is the current node.
_CLOSES_CURRENT: dict[str, frozenset[str]] = {
    **{h: frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
       for h in ("h1", "h2", "h3", "h4", "h5", "h6")},
    "option": frozenset({"option"}),
    "optgroup": frozenset({"option", "optgroup"}),
    **{r: frozenset({"rb", "rp", "rt", "rtc"}) for r in ("rb", "rp", "rt", "rtc")},
}


_P = frozenset({"p"})
_HEAD = frozenset({"head"})


class _Rule(NamedTuple):
    """What a tag name does to the stack (looked up once per tag)."""

    closes_p: bool
    implied: tuple[frozenset[str], str] | None
    closes_current: frozenset[str] | None
    kinds: tuple[str, ...]
    end_boundary: str


_RULES: dict[str, _Rule] = {}


def _rule(name: str) -> _Rule:
    """The rule for ``name`` (cached for the first 1024 names: a document can invent any)."""
    rule = _RULES.get(name)
    if rule is None:
        rule = _Rule(name in _CLOSES_P, _IMPLIED.get(name), _CLOSES_CURRENT.get(name),
                     tuple(kind for kind, members in _KINDS.items() if name in members),
                     "scope" if name in _SPECIAL else "special")
        if len(_RULES) < 1024:
            _RULES[name] = rule
    return rule


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
        names, positions = self._names, self._positions
        if len(names) >= DEPTH_CAP:
            return
        rule = _rule(name)
        if rule.closes_p and positions.get("p"):
            self._close(_P, "button")
        if rule.implied is not None:
            self._close(*rule.implied)
        if rule.closes_current is not None and names and names[-1] in rule.closes_current:
            self._pop_to(len(names) - 1)
        if name == "body":
            self._close(_HEAD, "table")
            return
        if self_closing and (name in _FOREIGN or self.in_foreign()):
            return  # HTML ignores "/>" on its own elements, foreign content honours it
        index = len(names)
        names.append(name)
        own = positions.get(name)
        if own is None:
            positions[name] = [index]
        else:
            own.append(index)
        for kind in rule.kinds:
            self._kinds[kind].append(index)
        if index >= self.max_depth:
            self.max_depth = index + 1

    def end(self, name: str) -> None:
        """An end tag: pops its element when a tree builder would, else nothing."""
        positions = self._positions.get(name)
        if not positions:
            return
        nearest = positions[-1]
        stops = self._kinds[_rule(name).end_boundary]
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
            for kind in _rule(name).kinds:
                self._kinds[kind].pop()
