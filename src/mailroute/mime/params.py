"""Content-Type / Content-Disposition parameters, parsed strictly enough to see ambiguity.

The stdlib silently takes the first of two ``boundary`` parameters and ignores a plain one
when RFC 2231 continuations are present; this parser reports both situations instead. Only
where readers would then act differently is it an ambiguity: a parameter in
:data:`DECISIVE_PARAMETERS` given twice with different values (the first wins here, the last
or the RFC 2231 form elsewhere). The same value twice, or a second ``comment``, is recorded as
``repeated-parameter`` and read as written.

A value that lenient readers split differently (no semicolon before the next parameter, a
type that is not ``type/subtype``) is ``reader-dependent-content-field``: the scanner records
it as structural doubt, so no filter edits that entity.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import MappingProxyType

from mailroute.errors import MalformedMessageError, UnsafeHeaderValueError
from mailroute.mime.charsets import codec_name
from mailroute.mime.defects import DefectKind
from mailroute.patterns import on_first_use
from mailroute.records import field, record

__all__ = ["DECISIVE_PARAMETERS", "ContentType", "content_type_of", "disposition_defects",
           "parse_content_type", "parse_parameters", "quote_parameter"]

# Parameters whose value decides how an entity is split, decoded, verified or named.
DECISIVE_PARAMETERS = frozenset({
    "boundary",            # the parts (amavis/MIME-tools CVE-2024-28054)
    "charset",             # the text a reader decodes and shows, and a disclaimer re-encodes
    "protocol", "micalg",  # which signature multipart/signed holds (RFC 1847, RFC 8551)
    "smime-type",          # signed-data or enveloped-data (RFC 8551)
    "type", "start",       # the root of multipart/related (RFC 2387)
    "name", "filename",    # the file name a reader shows and a scanner judges
})

_TOKEN = re.compile(r"[^\s()<>@,;:\\\"/\[\]?=]+")
_TSPECIALS = on_first_use(r"[\s()<>@,;:\\\"/\[\]?=]")
_SECTION = re.compile(r"^(?P<name>[^*]+)(?:\*(?P<index>\d+))?(?P<ext>\*)?$")


@record(frozen=True)
class ContentType:
    """A parsed media type with lower-cased type, subtype and parameter names."""

    maintype: str = "text"
    subtype: str = "plain"
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    mime_type: str = field(init=False, repr=False, compare=False)
    """``type/subtype`` (made once: parsed values are cached, and read many times)."""

    def __post_init__(self) -> None:
        # Parsed values are cached and shared between parts: the parameters are read-only.
        if not isinstance(self.params, MappingProxyType):
            object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "mime_type", f"{self.maintype}/{self.subtype}")

    def param(self, name: str) -> str | None:
        """A parameter value, or ``None``."""
        return self.params.get(name.lower())


def parse_parameters(text: str) -> tuple[str, dict[str, str], list[DefectKind]]:
    """Split ``value; a=b; c="d"`` into the leading value, the parameters and defects.

    RFC 2231 sections and extended values are joined and decoded.
    """
    defects: list[DefectKind] = []
    head, _, rest = text.partition(";")
    plain: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    pos = 0
    while pos < len(rest):
        while pos < len(rest) and rest[pos] in " \t;\r\n":
            pos += 1
        if pos >= len(rest):
            break
        match = re.compile(r"[^=;\s]+").match(rest, pos)
        if not match:
            defects.append(DefectKind.MALFORMED_CONTENT_TYPE)
            break
        name = match.group(0).lower()
        pos = match.end()
        while pos < len(rest) and rest[pos] in " \t":
            pos += 1
        if pos >= len(rest) or rest[pos] != "=":
            defects.append(DefectKind.MALFORMED_CONTENT_TYPE)
            continue
        pos += 1
        while pos < len(rest) and rest[pos] in " \t":
            pos += 1
        quoted = pos < len(rest) and rest[pos] == '"'
        value, pos = _read_value(rest, pos)
        if not quoted and _NEXT_PARAMETER.search(value):
            defects.append(DefectKind.READER_DEPENDENT_CONTENT_FIELD)
        section = _SECTION.match(name)
        if section and (section.group("index") is not None or section.group("ext")):
            base = section.group("name")
            index = int(section.group("index") or 0)
            parts = sections.setdefault(base, {})
            if index in parts:
                defects.append(_repeated(base, parts[index][0], value))
                continue
            parts[index] = (value, bool(section.group("ext")))
        else:
            if name in plain:
                defects.append(_repeated(name, plain[name], value))
                continue
            plain[name] = value
    params = dict(plain)
    for base, parts in sections.items():
        joined = _join_sections(parts)
        if base in plain:
            repeated = _repeated(base, plain[base], joined)
            defects.append(DefectKind.CONFLICTING_PARAMETER
                           if repeated is DefectKind.DUPLICATE_PARAMETER else repeated)
        params[base] = joined
    return head.strip(), params, defects


# an unquoted value that goes on with white space and "name=": a semicolon is missing
_NEXT_PARAMETER = re.compile(r"[ \t][^\s=;\"]+[ \t]*=")


_CASE_SENSITIVE = frozenset({"boundary", "name", "filename", "start"})


def _repeated(name: str, first: str, again: str) -> DefectKind:
    """A parameter given twice: ambiguous only when readers would act on different values
    (``charset=utf-8`` and ``charset=UTF-8`` name one charset; boundaries and file names are
    compared as written)."""
    if name in DECISIVE_PARAMETERS and (
            first != again if name in _CASE_SENSITIVE else first.lower() != again.lower()):
        return DefectKind.DUPLICATE_PARAMETER
    return DefectKind.REPEATED_PARAMETER


def _without_comments(head: str) -> str:
    """``head`` with RFC 822 comments (nested, with quoted pairs) replaced by a space, in one
    pass: hostile nesting costs linear time. An unclosed comment runs to the end."""
    if "(" not in head:
        return head.strip()
    out: list[str] = []
    depth = 0
    escaped = False
    for char in head:
        if depth:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if not depth:
                    out.append(" ")
        elif char == "(":
            depth = 1
        else:
            out.append(char)
    return "".join(out).strip()


def disposition_defects(value: str) -> list[DefectKind]:
    """What lenient readers could read differently in a Content-Disposition value."""
    head, _, defects = parse_parameters(value)
    head = _without_comments(head)
    if head and not _TOKEN.fullmatch(head):
        defects.append(DefectKind.READER_DEPENDENT_CONTENT_FIELD)
    return [d for d in defects if d is DefectKind.READER_DEPENDENT_CONTENT_FIELD]


def _read_value(text: str, pos: int) -> tuple[str, int]:
    if pos < len(text) and text[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < len(text):
            ch = text[pos]
            if ch == "\\" and pos + 1 < len(text):
                out.append(text[pos + 1])
                pos += 2
                continue
            if ch == '"':
                return "".join(out), pos + 1
            out.append(ch)
            pos += 1
        return "".join(out), pos
    end = text.find(";", pos)
    end = len(text) if end < 0 else end
    return text[pos:end].strip(), end


def _join_sections(parts: dict[int, tuple[str, bool]]) -> str:
    """The value of RFC 2231 sections: the octets of consecutive extended sections are
    decoded together (a writer may split a character's octets between two sections)."""
    ordered = [parts[i] for i in sorted(parts)]
    charset = "utf-8"
    pieces: list[str] = []
    run: list[str] = []  # extended sections not yet decoded
    for number, (value, extended) in enumerate(ordered):
        if extended and number == 0 and value.count("'") >= 2:
            charset, _, value = value.split("'", 2)
            charset = charset or "utf-8"
        if extended:
            run.append(value)
            continue
        if run:
            pieces.append(_percent_decode("".join(run), charset))
            run = []
        pieces.append(value)
    if run:
        pieces.append(_percent_decode("".join(run), charset))
    return "".join(pieces)


def _percent_decode(value: str, charset: str) -> str:
    """RFC 2231 %XX decoding on bytes (the value may hold surrogate-escaped raw bytes)."""
    import urllib.parse  # rare in mail; loaded on first use (start-up: it loads ipaddress)

    raw = urllib.parse.unquote_to_bytes(value.encode("utf-8", "surrogateescape"))
    try:
        return raw.decode(codec_name(charset))
    except (MalformedMessageError, UnicodeError):
        return raw.decode("latin-1")


_CACHED_VALUE = 512  # longer values (rare) are parsed every time


def parse_content_type(value: str | None,
                       default: str = "text/plain") -> tuple[ContentType, list[DefectKind]]:
    """Parse a Content-Type value; a missing or unparsable type falls back to ``default``.

    Parts parse their Content-Type on every property access (``mime_type``, ``charset`` ...),
    so short values are cached; the :class:`ContentType` is shared and must not be changed.
    """
    if value is not None and len(value) > _CACHED_VALUE:
        return _parse_content_type(value, default)
    ctype, defects = _cached_content_type(value, default)
    return ctype, list(defects)


def content_type_of(value: str | None, default: str = "text/plain") -> ContentType:
    """The :class:`ContentType` :func:`parse_content_type` gives, without its defects."""
    if value is not None and len(value) > _CACHED_VALUE:
        return _parse_content_type(value, default)[0]
    return _cached_content_type(value, default)[0]


@functools.lru_cache(maxsize=256)
def _cached_content_type(value: str | None,
                         default: str) -> tuple[ContentType, tuple[DefectKind, ...]]:
    ctype, defects = _parse_content_type(value, default)
    return ctype, tuple(defects)


def _parse_content_type(value: str | None,
                        default: str) -> tuple[ContentType, list[DefectKind]]:
    if value is None:
        maintype, subtype = default.split("/")
        return ContentType(maintype, subtype, {}), []
    head, params, defects = parse_parameters(value)
    head = _without_comments(head)
    maintype, slash, subtype = head.lower().partition("/")
    if not slash or not _TOKEN.fullmatch(maintype) or not _TOKEN.fullmatch(subtype.strip()):
        defects.append(DefectKind.MALFORMED_CONTENT_TYPE)
        if head:  # "multipart/mixed boundary=...", '"multipart/mixed"', "multipart /mixed"
            defects.append(DefectKind.READER_DEPENDENT_CONTENT_FIELD)
        maintype, subtype = default.split("/")
    return ContentType(maintype, subtype.strip(), params), defects


def quote_parameter(name: str, value: str) -> str:
    """``name=value``, quoted when the value needs it.

    A value that is not ASCII is written in RFC 2231's extended form, UTF-8 and
    percent-encoded (``name*=utf-8''...``, in sections ``name*0*=``, ``name*1*=`` ... when
    long): RFC 2047 encoded words are not allowed in a parameter, and a header writer that
    encodes the whole field makes the Content-Type unreadable.

    Raises:
        UnsafeHeaderValueError: the name is not a token (read back from a field that no
            writer can give back as it was), or the value holds bytes read back undecoded
            (surrogate escapes), which no charset names.
    """
    if not (name.isascii() and name.isprintable() and _TOKEN.fullmatch(name)):
        raise UnsafeHeaderValueError("a parameter name is not a token")
    if not value.isascii():
        return _extended_parameter(name, value)
    if value and not _TSPECIALS().search(value):
        return f"{name}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


#: Characters of an extended value per section, so that a folded line stays short.
_SECTION_CHARS = 60


def _character_start(encoded: str, start: int, end: int) -> int:
    """The last place at or before ``end`` (after ``start``) where a character begins: not
    inside a %XX escape, nor before one of a UTF-8 continuation octet (some readers decode
    each section on its own)."""
    cut = end
    escape = encoded.find("%", cut - 2, cut)
    if escape != -1:
        cut = escape
    while (cut - start > 3 and encoded[cut] == "%"
           and 0x80 <= int(encoded[cut + 1:cut + 3], 16) <= 0xBF):
        cut -= 3
    return cut


def _extended_parameter(name: str, value: str) -> str:
    import urllib.parse  # rare in mail; loaded on first use (start-up: it loads ipaddress)

    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeHeaderValueError(f"parameter {name} contains undecodable bytes") from None
    encoded = "utf-8''" + urllib.parse.quote(raw, safe="")
    if len(encoded) <= _SECTION_CHARS:
        return f"{name}*={encoded}"
    sections: list[str] = []
    start = 0
    while start < len(encoded):
        end = min(start + _SECTION_CHARS, len(encoded))
        if end < len(encoded):
            end = _character_start(encoded, start, end)
        sections.append(encoded[start:end])
        start = end
    return "; ".join(f"{name}*{index}*={section}" for index, section in enumerate(sections))
