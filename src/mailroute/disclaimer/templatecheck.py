"""What an HTML template may contain, checked once when the policy is loaded.

A template is the administrator's own markup, so most of it is trusted; but a few shapes turn
a harmless value into markup or script, or make the footer read differently from what it says.
They are refused (:func:`template_problem`, a configuration error at load time):

- a URL attribute (``href``, ``src`` ...) whose static value uses ``javascript:``,
  ``vbscript:`` or ``data:`` (after entity decoding, as a browser reads it), except an inline
  PNG, GIF, JPEG or WebP image in ``src`` (a logo; SVG can carry script);
- a variable inside a tag but not inside a quoted attribute value (``<a href={{url}}>`` or
  ``<a {{attrs}}>``: a value with a space or ``=`` would add attributes), as a tag name, or
  in an event handler attribute (``onclick``: escaping does not make a value safe in
  script);
- bidi embedding, override and isolate characters (U+202A-U+202E, U+2066-U+2069) anywhere in
  a template, text or HTML: they reorder what the reader sees ("Trojan Source").

Values are cleaned at render time instead (:mod:`~mailroute.disclaimer.template`); a variable
that decides the scheme of a URL attribute (nothing static before it in the value fixes a
scheme) is rendered only when its value is a relative URL or uses a scheme of
:data:`SAFE_SCHEMES`, else as ``about:invalid`` (:func:`safe_url`).
"""

from __future__ import annotations

import re

from mailroute.disclaimer.entities import unescape
from mailroute.patterns import on_first_use

__all__ = ["SAFE_SCHEMES", "safe_url", "template_problem", "url_slots"]

SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel", "sms", "cid", "ftp"})
_DANGEROUS = ("javascript:", "vbscript:", "data:")
_URL_ATTRIBUTES = frozenset({
    "href", "src", "action", "formaction", "background", "cite", "data", "poster", "lowsrc",
    "dynsrc", "longdesc", "usemap", "codebase", "classid", "archive", "icon", "manifest",
    "ping", "profile", "srcset", "xlink:href"})
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_SLOT = "\x00"  # stands for a variable while the markup is read
_TAG = re.compile(r"<[A-Za-z][^\t\n\f\r />]*+([^>]*+)>?")
_ATTRIBUTE = re.compile(
    r"([^\t\n\f\r />=]++)[\t\n\f\r ]*+"
    r"(?:=[\t\n\f\r ]*+(?:\"([^\"]*+)\"|'([^']*+)'|([^\t\n\f\r >]*+)))?")
_QUOTED = re.compile(r"=[\t\n\f\r ]*+(?:\"[^\"]*+\"|'[^']*+')")
_URL_NOISE = re.compile(r"[\t\n\r]")
_SCHEME_END = re.compile(r"[:/?#]")
_IMAGE = on_first_use(r"data:image/(?:png|gif|jpeg|webp)[;,]")  # an inline logo; not SVG
INVALID_URL = "about:invalid"


def template_problem(source: str, *, is_html: bool,
                     pieces: tuple[str | tuple[str], ...] = ()) -> str | None:
    """Why ``source`` is refused, or ``None`` (see the module docstring).

    ``pieces`` is the parsed template (static strings and variables), for HTML templates.
    """
    if _BIDI.search(source):
        return ("contains a bidi embedding, override or isolate character "
                "(U+202A-U+202E, U+2066-U+2069), which reorders what the reader sees")
    if not is_html:
        return None
    joined = "".join(p if isinstance(p, str) else _SLOT for p in pieces)
    if re.search(r"</?\x00", joined):
        return "a variable as a tag name"
    for tag in _TAG.finditer(joined):
        if _SLOT in _QUOTED.sub("", tag.group(1)):
            return ("a variable inside a tag but not inside a quoted attribute value "
                    '(write name="{{variable}}")')
    for name, value in _attributes(pieces):
        if _SLOT in value and name.startswith("on"):
            return f"a variable in the event handler attribute {name!r}"
        if name in _URL_ATTRIBUTES:
            static = _browser_url(value.split(_SLOT, 1)[0])
            if static.startswith(_DANGEROUS) and not (name == "src" and _IMAGE().match(static)):
                return f"attribute {name!r} uses a {static.split(':', 1)[0]}: URL"
    return None


def url_slots(pieces: tuple[str | tuple[str], ...]) -> frozenset[int]:
    """Indices of the variables in ``pieces`` that decide the scheme of a URL attribute."""
    slots: set[int] = set()
    for name, value in _attributes(pieces, numbered=True):
        if name not in _URL_ATTRIBUTES:
            continue
        for match in re.finditer(r"\x00(\d+)\x00", value):
            before = re.sub(r"\x00\d+\x00", "", value[:match.start()])
            if not _SCHEME_END.search(_browser_url(before)):
                slots.add(int(match.group(1)))
    return frozenset(slots)


def safe_url(value: str) -> str:
    """``value`` when it is a relative URL or has a scheme of :data:`SAFE_SCHEMES`, else
    ``about:invalid``."""
    url = _browser_url(value)
    end = _SCHEME_END.search(url)
    if end is None or end.group() != ":":
        return value
    return value if url[:end.start()] in SAFE_SCHEMES else INVALID_URL


def _browser_url(value: str) -> str:
    """An attribute value as a browser reads its scheme: entities decoded, tabs and line
    breaks dropped, leading controls and spaces stripped, in lower case."""
    return _URL_NOISE.sub("", unescape(value)).lstrip("\x00\x01\x02\x03\x04\x05\x06"
                                                         "\x07\x08\x0b\x0c\x0e\x0f\x10\x11"
                                                         "\x12\x13\x14\x15\x16\x17\x18\x19"
                                                         "\x1a\x1b\x1c\x1d\x1e\x1f ").lower()


def _attributes(pieces: tuple[str | tuple[str], ...], *,
                numbered: bool = False) -> list[tuple[str, str]]:
    """``(name, value)`` of every attribute of every start tag in the template, with each
    variable as ``\\0`` (or ``\\0<index>\\0`` with ``numbered``)."""
    joined = "".join(
        p if isinstance(p, str) else (f"{_SLOT}{i}{_SLOT}" if numbered else _SLOT)
        for i, p in enumerate(pieces))
    found: list[tuple[str, str]] = []
    for tag in _TAG.finditer(joined):
        for attribute in _ATTRIBUTE.finditer(tag.group(1)):
            value = next((v for v in attribute.group(2, 3, 4) if v is not None), "")
            found.append((attribute.group(1).lower(), value))
    return found
