"""Raw header fields: scanned as bytes, parsed on demand, written safely.

A :class:`HeaderField` keeps the exact bytes it was read from (folding, spacing and line
ending included), so an untouched field is re-emitted byte for byte. Values are unfolded and
decoded only when asked. New fields come from :func:`make_field`, which refuses CR, LF and
NUL in values and checks that the folded result reads back as exactly one field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator

from mailroute.errors import LimitExceededError, MalformedMessageError, UnsafeHeaderValueError
from mailroute.limits import Limits
from mailroute.mime.defects import Defect, DefectKind
from mailroute.patterns import on_first_use
from mailroute.records import field as record_field
from mailroute.records import record

__all__ = ["HeaderBlock", "HeaderField", "is_content_field", "make_field", "parse_addresses",
           "split_content"]

_FIELD_NAME = on_first_use(rb"[!-9;-~]+\Z")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# "From :" is a From field with space before the colon (ambiguous), not an mbox "From " line.
_FROM_FIELD = on_first_use(rb"From[ \t]*:")
# White space before the colon is RFC 5322 obsolete syntax (4.5.3 obs-optional); readers that
# skip such a field (Python's email takes "From :" on the first line for an mbox line) show a
# different sender, recipients, structure or authentication result (Chen et al., "Composition
# Kills", USENIX Security 2020). For these fields it stays an ambiguity; for any other field
# (``Subject :``) readers at most differ on a header nothing is decided by.
_SPOOFABLE_FIELDS = frozenset({
    b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"resent-from", b"resent-sender",
    b"return-path", b"mime-version", b"content-type", b"content-transfer-encoding",
    b"content-disposition", b"dkim-signature", b"arc-seal", b"arc-message-signature",
    b"arc-authentication-results", b"authentication-results",
})
_MAX_LINE = 78
# Every character str.splitlines() breaks at, NUL too: the stdlib's RFC 2047 encoder folds at
# U+2028 and friends, so such a value would come back changed.
_UNSAFE_IN_VALUE = frozenset("\r\n\0\v\f\x1c\x1d\x1e\x85\u2028\u2029")


@record(frozen=True)
class HeaderField:
    """One header field exactly as written.

    Attributes:
        raw: the whole field, continuation lines and final line ending included.
        name: the field name as written (without spaces before the colon).
    """

    raw: bytes
    name: str
    lower_name: str = record_field(init=False, repr=False, compare=False)
    """The field name in lower case, for comparisons (computed once: lookups are hot)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "lower_name", self.name.lower())

    @property
    def raw_value(self) -> bytes:
        """The bytes after the colon, folding kept, final line ending removed."""
        colon = self.raw.find(b":")
        value = self.raw[colon + 1:] if colon >= 0 else b""
        if value.endswith(b"\r\n"):
            return value[:-2]
        if value.endswith(b"\n"):
            return value[:-1]
        return value

    @property
    def value(self) -> str:
        """The unfolded value with surrounding white space removed (not RFC 2047-decoded).

        Bytes that are not UTF-8 are kept as surrogate escapes, never replaced.
        """
        text = self.raw_value.decode("utf-8", "surrogateescape")
        return _FOLD.sub("", text).strip(" \t")

    def decoded(self, limits: Limits | None = None) -> str:
        """The value with RFC 2047 encoded words decoded.

        Raises:
            LimitExceededError: the value is longer than ``limits.max_header_value_size``.
            MalformedMessageError: an encoded word names an unknown charset.
        """
        value = self.value
        _check_value_size(value, limits)
        if "=?" not in value:
            return value
        import email.errors  # the email package costs start-up; few need it
        import email.header
        try:
            return str(email.header.make_header(email.header.decode_header(value)))
        except (LookupError, UnicodeError, email.errors.HeaderParseError, RecursionError) as exc:
            raise MalformedMessageError(
                f"cannot decode header field {self.name}") from exc


def _check_value_size(value: str, limits: Limits | None) -> None:
    bound = (limits or Limits()).max_header_value_size
    if len(value) > bound:
        raise LimitExceededError(
            f"header field value longer than {bound} bytes", limit="max_header_value_size")


