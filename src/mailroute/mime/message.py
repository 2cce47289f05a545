"""A parsed message and the edits filters make to it.

Edits never mutate: each returns a new :class:`Message` whose tree shares every untouched
part with the old one. Only the edited part and the structure of its ancestors are new, so
everything else is emitted from the original bytes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator

from mailroute.errors import MalformedMessageError
from mailroute.mime.charsets import label_codec_name
from mailroute.mime.defects import STRUCTURAL_DEFECTS, Defect
from mailroute.mime.emit import body_chunks, part_chunks
from mailroute.mime.headers import HeaderBlock, HeaderField, make_field, split_content
from mailroute.mime.params import parse_parameters, quote_parameter
from mailroute.mime.part import LeafBody, MultipartBody, Part, Span
from mailroute.mime.transfer import choose_encoding, encode_payload
from mailroute.records import field, record, replace

__all__ = ["Message", "Path", "build_leaf"]

Path = tuple[int, ...]
# Codecs whose decode gives back exactly what they encoded (no round-trip check needed).
_FAITHFUL_CODECS = frozenset({"ascii", "utf-8", "latin-1"})


@record(frozen=True)
class Message:
    """A message: the root entity, the defects found when it was scanned, and its line break.

    Attributes:
        root: the top-level entity.
        defects: what the scanner recorded (paths refer to the scanned tree).
        newline: the line break the message uses (CRLF or LF); new pieces use it too.
    """

    root: Part
    defects: tuple[Defect, ...] = ()
    newline: bytes = b"\r\n"
    # The bytes parse() read this very object from (an edit makes a new object, in which it
    # is None): they are its serialisation, so an unchanged message is never copied.
    _parsed_from: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def parsed(cls, root: Part, defects: tuple[Defect, ...], newline: bytes,
               data: bytes) -> Message:
        """The message :func:`~mailroute.mime.parse` read from ``data`` (for the scanner:
        ``to_bytes()`` must give ``data`` back exactly)."""
        message = cls(root, defects, newline)
        object.__setattr__(message, "_parsed_from", data)
        return message

    @property
    def headers(self) -> HeaderBlock:
        """The top-level header fields."""
        return self.root.headers

    def to_bytes(self) -> bytes:
        """The message as bytes; untouched parts are copied from the input verbatim, and a
        message no filter changed is the input itself."""
        if self._parsed_from is not None:
            return self._parsed_from
        return self.root.to_bytes()

    def chunks(self) -> list[bytes | memoryview]:
        """The bytes of :meth:`to_bytes` in pieces (views of the input where unchanged), to
        write out without joining them."""
        if self._parsed_from is not None:
            return [self._parsed_from]
        return part_chunks(self.root)

    def part(self, path: Path) -> Part:
        """The entity at ``path`` (child indices from the root).

        Raises:
            IndexError: no such entity.
        """
        part = self.root
        for index in path:
            part = part.children[index]
        return part

    def walk(self) -> Iterator[tuple[Path, Part]]:
        """Every entity with its path, parents before children, in document order."""
        stack: list[tuple[Path, Part]] = [((), self.root)]
        while stack:
            path, part = stack.pop()
            yield path, part
            children = part.children
            for index in range(len(children) - 1, -1, -1):
                stack.append(((*path, index), children[index]))

    def structurally_sound(self, path: Path = ()) -> bool:
        """False when the scanner recorded a structural defect at or below ``path``."""
        return not any(d.kind in STRUCTURAL_DEFECTS and d.path[:len(path)] == path
                       for d in self.defects)

    # -- header edits ---------------------------------------------------------------------

    def field(self, name: str, value: str) -> HeaderField:
        """A new, safe header field using this message's line break."""
        return make_field(name, value, newline=self.newline)

    def with_header(self, name: str, value: str, *, position: str = "top",
                    path: Path = ()) -> Message:
        """Add a field ``name: value`` at the ``top`` or ``bottom`` of an entity's header."""
        return self.with_field(self.field(name, value), position=position, path=path)

    def with_field(self, field: HeaderField, *, position: str = "top",
                   path: Path = ()) -> Message:
        """Add a ready-made field."""
        part = self.part(path)
        return self.replace_part(path, replace(part, headers=part.headers.added(
            field, position=position)))

    def without_header(self, name: str, *, path: Path = ()) -> Message:
        """Remove every field called ``name`` from an entity's header."""
        part = self.part(path)
        if part.headers.get(name) is None:
            return self
        return self.replace_part(path, replace(part, headers=part.headers.removed(name)))

    def keep_headers(self, keep: Callable[[HeaderField], bool], *, path: Path = ()) -> Message:
        """Keep only the fields of an entity's header for which ``keep`` is true."""
        part = self.part(path)
        return self._with_fields(path, part, tuple(f for f in part.headers if keep(f)))

    def without_headers(self, names: Iterable[str], prefixes: tuple[str, ...] = (), *,
                        path: Path = ()) -> Message:
        """Remove the fields named (case-insensitive) or whose lower-case name starts with one
        of ``prefixes`` from an entity's header."""
        wanted = frozenset(n.lower() for n in names)
        part = self.part(path)
        kept = tuple(f for f in part.headers if f.lower_name not in wanted
                     and not (prefixes and f.lower_name.startswith(prefixes)))
        return self._with_fields(path, part, kept)

    def _with_fields(self, path: Path, part: Part, kept: tuple[HeaderField, ...]) -> Message:
        if len(kept) == len(part.headers):
            return self
        return self.replace_part(path, replace(part, headers=HeaderBlock(kept)))

    def replace_header(self, name: str, value: str, *, path: Path = ()) -> Message:
        """Put one ``name: value`` where the first ``name`` field was (bottom if none)."""
        part = self.part(path)
        field = self.field(name, value)
        return self.replace_part(path, replace(part, headers=part.headers.replaced(name, field)))

    # -- structural edits -----------------------------------------------------------------

    def replace_part(self, path: Path, new: Part) -> Message:
        """A message with ``new`` at ``path``; ancestors get new structure, nothing else."""
        chain = [self.root]
        for index in path:
            chain.append(chain[-1].children[index])
        current = new
        for depth in range(len(path) - 1, -1, -1):
            parent = chain[depth]
            assert isinstance(parent.body, MultipartBody)
            children = list(parent.body.children)
            children[path[depth]] = current
            current = replace(parent, body=replace(parent.body, children=tuple(children)))
        return Message(current, self.defects, self.newline)

    def replace_text(self, path: Path, text: str) -> Message:
        """Replace the text of a ``text/*`` leaf, keeping its charset when the text fits it.

        Otherwise the part becomes UTF-8 and its ``charset`` parameter says so. The transfer
        encoding is kept where it can carry the text. Line breaks follow the message's.

        Raises:
            MalformedMessageError: the entity is not a leaf.
        """
        part = self.part(path)
        if not isinstance(part.body, LeafBody):
            raise MalformedMessageError("replace_text needs a leaf entity")
        charset = part.charset or "us-ascii"
        try:
            codec = label_codec_name(charset)  # the label's own charset, never a superset
            data = text.encode(codec)
            # a lossy mapping, e.g. shift_jis writes "¥" as "\\"; these three never are
            if codec not in _FAITHFUL_CODECS and data.decode(codec) != text:
                raise UnicodeEncodeError(codec, text, 0, len(text), "does not round-trip")
        except (UnicodeError, MalformedMessageError):
            charset, data = "utf-8", text.encode("utf-8")
        encoding = choose_encoding(data, part.transfer_encoding)
        body = encode_payload(data, encoding, self.newline)
        if not self.boundary_safe(path, body):  # base64 never holds a "--" line
            encoding = "base64"
            body = encode_payload(data, encoding, self.newline)
        headers = _terminated(part.headers, self.newline)
        if charset != (part.charset or "us-ascii") or part.headers.get("Content-Type") is None:
            headers = headers.replaced("Content-Type", self.field(
                "Content-Type", _with_param(part, "charset", charset)))
        if encoding != part.transfer_encoding:
            headers = headers.replaced("Content-Transfer-Encoding",
                                       self.field("Content-Transfer-Encoding", encoding))
        return self.replace_part(path, part.with_leaf_body(body, self.newline, headers))

    def boundary_safe(self, path: Path, body: bytes) -> bool:
        """True when ``body``, as the new body of the leaf at ``path``, has no line that an
        enclosing multipart would read as its delimiter (re-encoding can turn a bare CR
        before ``--boundary`` into a line break, and so split the part in two)."""
        part = self.root
        for index in path:
            if isinstance(part.body, MultipartBody):
                dash = b"--" + part.body.boundary.encode("ascii", "replace")
                if (body.startswith(dash) or b"\n" + dash in body
                        or b"\r" + dash in body):
                    return False
            part = part.children[index]
        return True

    def insert_part(self, parent: Path, index: int, new: Part) -> Message:
        """Insert ``new`` as child ``index`` of the multipart at ``parent``.

        Raises:
            MalformedMessageError: the entity at ``parent`` is not a multipart.
        """
        host = self.part(parent)
        body = host.body
        if not isinstance(body, MultipartBody):
            raise MalformedMessageError("insert_part needs a multipart entity")
        nl = self.newline
        dash = b"--" + body.boundary.encode("latin-1")
        delimiters = list(body.delimiters)
        children = list(body.children)
        index = max(0, min(index, len(children)))
        if index == 0 and delimiters and delimiters[0].to_bytes().startswith(b"--"):
            # The old first delimiter had no line break before it: give it one now that a
            # part precedes it, and let the new first delimiter start the body.
            delimiters[0] = Span.of(nl + delimiters[0].to_bytes())
            delimiters.insert(0, Span.of(dash + nl))
        else:
            delimiters.insert(index, Span.of(nl + dash + nl))
        children.insert(index, new)
        close = body.close if body.close is not None else Span.of(nl + dash + b"--" + nl)
        return self.replace_part(parent, replace(host, body=replace(
            body, delimiters=tuple(delimiters), children=tuple(children), close=close)))

    def wrap(self, path: Path, *, subtype: str = "mixed", before: Iterable[Part] = (),
             after: Iterable[Part] = ()) -> Message:
        """Put the entity at ``path`` inside a new ``multipart/<subtype>`` with other parts.

        The wrapped entity's body and content header fields keep their exact bytes. When the
        root is wrapped, its other fields (From, Subject ...) stay on the new root.
        """
        target = self.part(path)
        nl = self.newline
        outer_fields: tuple[HeaderField, ...] = ()
        inner = target
        if not path:
            outer_fields, content = split_content(
                tuple(_terminated_field(f, nl) for f in target.headers))
            inner = replace(target, headers=HeaderBlock(content))
        members = (*before, inner, *after)
        boundary = _boundary_outside(members)
        ctype = self.field("Content-Type", f"multipart/{subtype}; "
                           + quote_parameter("boundary", boundary))
        fields = [*outer_fields, ctype]
        if not path and not any(f.lower_name == "mime-version" for f in outer_fields):
            fields.insert(len(outer_fields), self.field("MIME-Version", "1.0"))
        dash = b"--" + boundary.encode("ascii")
        delimiters = tuple(Span.of(dash + nl if i == 0 else nl + dash + nl)
                           for i in range(len(members)))
        wrapper = Part(HeaderBlock(tuple(fields)), target.separator or nl, MultipartBody(
            boundary, Span.of(b""), delimiters, members, Span.of(nl + dash + b"--" + nl),
            Span.of(b"")))
        return self.replace_part(path, wrapper)


