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

    def apply(self, fields: Sequence[FieldPair], *, keep_deleted: bool = False
              ) -> list[FieldPair]:
        """The ``(name, raw value)`` list after applying the header actions to ``fields``,
        as Postfix does (a deleted field is gone), or with ``keep_deleted`` as Sendmail does
        (a deleted field stays, unseen, in the positions and occurrences counted)."""
        current: list[tuple[str, bytes | None]] = list(fields)
        for edit in self.headers:
            if edit.kind is HeaderEditKind.ADD:
                current.append((edit.name, edit.value))
            elif edit.kind is HeaderEditKind.INSERT:
                current.insert(edit.index, (edit.name, edit.value))
            else:
                position = _position(current, edit.name, edit.index)
                if edit.kind is HeaderEditKind.DELETE and not keep_deleted:
                    del current[position]
                else:
                    value = None if edit.kind is HeaderEditKind.DELETE else edit.value
                    current[position] = (current[position][0], value)
        return [(name, value) for name, value in current if value is not None]


def _position(fields: Sequence[tuple[str, bytes | None]], name: str, occurrence: int) -> int:
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
    """The header actions that turn the fields ``old`` into ``new``.

    Every index refers to ``old`` as it is, and the actions go from the bottom of the
    header up: an action changes nothing above its own position, so each index holds
    whether the MTA removes a deleted field (Postfix) or keeps it, unseen, in its count
    (Sendmail, whose occurrence and insert positions still include it).
    """
    edits: list[HeaderEdit] = []
    matcher = SequenceMatcher(None, old_raw, new_raw, autojunk=False)
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        same_names = (i2 - i1 == j2 - j1 and all(
            old[i][0].lower() == new[j][0].lower() for i, j in zip(range(i1, i2),
                                                                   range(j1, j2), strict=True)))
        if tag == "replace" and same_names:
            for k in reversed(range(i2 - i1)):
                edits.append(HeaderEdit(HeaderEditKind.CHANGE, old[i1 + k][0],
                                        new[j1 + k][1], _occurrence(old, i1 + k)))
            continue
        for position in reversed(range(i1, i2)):
            edits.append(HeaderEdit(HeaderEditKind.DELETE, old[position][0], b"",
                                    _occurrence(old, position)))
        for k in range(j2 - j1):
            name, value = new[j1 + k]
            if i2 == len(old):   # below the last field: appended, in order
                edits.append(HeaderEdit(HeaderEditKind.ADD, name, value, 0))
            else:
                edits.append(HeaderEdit(HeaderEditKind.INSERT, name, value, i1 + k))
    return edits