def parse_addresses(field: HeaderField, limits: Limits | None = None) -> tuple[str, ...]:
    """The lower-cased addr-specs in an address field (From, To, Cc ...).

    The value is bounded before the stdlib parser sees it, and the parser's
    ``RecursionError`` on nested comments becomes a typed error.
    """
    value = field.value
    _check_value_size(value, limits)
    simple = _simple_address().fullmatch(value)
    if simple is not None:
        return ((simple.group(1) or simple.group(2)).lower(),)
    try:
        import email.utils  # loaded on first use (start-up)
        pairs = email.utils.getaddresses([value])
    except (RecursionError, ValueError, IndexError) as exc:
        raise MalformedMessageError(f"cannot parse addresses in {field.name}") from exc
    return tuple(addr.lower() for _, addr in pairs if addr and "@" in addr)


@functools.cache
def _simple_address() -> re.Pattern[str]:
    """One ``addr-spec``, bare or in angle brackets after a plain phrase: nothing (quotes,
    comments, groups, several addresses, encoded words) that needs the email package, whose
    import costs a run of ``mailroute`` more than the rest of most filters. Both readings
    agree on every value this matches (tests/mime/test_simple_address.py)."""
    atom = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
    addr = rf"{atom}(?:\.{atom})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    phrase = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ \t.-]*"
    return re.compile(rf"[ \t]*(?:({addr})|{phrase}<({addr})>)[ \t]*")


@record(frozen=True)
class HeaderBlock:
    """The header fields of one entity, in order. Immutable; edits return new blocks."""

    fields: tuple[HeaderField, ...] = ()

    def __iter__(self) -> Iterator[HeaderField]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def get(self, name: str) -> HeaderField | None:
        """The first field called ``name`` (case-insensitive), or ``None``."""
        lower = name.lower()
        for field in self.fields:
            if field.lower_name == lower:
                return field
        return None

    def get_all(self, name: str) -> tuple[HeaderField, ...]:
        """Every field called ``name``, in order."""
        lower = name.lower()
        return tuple(f for f in self.fields if f.lower_name == lower)

    def count(self, name: str) -> int:
        """How many fields are called ``name``."""
        return len(self.get_all(name))

    def value(self, name: str) -> str | None:
        """The unfolded value of the first field called ``name``, or ``None``."""
        field = self.get(name)
        return field.value if field is not None else None

    def added(self, field: HeaderField, *, position: str = "top") -> HeaderBlock:
        """A block with ``field`` added at the ``top`` or the ``bottom``.

        ``top`` is below any continuation lines or other lines without a field name the
        block starts with (a defect, e.g. an mbox ``From`` line): above them, continuation
        lines would fold into the new field once the message is read again.
        """
        if position == "top":
            lead = 0
            while lead < len(self.fields) and not self.fields[lead].name:
                lead += 1
            return HeaderBlock((*_ended(self.fields[:lead], field), field,
                                *self.fields[lead:]))
        if position == "bottom":
            return HeaderBlock((*_ended(self.fields, field), field))
        raise ValueError("position must be 'top' or 'bottom'")

    def removed(self, name: str) -> HeaderBlock:
        """A block without any field called ``name``."""
        lower = name.lower()
        return HeaderBlock(tuple(f for f in self.fields if f.lower_name != lower))

    def replaced(self, name: str, field: HeaderField) -> HeaderBlock:
        """A block where ``field`` stands in place of the first ``name`` field and the others
        are gone; added at the bottom when there was none."""
        lower = name.lower()
        out: list[HeaderField] = []
        placed = False
        for existing in self.fields:
            if existing.lower_name == lower:
                if not placed:
                    out.append(field)
                    placed = True
                continue
            out.append(existing)
        if not placed:
            out = [*_ended(tuple(out), field), field]
        return HeaderBlock(tuple(out))

    def to_bytes(self) -> bytes:
        """The raw bytes of every field, concatenated."""
        return b"".join(f.raw for f in self.fields)


def _ended(fields: tuple[HeaderField, ...], after: HeaderField) -> tuple[HeaderField, ...]:
    """``fields`` with the last one's line ended (with ``after``'s line break) if it was not:
    a message may end in a header line without one, and a field put after it must not join
    that line."""
    return end_last_line(fields, b"\r\n" if after.raw.endswith(b"\r\n") else b"\n")


def end_last_line(fields: tuple[HeaderField, ...], newline: bytes) -> tuple[HeaderField, ...]:
    """``fields`` with the last one's line ended with ``newline`` if it was not."""
    if not fields or fields[-1].raw.endswith(b"\n"):
        return fields
    last = fields[-1]
    return (*fields[:-1], HeaderField(last.raw + newline, last.name))


