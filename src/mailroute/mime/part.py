"""The byte-preserving MIME tree: parts made of spans over the original buffer.

A :class:`Part` is its header fields (raw bytes), the blank line that ends them, and a body.
A leaf body is a span of the original buffer. A multipart body keeps its preamble, every
delimiter line exactly as written (the line break before it included), its children, the
close delimiter and the epilogue. Concatenating the pieces in order gives back the input, so
serialising a part nobody changed copies its bytes and nothing else.
"""

from __future__ import annotations

from mailroute.mime.headers import HeaderBlock, end_last_line
from mailroute.mime.params import ContentType, content_type_of, parse_parameters
from mailroute.records import record

__all__ = ["LeafBody", "MultipartBody", "Part", "Span"]


@record(frozen=True)
class Span:
    """``buf[start:end]`` without copying ``buf``."""

    buf: bytes
    start: int
    end: int

    @classmethod
    def of(cls, data: bytes) -> Span:
        """A span covering all of ``data``."""
        return cls(data, 0, len(data))

    def __len__(self) -> int:
        return self.end - self.start

    def view(self) -> memoryview:
        """A zero-copy view of the bytes."""
        return memoryview(self.buf)[self.start:self.end]

    def to_bytes(self) -> bytes:
        """A copy of the bytes."""
        if self.start == 0 and self.end == len(self.buf):
            return self.buf
        return self.buf[self.start:self.end]


@record(frozen=True)
class LeafBody:
    """The body of a non-multipart entity, still transfer-encoded."""

    span: Span


@record(frozen=True)
class MultipartBody:
    """The body of a multipart entity, piece by piece.

    ``delimiters[i]`` precedes ``children[i]``; ``close`` is ``None`` when the close
    delimiter was missing.
    """

    boundary: str
    preamble: Span
    delimiters: tuple[Span, ...]
    children: tuple[Part, ...]
    close: Span | None
    epilogue: Span


@record(frozen=True)
class Part:
    """One MIME entity. Immutable: :class:`~mailroute.mime.message.Message` edits build new
    parts along the path to the change and share everything else."""

    headers: HeaderBlock
    separator: bytes
    body: LeafBody | MultipartBody
    default_type: str = "text/plain"

    @property
    def content_type(self) -> ContentType:
        """The parsed Content-Type (the default type when absent or unparsable)."""
        value = self.headers.value("Content-Type")
        return content_type_of(value, self.default_type)

    @property
    def mime_type(self) -> str:
        """``type/subtype`` in lower case."""
        return self.content_type.mime_type

    @property
    def is_multipart(self) -> bool:
        """True when the body was split into children."""
        return isinstance(self.body, MultipartBody)

    @property
    def children(self) -> tuple[Part, ...]:
        """The child entities (empty for a leaf)."""
        return self.body.children if isinstance(self.body, MultipartBody) else ()

    @property
    def transfer_encoding(self) -> str:
        """The Content-Transfer-Encoding in lower case, ``7bit`` when absent."""
        value = self.headers.value("Content-Transfer-Encoding")
        return value.lower().strip() if value else "7bit"

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter, lower-cased, or ``None``."""
        value = self.content_type.param("charset")
        return value.lower() if value else None

    @property
    def disposition(self) -> str | None:
        """``inline``, ``attachment`` or another disposition type, lower-cased."""
        value = self.headers.value("Content-Disposition")
        if not value:
            return None
        return parse_parameters(value)[0].lower() or None

    @property
    def filename(self) -> str | None:
        """The file name from Content-Disposition or, failing that, Content-Type ``name``."""
        value = self.headers.value("Content-Disposition")
        if value:
            name = parse_parameters(value)[1].get("filename")
            if name:
                return name
        return self.content_type.param("name")

    @property
    def is_attachment(self) -> bool:
        """True for an explicit attachment or a part with a file name."""
        return self.disposition == "attachment" or (
            self.filename is not None and self.disposition != "inline")

    def with_leaf_body(self, data: bytes, newline: bytes,
                       headers: HeaderBlock | None = None) -> Part:
        """This entity with the encoded body ``data`` (and ``headers`` when given).

        An entity scanned without a blank line after its header block gets one, after ending
        its last header line if that had no line break: without it the new body's first
        lines would read back as header fields (a ``Bcc:`` from a template value).
        """
        headers = self.headers if headers is None else headers
        separator = self.separator
        if not separator:
            # the last line ended in the block, not in the separator: a field added later
            # goes below it, and the separator must stay the one blank line
            headers = HeaderBlock(end_last_line(headers.fields, newline))
            separator = newline
        return Part(headers, separator, LeafBody(Span(data, 0, len(data))), self.default_type)

    def body_bytes(self) -> bytes:
        """The raw (still transfer-encoded) body bytes of a leaf, or the whole multipart body."""
        if isinstance(self.body, LeafBody):
            return self.body.span.to_bytes()
        from mailroute.mime.emit import body_chunks  # imported here: emit imports part
        return b"".join(body_chunks(self))

    def to_bytes(self) -> bytes:
        """The exact bytes of this entity: header fields, separator and body."""
        from mailroute.mime.emit import emit_part  # imported here: emit imports part
        return emit_part(self)