def _with_param(part: Part, name: str, value: str) -> str:
    current = part.headers.value("Content-Type")
    if current is None:
        return f"text/plain; {quote_parameter(name, value)}"
    head, params, _ = parse_parameters(current)
    params[name] = value
    return "; ".join([head, *(quote_parameter(k, v) for k, v in params.items())])


def _boundary_outside(members: tuple[Part, ...]) -> str:
    """A random boundary found in none of ``members``, searched in place (no copy of a
    large entity: wrapping a 30 MB message must not need another 60 MB)."""
    while True:
        boundary = new_boundary(b"")
        needle = re.compile(re.escape(boundary.encode("ascii")))
        if not any(needle.search(chunk) for member in members
                   for chunk in (*(f.raw for f in member.headers), *body_chunks(member))):
            return boundary


def new_boundary(avoid: bytes) -> str:
    """A random boundary that does not occur in ``avoid``."""
    while True:
        boundary = f"=_mailroute_{os.urandom(12).hex()}"  # os, not secrets: start-up cost
        if boundary.encode("ascii") not in avoid:
            return boundary


def build_leaf(content_type: str, payload: bytes | str, *, charset: str | None = None,
               encoding: str | None = None, fields: Iterable[tuple[str, str]] = (),
               newline: bytes = b"\r\n") -> Part:
    """A new leaf entity.

    Args:
        content_type: ``type/subtype`` (parameters other than charset may follow).
        payload: bytes, or text that is encoded with ``charset`` (UTF-8 by default).
        charset: added as the ``charset`` parameter for text payloads.
        encoding: the transfer encoding; chosen from the payload when omitted.
        fields: further ``(name, value)`` header fields (Content-Disposition ...).
        newline: the line break to use, normally the host message's.
    """
    if isinstance(payload, str):
        charset = charset or "utf-8"
        data = payload.encode(label_codec_name(charset))
        content_type = f"{content_type}; {quote_parameter('charset', charset)}"
    else:
        data = payload
    chosen = encoding or ("base64" if not content_type.startswith("text/")
                          else choose_encoding(data, "7bit"))
    header_fields = [make_field("Content-Type", content_type, newline=newline),
                     make_field("Content-Transfer-Encoding", chosen, newline=newline)]
    header_fields += [make_field(n, v, newline=newline) for n, v in fields]
    body = encode_payload(data, chosen, newline)
    return Part(HeaderBlock(tuple(header_fields)), newline, LeafBody(Span.of(body)))


def _terminated(headers: HeaderBlock, newline: bytes) -> HeaderBlock:
    """``headers`` whose last field ends with a line break (see :func:`_terminated_field`)."""
    fields = headers.fields
    if not fields or fields[-1].raw.endswith(b"\n"):
        return headers
    return HeaderBlock((*fields[:-1], _terminated_field(fields[-1], newline)))


def _terminated_field(field: HeaderField, newline: bytes) -> HeaderField:
    """``field`` ending with a line break. An input that ends inside its header block leaves
    its last field without one (or with a bare CR): a field added after it, or the separator
    before a new body, would otherwise be glued to it."""
    if field.raw.endswith(b"\n"):
        return field
    raw = field.raw[:-1] if field.raw.endswith(b"\r") else field.raw
    return HeaderField(raw + newline, field.name)
