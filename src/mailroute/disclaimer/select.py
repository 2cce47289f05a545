"""Which entities of a message get a disclaimer, and which must never be changed.

Bodies are ``text/plain`` and ``text/html`` leaves that are not attachments. Never edited:
attachments (``Content-Disposition: attachment`` or any file name, even inline),
``text/calendar``,
delivery and disposition reports (``multipart/report``), the resources of a
``multipart/related`` (only its root is a body), entities with structural defects, and
signed or encrypted entities, which are *protected* (wrapped, skipped or the message
rejected, as the policy says). In a ``multipart/mixed`` holding several inline fragments of
one type (Apple Mail puts attachments between HTML fragments), only the last fragment is a
body (the first with ``top`` placement).
"""

from __future__ import annotations

from mailroute.mime import ContentType, Message, Part, Path, parse_parameters
from mailroute.mime.defects import STRUCTURAL_DEFECTS
from mailroute.records import record

__all__ = ["BODY_TYPES", "PROTECTED_TYPES", "Body", "BodyPlan", "auto_reply", "plan_message"]

PROTECTED_TYPES = frozenset({
    "multipart/signed", "multipart/encrypted", "application/pkcs7-mime",
    "application/x-pkcs7-mime", "application/pgp-encrypted", "application/pgp-signature",
    "application/pkcs7-signature", "application/x-pkcs7-signature",
})
BODY_TYPES = ("text/plain", "text/html")
_INVITE_TYPES = frozenset({"text/calendar", "application/ics"})
_AUTO_FIELDS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")
_AUTO_NAMES = frozenset({"auto-submitted", "precedence", *(n.lower() for n in _AUTO_FIELDS)})


@record(frozen=True)
class Body:
    """A body leaf to edit: where it is, its media type, declared charset and encoding, and
    whether it is ``format=flowed`` text (RFC 3676)."""

    path: Path
    mime_type: str
    charset: str | None
    transfer_encoding: str
    flowed: bool = False


@record(frozen=True)
class BodyPlan:
    """What to do with a message.

    Attributes:
        bodies: the body leaves to edit, in document order.
        protected: paths of the outermost signed or encrypted entities.
        skip_reason: why the whole message stays as it is (``None``: go ahead).
    """

    bodies: tuple[Body, ...] = ()
    protected: tuple[Path, ...] = ()
    skip_reason: str | None = None


def auto_reply(message: Message) -> bool:
    """True for automatic replies (RFC 3834 ``Auto-Submitted`` and the common non-standard
    fields Exchange, Sieve vacation and others set)."""
    present = {field.lower_name for field in message.headers}
    if present.isdisjoint(_AUTO_NAMES):
        return False
    headers = message.headers
    submitted = (headers.value("Auto-Submitted") or "").strip().lower()
    if submitted and not submitted.startswith("no"):
        return True
    precedence = (headers.value("Precedence") or "").strip().lower()
    if precedence == "auto_reply":
        return True
    return not present.isdisjoint(name.lower() for name in _AUTO_FIELDS)


def plan_message(message: Message, *, placement: str, invites: str = "skip",
                 skip_auto_replies: bool = True) -> BodyPlan:
    """The bodies to edit and the protected entities of ``message``.

    Args:
        placement: ``bottom``, ``top`` or ``reply`` (decides which Apple fragment).
        invites: ``skip`` leaves a message with a calendar part alone; ``bodies`` edits its
            text and HTML bodies (the calendar part itself is never edited).
        skip_auto_replies: leave automatic replies alone.
    """
    if skip_auto_replies and auto_reply(message):
        return BodyPlan(skip_reason="auto-reply")
    root_type = message.root.content_type
    if root_type.mime_type == "multipart/report":
        return BodyPlan(skip_reason="report")
    # Entities whose own structure is damaged (their children may be cut wrongly), not those
    # that merely contain one: message.structurally_sound() answers "at or below".
    defective = {d.path for d in message.defects if d.kind in STRUCTURAL_DEFECTS}
    bodies: list[Body] = []
    protected: list[Path] = []
    has_invite = False
    stack: list[tuple[Path, Part, ContentType]] = [((), message.root, root_type)]
    while stack:
        path, part, ctype = stack.pop()
        mime_type = ctype.mime_type
        if mime_type in _INVITE_TYPES:
            has_invite = True
            continue
        if mime_type in PROTECTED_TYPES:
            protected.append(path)
            continue
        if path in defective or mime_type == "multipart/report":
            continue
        if part.is_multipart:
            kept = _candidates(part, mime_type, placement)
            stack.extend(((*path, i), part.children[i], t) for i, t in reversed(kept))
            continue
        if mime_type in BODY_TYPES and not _is_attachment(part, ctype):
            charset = ctype.param("charset")
            flowed = (ctype.param("format") or "").lower() == "flowed"
            bodies.append(Body(path, mime_type, charset.lower() if charset else None,
                               part.transfer_encoding, flowed))
    if has_invite and invites == "skip":
        return BodyPlan(skip_reason="invite")
    return BodyPlan(tuple(bodies), tuple(protected))


def _is_attachment(part: Part, ctype: ContentType) -> bool:
    """An attachment: ``Content-Disposition: attachment``, or any file name (a text file shown
    inline is still a file; mail clients write their bodies without one)."""
    if ctype.param("name"):
        return True
    value = part.headers.value("Content-Disposition")
    if not value:
        return False
    disposition, params, _ = parse_parameters(value)
    return disposition.strip().lower() == "attachment" or bool(params.get("filename"))


def _candidates(part: Part, mime_type: str,
                placement: str) -> list[tuple[int, ContentType]]:
    """The children of a multipart worth looking into, with their content types."""
    children = part.children
    types = [child.content_type for child in children]
    if mime_type == "multipart/related" and children:
        root = _related_root(part)
        return [(root, types[root])]
    indices = list(range(len(children)))
    if mime_type == "multipart/mixed":
        kinds = [None if child.is_multipart or t.mime_type not in BODY_TYPES
                 or _is_attachment(child, t) else t.mime_type
                 for child, t in zip(children, types, strict=True)]
        indices = [i for i, kind in enumerate(kinds) if kind is None]
        for body_type in BODY_TYPES:
            same = [i for i, kind in enumerate(kinds) if kind == body_type]
            if len(same) > 1:
                indices.append(same[0] if placement == "top" else same[-1])
            else:
                indices.extend(same)
        indices.sort()
    return [(i, types[i]) for i in indices]


def _related_root(part: Part) -> int:
    start = part.content_type.param("start")
    if start:
        wanted = start.strip().strip("<>")
        for index, child in enumerate(part.children):
            cid = (child.headers.value("Content-ID") or "").strip().strip("<>")
            if cid == wanted:
                return index
    return 0
