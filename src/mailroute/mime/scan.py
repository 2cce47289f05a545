"""The scanner: raw bytes to a tree of spans, with limits checked first.

Theory of operation. Parsing is a boundary scan, not a decode. Each entity's header block is
split into raw fields (:func:`~mailroute.mime.headers.scan_header_block`); when the entity is
a multipart with a boundary, its body is cut at the delimiter lines found with ``bytes.find``
(C speed, so a 30 MB attachment costs one pass and no Python loop over its lines). A
delimiter is ``--boundary`` at the start of a line, optionally ``--`` (close), then only
spaces or tabs up to the line end; the line break *before* it belongs to the delimiter
(RFC 2046), so each child is exactly the bytes between two delimiters. Children are scanned
the same way inside their own span, with an explicit work list instead of recursion.

Limits are enforced while scanning, before anything proportional to the input is kept:
``max_parts`` is counted as each delimiter line is found (a flood of delimiters stops at the
limit plus one), header fields are counted across all entities (``max_total_header_fields``),
and a defect is recorded once per entity, kind and detail, however often it occurs.

Nothing is decoded or copied except header fields. Ambiguities (two From, two Content-Type,
``From :``, bare CR in a header, two different boundary parameters) are recorded as defects
and, under the default policy, refused; structural oddities (missing close delimiter, no
start delimiter, a nested multipart whose delimiter lines an ancestor reads as its own, a
Content-Type lenient readers split otherwise) are recorded, and transform filters leave such
entities alone. docs/errors.md gives the reason for every rule.
"""

from __future__ import annotations

import enum
import re

from mailroute.errors import AmbiguousMessageError, InvalidArgumentError, LimitExceededError
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.mime.defects import Defect, DefectKind
from mailroute.mime.headers import HeaderBlock, scan_header_block
from mailroute.mime.message import Message
from mailroute.mime.params import disposition_defects, parse_content_type
from mailroute.mime.part import LeafBody, MultipartBody, Part, Span
from mailroute.patterns import on_first_use
from mailroute.records import field, record

__all__ = ["AmbiguityPolicy", "parse"]

_SINGLETONS = ("from", "sender", "date", "subject", "message-id")
_CONTENT_SINGLETONS = ("content-type", "content-transfer-encoding")
_IDENTITY_ENCODINGS = ("7bit", "8bit", "binary")
_READ_AS_OUTER = on_first_use(r"(?:--)?[ \t]*")
_BLANKS = re.compile(rb"[ \t]*")


class AmbiguityPolicy(enum.StrEnum):
    """What the scanner does with an ambiguous message."""

    REJECT = "reject"
    RECORD = "record"


_NO_HEADERS = HeaderBlock()


@record
class _Node:
    """One entity while the scan builds the tree."""

    start: int
    end: int
    depth: int
    path: tuple[int, ...]
    default_type: str
    ancestors: tuple[str, ...]
    headers: HeaderBlock = _NO_HEADERS
    separator: bytes = b""
    leaf: Span | None = None
    boundary: str = ""
    preamble: Span | None = None
    delimiters: list[Span] = field(default_factory=list)
    children: list[int] = field(default_factory=list)
    close: Span | None = None
    epilogue: Span | None = None


def parse(data: bytes, *, limits: Limits = DEFAULT_LIMITS,
          on_ambiguity: AmbiguityPolicy | str = AmbiguityPolicy.REJECT) -> Message:
    """Scan ``data`` into a :class:`~mailroute.mime.message.Message`.

    ``parse(data).to_bytes() == data`` for every input that parses.

    Raises:
        LimitExceededError: a limit of ``limits`` is exceeded.
        AmbiguousMessageError: the message is ambiguous and ``on_ambiguity`` is ``reject``.
    """
    if not isinstance(data, bytes):
        raise InvalidArgumentError("parse() takes bytes")
    policy = (on_ambiguity if isinstance(on_ambiguity, AmbiguityPolicy)
              else AmbiguityPolicy(on_ambiguity))
    if len(data) > limits.max_message_size:
        raise LimitExceededError(
            f"message larger than {limits.max_message_size} bytes", limit="max_message_size")
    scanner = _Scanner(data, limits, policy)
    scanner.run()
    return Message.parsed(scanner.build(), tuple(scanner.defects), _detect_newline(data), data)


