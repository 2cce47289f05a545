"""Disclaimer templates: ``{{name}}`` and Exchange-style ``%%Name%%`` tokens.

Variable names are compared without case, spaces, ``_``, ``-`` or ``.``, so ``{{display_name}}``,
``%%DisplayName%%`` and a CSV column ``Display Name`` are one variable; a few Exchange token
names have aliases (``%%PhoneNumber%%`` is ``phone``). Values are stripped of control,
line-separator, bidi-override and direction-mark characters; in HTML they are escaped as well,
so a value can neither add markup nor start a new line (and so never a header field), and a
value that decides a link's scheme must be a relative, ``http(s):``, ``mailto:`` ... URL.

The *fingerprint* of a template is its static text (everything but the tokens) with white
space and reply quote markers removed: a body that contains every static piece in order
already carries the disclaimer, even when a reply client re-wrapped or quoted it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from mailroute.digests import sha256
from mailroute.disclaimer.entities import escape, unescape
from mailroute.disclaimer.templatecheck import safe_url, url_slots
from mailroute.records import record

__all__ = [
    "MIN_FINGERPRINT_ALNUM",
    "MISSING_POLICIES",
    "Template",
    "canonical_name",
    "clean_value",
    "compact_text",
    "contains_pieces",
    "html_to_compact_text",
    "strip_tags",
]

MISSING_POLICIES = ("empty", "skip")

_TOKEN = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_. -]{0,63}?)\s*\}\}"
                    r"|%%([A-Za-z][A-Za-z0-9_]{0,63})%%")
_NAME_NOISE = re.compile(r"[^a-z0-9]")
_ALIASES = {
    "name": "displayname",
    "fullname": "displayname",
    "jobtitle": "title",
    "phonenumber": "phone",
    "telephone": "phone",
    "telephonenumber": "phone",
    "mobilenumber": "mobile",
    "mobilephone": "mobile",
    "faxnumber": "fax",
    "emailaddress": "email",
    "mail": "email",
    "primarysmtpaddress": "email",
    "address": "email",
    "companyname": "company",
    "countryorregion": "country",
    "zipcode": "postalcode",
    "streetaddress": "street",
}
# C0/C1 controls, line and paragraph separators, bidi embeddings, overrides and isolates,
# and the invisible direction marks (LRM, RLM, ALM): a value is one run of text, and marks in
# it can only make the footer read in another order than it is written.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                     "\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]*+>")
_SLICE = 65_536
_LONGEST_ENTITY = 40  # "&" and up to 32 name characters and ";" (html.unescape's limit)
_MIN_PIECE_ALNUM = 3
#: Letters and digits a template's static text needs before any rendering of it counts as
#: "already there": "Tel. {{phone}}" alone would find a partner's quoted "Tel.".
MIN_FINGERPRINT_ALNUM = 16
_ASCII_WORD = re.compile(r"[A-Za-z0-9]{3,}")


def canonical_name(name: str) -> str:
    """The variable a token or column name refers to (``Display Name`` -> ``displayname``)."""
    key = _NAME_NOISE.sub("", name.lower())
    return _ALIASES.get(key, key)


def clean_value(value: str) -> str:
    """``value`` with every control, line-separator and bidi character turned into a space."""
    return _SPACE.sub(" ", _UNSAFE.sub(" ", value)).strip()


def compact_text(text: str) -> str:
    """Text with reply quote markers (``> ``) and all white space removed, for matching.

    Done in slices of 64 Ki characters, so that the lists of lines and words a slice needs
    stay small whatever the body's size (48 MB of short ``>`` lines held 4.3 GB as one list).
    """
    out: list[str] = []
    leading = True
    for start in range(0, len(text), _SLICE):
        compacted, leading = _compact_slice(text[start:start + _SLICE], leading=leading)
        out.append(compacted)
    return "".join(out)


def html_to_compact_text(markup: str) -> str:
    """The text of an HTML fragment, compacted as :func:`compact_text` does.

    Linear in time and memory: the markup is read in slices cut right after a ``>`` (no tag
    spans a cut), and their text decoded and compacted 64 Ki characters at a time; a possible
    entity at the end of a piece waits for the next one, where its ``;`` may be.
    """
    out: list[str] = []
    leading = True
    carry = ""
    for chunk in _tag_slices(markup):
        stripped = strip_tags(chunk)
        for start in range(0, len(stripped), _SLICE):
            text = carry + stripped[start:start + _SLICE]
            amp = text.rfind("&", max(0, len(text) - _LONGEST_ENTITY))
            text, carry = (text, "") if amp < 0 else (text[:amp], text[amp:])
            compacted, leading = _compact_slice(unescape(text), leading=leading)
            out.append(compacted)
    out.append(_compact_slice(unescape(carry), leading=leading)[0])
    return "".join(out)


def strip_tags(markup: str, replacement: str = "") -> str:
    """``markup`` with every ``<...>`` replaced, in linear time.

    A ``<`` with no ``>`` after it is text: the search for its ``>`` is never started (the
    plain regex searched to the end once per such ``<``, quadratic on ``<<<<...``).
    """
    last = markup.rfind(">")
    if last < 0:
        return markup
    return _TAG.sub(replacement, markup[:last + 1]) + markup[last + 1:]


def _tag_slices(markup: str) -> Iterator[str]:
    """``markup`` in consecutive slices of at least :data:`_SLICE` characters (but the last),
    each ending right after a ``>``, so that every tag lies within one slice."""
    position, size = 0, len(markup)
    while position < size:
        cut = markup.find(">", position + _SLICE)
        end = size if cut < 0 else cut + 1
        yield markup[position:end]
        position = end


def _compact_slice(text: str, *, leading: bool) -> tuple[str, bool]:
    """One slice compacted, and whether its end is still within a line's leading quote
    markers (``leading``: the slice starts so, e.g. at a line start)."""
    tail = text[text.rfind("\n") + 1:]
    still = ("\n" in text or leading) and not tail.strip(" \t>")
    if ">" in text:  # quote markers start lines; white space goes below anyway
        lines = text.split("\n")
        first = lines[0].lstrip(" \t>") if leading else lines[0]
        text = first + "".join(line.lstrip(" \t>") for line in lines[1:])
    return "".join(text.split()), still


@record(frozen=True)
class Template:
    """A parsed template.

    Attributes:
        source: the template as written.
        is_html: True for an HTML template (values are escaped when rendered).
        pieces: static strings and variables in order; a variable is ``(canonical name,)``.
        fingerprint: the compacted static pieces that identify this template in a body.
            Pieces with fewer than three letters or digits (``--``, ``|``) are left out; an
            all-variable template has an empty fingerprint and is recognised by its token.
        token: a short digest of the template source, written into HTML insertions.
        anchor: the longest ASCII word of the static text (empty when there is none): a body
            without it cannot carry the fingerprint, which saves compacting the body.
        url_slots: indices in ``pieces`` of the variables that decide the scheme of a URL
            attribute (rendered through :func:`~mailroute.disclaimer.templatecheck.safe_url`).
        distinctive: True when the fingerprint holds :data:`MIN_FINGERPRINT_ALNUM` letters
            and digits or more, enough to tell any rendering of the template from other text.
    """

    source: str
    is_html: bool
    pieces: tuple[str | tuple[str], ...]
    fingerprint: tuple[str, ...]
    token: str
    anchor: str
    url_slots: frozenset[int] = frozenset()
    distinctive: bool = False

    @classmethod
    def parse(cls, source: str, *, is_html: bool) -> Template:
        """Split ``source`` into static text and variables."""
        pieces: list[str | tuple[str]] = []
        last = 0
        for match in _TOKEN.finditer(source):
            if match.start() > last:
                pieces.append(source[last:match.start()])
            pieces.append((canonical_name(match.group(1) or match.group(2)),))
            last = match.end()
        if last < len(source):
            pieces.append(source[last:])
        found: list[str] = []
        words: list[str] = []
        for plain in _static_texts(pieces, is_html=is_html):
            text = compact_text(plain)
            if sum(ch.isalnum() for ch in text) >= _MIN_PIECE_ALNUM:
                found.append(text)
                words.extend(_ASCII_WORD.findall(plain))
        kind = b"html\0" if is_html else b"text\0"
        token = sha256(kind + source.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        anchor = max(words, key=len, default="")
        slots = url_slots(tuple(pieces)) if is_html else frozenset[int]()
        distinctive = sum(ch.isalnum() for piece in found for ch in piece) \
            >= MIN_FINGERPRINT_ALNUM
        return cls(source, is_html, tuple(pieces), tuple(found), token, anchor, slots,
                   distinctive)

    @property
    def variables(self) -> frozenset[str]:
        """The canonical names of every variable used."""
        return frozenset(p[0] for p in self.pieces if isinstance(p, tuple))

    def uses(self, name: str) -> bool:
        """True when the variable ``name`` (canonical) is used."""
        return (name,) in self.pieces

    def render(self, values: Mapping[str, str], *, missing: str = "empty") -> str | None:
        """The template with every variable replaced by its cleaned (and escaped) value.

        Args:
            values: canonical variable name -> raw value.
            missing: ``empty`` renders a missing or empty value as nothing; ``skip``
                returns ``None`` so that no disclaimer is inserted.
        """
        out: list[str] = []
        for index, piece in enumerate(self.pieces):
            if isinstance(piece, str):
                out.append(piece)
                continue
            value = clean_value(values.get(piece[0], ""))
            if not value and missing == "skip":
                return None
            if index in self.url_slots:
                value = safe_url(value)  # no javascript: link from a directory value
            out.append(escape(value, quote=True) if self.is_html else value)
        return "".join(out)


def _static_texts(pieces: list[str | tuple[str]], *, is_html: bool) -> list[str]:
    """The text between variables; for HTML, as a reader sees it (a tag that holds a
    variable, such as ``<a href="{{url}}">``, is markup and drops out whole)."""
    if not is_html:
        return [p for p in pieces if isinstance(p, str)]
    joined = "".join(p if isinstance(p, str) else "\0" for p in pieces)
    return unescape(strip_tags(joined, " ")).split("\0")


def contains_pieces(compact_body: str, pieces: tuple[str, ...]) -> bool:
    """True when every piece occurs in ``compact_body``, in order (and there is a piece)."""
    if not pieces:
        return False
    position = 0
    for piece in pieces:
        found = compact_body.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True