@record
class ScannedHeaders:
    """What :func:`scan_header_block` found."""

    block: HeaderBlock
    separator: bytes
    body_start: int
    defects: list[Defect]


# One well-formed field: a valid name right before the colon, no bare CR, continuation lines
# starting with white space, every line ended by LF or CRLF.
_PLAIN_FIELD = re.compile(rb"([!-9;-~]+):[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*")
_SEPARATOR = re.compile(rb"\r?\n")


def scan_header_block(buf: bytes, start: int, end: int, limits: Limits,
                      path: tuple[int, ...]) -> ScannedHeaders:
    """Split ``buf[start:end]`` into header fields, the blank separator line and the body.

    Lines end in LF or CRLF. A line that is neither a field, a continuation nor blank ends the
    header block (recorded as a missing separator). Limits are enforced as the block is read.
    """
    return _scan_plain(buf, start, end, limits) or _scan_careful(buf, start, end, limits, path)


def _scan_plain(buf: bytes, start: int, end: int, limits: Limits) -> ScannedHeaders | None:
    """The common case at C speed, one regex match per field; ``None`` for anything else.

    ``None`` also for anything near a limit: the careful scan then raises the exact error.
    """
    fields: list[HeaderField] = []
    pos = start
    bound = min(end, start + limits.max_header_block_size)
    match = _PLAIN_FIELD.match
    while (found := match(buf, pos, bound)) is not None:
        if found.end() - pos > limits.max_header_line_length:
            return None  # perhaps one line too long: let the careful scan measure
        fields.append(HeaderField(found.group(), found.group(1).decode("ascii")))
        pos = found.end()
    separator = _SEPARATOR.match(buf, pos, bound)
    if separator is None or len(fields) > limits.max_header_fields:
        return None
    return ScannedHeaders(HeaderBlock(tuple(fields)), separator.group(), separator.end(), [])


def _scan_careful(buf: bytes, start: int, end: int, limits: Limits,
                  path: tuple[int, ...]) -> ScannedHeaders:
    """Line by line, recording every oddity as a defect."""
    fields: list[HeaderField] = []
    defects: list[Defect] = []
    name: str | None = None  # of the field being read; "" for junk kept verbatim
    field_start = pos = start
    separator = b""
    bare_cr = False
    max_line, max_block = limits.max_header_line_length, limits.max_header_block_size
    while pos < end:
        newline = buf.find(b"\n", pos, end)
        line_end = end if newline < 0 else newline + 1
        content = buf[pos:line_end].rstrip(b"\r\n")
        if len(content) > max_line:
            raise LimitExceededError(f"header line longer than {max_line} bytes",
                                     limit="max_header_line_length")
        if line_end - start > max_block:
            raise LimitExceededError(f"header block larger than {max_block} bytes",
                                     limit="max_header_block_size")
        if not content and newline >= 0:
            separator = buf[pos:line_end]
            break
        if b"\r" in content and not bare_cr:  # once per block: lines are not fields
            bare_cr = True
            defects.append(Defect(DefectKind.BARE_CR_IN_HEADER, path))
        if content[:1] in (b" ", b"\t"):  # a continuation line
            if name is None:
                defects.append(Defect(DefectKind.LEADING_CONTINUATION, path))
                name, field_start = "", pos
            pos = line_end
            continue
        if name is not None:
            _append(fields, HeaderField(buf[field_start:pos], name), limits)
        field_start = pos
        if pos == start and content.startswith(b"From ") and not _FROM_FIELD().match(content):
            defects.append(Defect(DefectKind.MBOX_FROM_LINE, path))
            name, pos = "", line_end
            continue
        colon = content.find(b":")
        if colon <= 0:
            defects.append(Defect(DefectKind.MISSING_HEADER_SEPARATOR, path))
            name = None
            break
        raw_name = content[:colon]
        clean = raw_name.rstrip(b" \t")
        if len(clean) != len(raw_name):
            kind = (DefectKind.SPACE_BEFORE_COLON if clean.lower() in _SPOOFABLE_FIELDS
                    else DefectKind.OBSOLETE_SPACE_BEFORE_COLON)
            defects.append(Defect(kind, path, _safe_name(clean)))
        if not _FIELD_NAME().match(clean):
            defects.append(Defect(DefectKind.INVALID_FIELD_NAME, path))
        name, pos = clean.decode("latin-1"), line_end
    else:
        line_end = pos
    if name is not None:
        _append(fields, HeaderField(buf[field_start:pos], name), limits)
    body_start = line_end if separator else pos
    return ScannedHeaders(HeaderBlock(tuple(fields)), separator, body_start, defects)


