"""The difference between two messages as edits an MTA can apply to the one it holds.

A milter cannot hand the MTA a new message; it answers with header actions (add, insert,
change, delete a field) and, when needed, a new body. :func:`diff_messages` computes that
list from the tree the gateway prepared and the tree its filters produced. Edits are meant
to be applied in order, each to the header as the previous ones left it (the milter
protocol's semantics); :meth:`Edits.apply` does exactly that and is what the tests check the
diff against.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from difflib import SequenceMatcher

from mailroute.mime.message import Message
from mailroute.mime.part import LeafBody, Part
from mailroute.records import record

__all__ = ["Edits", "HeaderEdit", "HeaderEditKind", "diff_messages"]

FieldPair = tuple[str, bytes]


class HeaderEditKind(enum.StrEnum):
    """What one header action does."""

    ADD = "add"          # append after the last field
    INSERT = "insert"    # insert before position ``index`` (0-based)
    CHANGE = "change"    # replace the value of occurrence ``index`` (1-based) of ``name``
    DELETE = "delete"    # remove occurrence ``index`` (1-based) of ``name``


@record(frozen=True)
class HeaderEdit:
    """One header action.

    Attributes:
        kind: add, insert, change or delete.
        name: the field name as it is written.
        value: the raw value after the colon (folding kept, no final line break); empty for
            a deletion.
        index: the position for ``INSERT`` (0-based over all fields), the occurrence among
            fields of the same name (1-based, case-insensitive) for ``CHANGE``/``DELETE``,
            0 for ``ADD``.
    """

    kind: HeaderEditKind
    name: str
    value: bytes = b""
    index: int = 0


@record(frozen=True)
class Edits:
    """Header actions in order, and the new body when the body changed."""

    headers: tuple[HeaderEdit, ...] = ()
    body: bytes | None = None

    @property
    def body_replaced(self) -> bool:
        """True when the body must be replaced."""
        return self.body is not None

    @property
    def unchanged(self) -> bool:
        """True when nothing is to be edited."""
        return not self.headers and self.body is None

    def apply(self, fields: Sequence[FieldPair]) -> list[FieldPair]:
        """The ``(name, raw value)`` list after applying the header actions to ``fields``."""
        current = list(fields)
        for edit in self.headers:
            if edit.kind is HeaderEditKind.ADD:
                current.append((edit.name, edit.value))
            elif edit.kind is HeaderEditKind.INSERT:
                current.insert(edit.index, (edit.name, edit.value))
            else:
                position = _position(current, edit.name, edit.index)
                if edit.kind is HeaderEditKind.DELETE:
                    del current[position]
                else:
                    current[position] = (current[position][0], edit.value)
        return current


def _position(fields: Sequence[FieldPair], name: str, occurrence: int) -> int:
    wanted = name.lower()
    seen = 0
    for position, (field_name, _) in enumerate(fields):
        if field_name.lower() == wanted:
            seen += 1
            if seen == occurrence:
                return position
    raise ValueError(f"no occurrence {occurrence} of {name}")


def _occurrence(fields: Sequence[FieldPair], position: int) -> int:
    wanted = fields[position][0].lower()
    return sum(1 for name, _ in fields[:position + 1] if name.lower() == wanted)


def field_pairs(message: Message) -> list[FieldPair]:
    """The top-level fields of ``message`` as ``(name, raw value)``."""
    return [(f.name, f.raw_value) for f in message.headers]


def diff_messages(before: Message, after: Message) -> Edits:
    """The edits that turn ``before`` into ``after`` (top-level fields, then the body)."""
    old_raw, new_raw = [f.raw for f in before.headers], [f.raw for f in after.headers]
    edits: list[HeaderEdit] = []
    if old_raw != new_raw:  # the common body-only change needs no sequence matching
        edits = _header_edits(field_pairs(before), field_pairs(after), old_raw, new_raw)
    body = None
    if after.root.body is not before.root.body:
        new_body = after.root.body_bytes()
        if not _same_body(before.root, new_body):
            body = new_body
    return Edits(tuple(edits), body)


def _same_body(part: Part, data: bytes) -> bool:
    """True when the raw body of ``part`` is ``data`` (a leaf's compared in place)."""
    if isinstance(part.body, LeafBody):
        span = part.body.span
        return len(span) == len(data) and span.buf.startswith(data, span.start)
    return part.body_bytes() == data


def _header_edits(old: list[FieldPair], new: list[FieldPair], old_raw: list[bytes],
                  new_raw: list[bytes]) -> list[HeaderEdit]:
    """The header actions that turn the fields ``old`` into ``new``."""
    edits: list[HeaderEdit] = []
    current = list(old)
    offset = 0  # how far positions in ``current`` have moved from those in ``old``
    matcher = SequenceMatcher(None, old_raw, new_raw, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        start = i1 + offset
        same_names = (i2 - i1 == j2 - j1 and all(
            old[i][0].lower() == new[j][0].lower() for i, j in zip(range(i1, i2),
                                                                   range(j1, j2), strict=True)))
        if tag == "replace" and same_names:
            for k in range(i2 - i1):
                position = start + k
                name, value = new[j1 + k]
                edits.append(HeaderEdit(HeaderEditKind.CHANGE, current[position][0], value,
                                        _occurrence(current, position)))
                current[position] = (current[position][0], value)
            continue
        for _ in range(i2 - i1):
            edits.append(HeaderEdit(HeaderEditKind.DELETE, current[start][0], b"",
                                    _occurrence(current, start)))
            del current[start]
        for k in range(j2 - j1):
            name, value = new[j1 + k]
            position = start + k
            kind = HeaderEditKind.ADD if position == len(current) else HeaderEditKind.INSERT
            edits.append(HeaderEdit(kind, name, value,
                                    0 if kind is HeaderEditKind.ADD else position))
            current.insert(position, (name, value))
        offset += (j2 - j1) - (i2 - i1)
    return edits