def _detect_newline(data: bytes) -> bytes:
    first = data.find(b"\n", 0, 65536)
    return b"\r\n" if first <= 0 or data[first - 1:first] == b"\r" else b"\n"


class _Scanner:
    def __init__(self, data: bytes, limits: Limits, policy: AmbiguityPolicy) -> None:
        self.data = data
        self.limits = limits
        self.policy = policy
        self.defects: list[Defect] = []
        self._recorded: set[Defect] = set()
        self.nodes = [_Node(0, len(data), 0, (), "text/plain", ())]
        self.header_fields = 0

    def run(self) -> None:
        work = [0]
        while work:
            index = work.pop()
            before = len(self.nodes)
            self._scan_entity(self.nodes[index])
            work.extend(range(before, len(self.nodes)))

    def defect(self, kind: DefectKind, path: tuple[int, ...], detail: str = "") -> None:
        defect = Defect(kind, path, detail)
        if defect in self._recorded:  # a flood of one oddity costs one entry
            return
        self._recorded.add(defect)
        self.defects.append(defect)
        if self.policy is AmbiguityPolicy.REJECT and defect.ambiguous:
            raise AmbiguousMessageError(f"ambiguous message: {defect}")

    def _scan_entity(self, node: _Node) -> None:
        scanned = scan_header_block(self.data, node.start, node.end, self.limits, node.path)
        for found in scanned.defects:
            self.defect(found.kind, found.path, found.detail)
        node.headers, node.separator = scanned.block, scanned.separator
        self.header_fields += len(node.headers)
        if self.header_fields > self.limits.max_total_header_fields:
            raise LimitExceededError(
                f"more than {self.limits.max_total_header_fields} header fields in all parts",
                limit="max_total_header_fields")
        body_start = scanned.body_start
        names = [f.lower_name for f in node.headers]
        checked = _CONTENT_SINGLETONS + (_SINGLETONS if not node.path else ())
        for name in checked if len(set(names)) < len(names) else ():
            if names.count(name) > 1:
                kind = (DefectKind.DUPLICATE_CONTENT_FIELD if name.startswith("content-")
                        else DefectKind.DUPLICATE_SINGLETON_FIELD)
                self.defect(kind, node.path, name)
        ctype, ct_defects = parse_content_type(node.headers.value("Content-Type"),
                                               node.default_type)
        for kind in ct_defects:
            self.defect(kind, node.path, "content-type")
        disposition = node.headers.value("Content-Disposition")
        if disposition is not None:
            for kind in disposition_defects(disposition):
                self.defect(kind, node.path, "content-disposition")
        boundary = ctype.param("boundary") if ctype.maintype == "multipart" else None
        if ctype.maintype == "multipart" and not boundary:
            self.defect(DefectKind.MULTIPART_WITHOUT_BOUNDARY, node.path)
        if boundary and not _valid_boundary(boundary, self.limits):
            self.defect(DefectKind.INVALID_BOUNDARY, node.path)
            boundary = None
        if not boundary:
            node.leaf = Span(self.data, body_start, node.end)
            return
        if node.depth + 1 > self.limits.max_depth:
            raise LimitExceededError(f"MIME nesting deeper than {self.limits.max_depth}",
                                     limit="max_depth")
        for depth, outer in enumerate(node.ancestors):
            # An inner delimiter line an ancestor would read as its own (the same boundary,
            # or it plus "--" or blanks) makes that ancestor's parts uncertain. A boundary
            # that merely begins with another one leaves every delimiter line unambiguous.
            if boundary.startswith(outer) and _READ_AS_OUTER().fullmatch(boundary[len(outer):]):
                self.defect(DefectKind.NESTED_BOUNDARY_REUSE, node.path[:depth])
        encoding = node.headers.value("Content-Transfer-Encoding")
        if encoding and encoding.strip().lower() not in _IDENTITY_ENCODINGS:
            self.defect(DefectKind.ENCODED_MULTIPART, node.path)
        node.boundary = boundary
        self._split(node, body_start, boundary.encode("latin-1"),
                    "message/rfc822" if ctype.subtype == "digest" else "text/plain")

    def _split(self, node: _Node, body_start: int, boundary: bytes, child_type: str) -> None:
        data, end = self.data, node.end
        dash = b"--" + boundary
        found: list[tuple[int, int, bool]] = []  # (line break start, line end, is close)
        room = self.limits.max_parts - len(self.nodes)  # children this entity may still have
        prefix_seen = False
        candidate = body_start if data.startswith(dash, body_start, end) else -1
        search_from = body_start
        while True:
            if candidate < 0:
                hit = data.find(b"\n" + dash, search_from, end)
                if hit < 0:
                    break
                candidate = hit + 1
            line_start = candidate
            candidate = -1
            search_from = line_start
            pos = line_start + len(dash)
            is_close = data.startswith(b"--", pos, end)
            if is_close:
                pos += 2
            blanks = _BLANKS.match(data, pos, end)
            pos = blanks.end() if blanks is not None else pos
            if data.startswith(b"\r\n", pos, end):
                pos += 2
            elif data.startswith(b"\n", pos, end):
                pos += 1
            elif pos != end:
                if not prefix_seen:  # recorded once; a flood of such lines stays cheap
                    prefix_seen = True
                    self.defect(DefectKind.BOUNDARY_PREFIX_LINE, node.path)
                continue
            if line_start == body_start:
                break_start = line_start
            elif line_start - 2 >= body_start and data[line_start - 2] == 0x0D:
                break_start = line_start - 2
            else:
                break_start = line_start - 1
            found.append((break_start, pos, is_close))
            search_from = pos
            if is_close:
                break
            room -= 1
            if room < 0:  # checked per delimiter: a flood is never collected in full
                raise LimitExceededError(f"more than {self.limits.max_parts} MIME parts",
                                         limit="max_parts")
        if not found:
            self.defect(DefectKind.NO_START_BOUNDARY, node.path)
            node.leaf = Span(data, body_start, end)
            return
        node.preamble = Span(data, body_start, found[0][0])
        opening = [f for f in found if not f[2]]
        closing = found[-1] if found[-1][2] else None
        if closing is None:
            self.defect(DefectKind.MISSING_CLOSE_BOUNDARY, node.path)
        elif data.find(b"\n" + dash, closing[1] - 1, end) >= 0:
            self.defect(DefectKind.BOUNDARY_IN_EPILOGUE, node.path)
        ancestors = (*node.ancestors, node.boundary)
        for number, (break_start, line_end, _) in enumerate(opening):
            child_end = (opening[number + 1][0] if number + 1 < len(opening)
                         else closing[0] if closing else end)
            node.delimiters.append(Span(data, break_start, line_end))
            node.children.append(len(self.nodes))
            self.nodes.append(_Node(line_end, child_end, node.depth + 1, (*node.path, number),
                                    child_type, ancestors))
        if closing is not None:
            node.close = Span(data, closing[0], closing[1])
            node.epilogue = Span(data, closing[1], end)
        else:
            node.epilogue = Span(data, end, end)

    def build(self) -> Part:
        """Freeze the nodes into parts, children before parents (they have higher indices)."""
        parts: dict[int, Part] = {}
        for index in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[index]
            body: LeafBody | MultipartBody
            if node.leaf is not None or node.preamble is None or node.epilogue is None:
                body = LeafBody(node.leaf or Span(self.data, node.end, node.end))
            else:
                body = MultipartBody(node.boundary, node.preamble, tuple(node.delimiters),
                                     tuple(parts.pop(i) for i in node.children), node.close,
                                     node.epilogue)
            parts[index] = Part(node.headers, node.separator, body, node.default_type)
        return parts[0]


def _valid_boundary(boundary: str, limits: Limits) -> bool:
    return (0 < len(boundary) <= limits.max_boundary_length and boundary.isascii()
            and "\r" not in boundary and "\n" not in boundary and boundary == boundary.rstrip())