def _append(fields: list[HeaderField], header: HeaderField, limits: Limits) -> None:
    fields.append(header)
    if len(fields) > limits.max_header_fields:
        raise LimitExceededError(f"more than {limits.max_header_fields} header fields",
                                 limit="max_header_fields")


def _safe_name(name: bytes) -> str:
    return name.decode("ascii", "replace")[:40] if _FIELD_NAME().match(name) else "?"


#: a raw string: the pattern's escapes, so the constant holds no lone surrogate (mypyc cannot
#: compile one: benchmarks/mypyc_build.py)
_SURROGATE = on_first_use(r"[\ud800-\udfff]")


def is_content_field(field: HeaderField) -> bool:
    """True for the ``Content-*`` fields that describe an entity's content."""
    return field.lower_name.startswith("content-")


def split_content(fields: Iterable[HeaderField]
                  ) -> tuple[tuple[HeaderField, ...], tuple[HeaderField, ...]]:
    """``fields`` split into the rest (first) and the ``Content-*`` fields, order kept."""
    outer: list[HeaderField] = []
    content: list[HeaderField] = []
    for field in fields:
        (content if is_content_field(field) else outer).append(field)
    return tuple(outer), tuple(content)


def make_field(name: str, value: str, *, newline: bytes = b"\r\n",
               utf8: bool = False) -> HeaderField:
    """Build a new header field, folded to 78 columns where white space allows.

    Non-ASCII values become RFC 2047 encoded words (UTF-8); with ``utf8`` they are written
    as UTF-8 (RFC 6532), as an address field of a message sent with SMTPUTF8 must be: an
    encoded word is no address.

    Raises:
        UnsafeHeaderValueError: the name is not a valid field name, or the value contains
            CR, LF, NUL or another line separator (VT, FF, U+001C-U+001E, U+0085, U+2028,
            U+2029), or the result would not read back as one field.
        LimitExceededError: the value as written is longer than a reader here takes
            (``Limits.max_header_value_size``).
    """
    if not _FIELD_NAME().match(name.encode("latin-1", "replace")) or not name.isascii():
        raise UnsafeHeaderValueError("invalid header field name")
    if not _UNSAFE_IN_VALUE.isdisjoint(value):
        raise UnsafeHeaderValueError(f"value for {name} contains a line break or NUL")
    if not value.isascii() and not value.isprintable() and _SURROGATE().search(value):
        # undecodable bytes of a field read back (surrogate escapes): no charset writes them
        raise UnsafeHeaderValueError(f"value for {name} contains undecodable bytes")
    if newline not in (b"\r\n", b"\n"):
        raise ValueError("newline must be CRLF or LF")
    nl = newline.decode("ascii")
    if value.isascii() or utf8:
        text = _fold(f"{name}: {value}", nl)
    else:
        import email.header  # loaded on first use (start-up)
        encoded = email.header.Header(value, "utf-8", header_name=name).encode(linesep=nl)
        text = f"{name}: {encoded}"
    raw = (text + nl).encode("utf-8")
    scanned = scan_header_block(raw + newline, 0, len(raw) + len(newline), Limits(), ())
    if len(scanned.block) != 1 or scanned.defects or scanned.block.fields[0].raw != raw:
        raise UnsafeHeaderValueError(f"value for {name} does not form a single field")
    field = HeaderField(raw, name)
    _check_value_size(field.value, None)  # as written (encoded words are longer): readable
    return field


def _fold(line: str, nl: str) -> str:
    if len(line) <= _MAX_LINE:
        return line
    words = line.split(" ")
    lines: list[str] = []
    # "Name: first-word" stays on one line: breaking right after the name only moves the
    # value to a continuation line, which some header matchers do not unfold.
    current = " ".join(words[:2])
    for word in words[2:]:
        if len(current) + 1 + len(word) > _MAX_LINE and current.strip():
            lines.append(current)
            current = " " + word
        else:
            current = f"{current} {word}"
    lines.append(current)
    return nl.join(lines)
