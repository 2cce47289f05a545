"""``html.escape`` and ``html.unescape`` that import :mod:`html` only for text that has
something to escape or decode.

``import html`` loads its table of 2,231 named character references, about a millisecond of
a per-message process's start-up, and most templates, directory values and message bodies
hold no ``&`` (or nothing to escape). The results are those of the standard functions.
"""

from __future__ import annotations

__all__ = ["escape", "unescape"]

_MARKUP = "&<>"
_QUOTES = "\"'"


def escape(text: str, *, quote: bool = True) -> str:
    """``html.escape(text, quote=quote)``."""
    special = _MARKUP + _QUOTES if quote else _MARKUP
    if not any(ch in text for ch in special):
        return text
    import html

    return html.escape(text, quote=quote)


def unescape(text: str) -> str:
    """``html.unescape(text)``."""
    if "&" not in text:
        return text
    import html

    return html.unescape(text)
