"""Which entities of a message get a disclaimer, and which must never be changed.

Bodies are ``text/plain`` and ``text/html`` leaves that are not attachments. Never edited:
attachments (any ``Content-Disposition: attachment`` or file name), ``text/calendar``,
delivery and disposition reports (``multipart/report``), the resources of a
``multipart/related`` (only its root is a body), entities with structural defects, and
signed or encrypted entities, which are *protected* (wrapped, skipped or the message
rejected, as the policy says). In a ``multipart/mixed`` holding several inline fragments of
one type (Apple Mail puts attachments between HTML fragments), only the last fragment is a
body (the first with ``top`` placement).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailroute.mime import Message, Part, Path

__all__ = ["PROTECTED_TYPES", "Plan", "auto_reply", "plan_message"]

PROTECTED_TYPES = frozenset({
    "multipart/signed", "multipart/encrypted", "application/pkcs7-mime",
    "application/x-pkcs7-mime", "application/pgp-encrypted", "application/pgp-signature",
    "application/pkcs7-signature", "application/x-pkcs7-signature",
})
BODY_TYPES = ("text/plain", "text/html")
_INVITE_TYPES = frozenset({"text/calendar", "application/ics"})
_AUTO_FIELDS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with a message.

    Attributes:
        bodies: paths of the body leaves to edit, in document order.
        protected: paths of the outermost signed or encrypted entities.
        skip_reason: why the whole message stays as it is (``None``: go ahead).
    """

    bodies: tuple[Path, ...] = ()
    protected: tuple[Path, ...] = ()
    skip_reason: str | None = None


def auto_reply(message: Message) -> bool:
    """True for automatic replies (RFC 3834 ``Auto-Submitted`` and the common non-standard
    fields Exchange, Sieve vacation and others set)."""
    headers = message.headers
    submitted = (headers.value("Auto-Submitted") or "").strip().lower()
    if submitted and not submitted.startswith("no"):
        return True
    precedence = (headers.value("Precedence") or "").strip().lower()
    if precedence == "auto_reply":
        return True
    return any(headers.get(name) is not None for name in _AUTO_FIELDS)


def plan_message(message: Message, *, placement: str, invites: str = "skip",
                 skip_auto_replies: bool = True) -> Plan:
    """The bodies to edit and the protected entities of ``message``.

    Args:
        placement: ``bottom``, ``top`` or ``reply`` (decides which Apple fragment).
        invites: ``skip`` leaves a message with a calendar part alone; ``bodies`` edits its
            text and HTML bodies (the calendar part itself is never edited).
        skip_auto_replies: leave automatic replies alone.
    """
    if skip_auto_replies and auto_reply(message):
        return Plan(skip_reason="auto-reply")
    if message.root.mime_type == "multipart/report":
        return Plan(skip_reason="report")
    defective = {d.path for d in message.defects if not message.structurally_sound(d.path)}
    bodies: list[Path] = []
    protected: list[Path] = []
    has_invite = False
    stack: list[tuple[Path, Part]] = [((), message.root)]
    while stack:
        path, part = stack.pop()
        mime_type = part.mime_type
        if mime_type in _INVITE_TYPES:
            has_invite = True
            continue
        if mime_type in PROTECTED_TYPES:
            protected.append(path)
            continue
        if path in defective or mime_type == "multipart/report":
            continue
        if part.is_multipart:
            children = _candidates(part, placement)
            stack.extend(((*path, i), part.children[i]) for i in reversed(children))
            continue
        if mime_type in BODY_TYPES and not part.is_attachment:
            bodies.append(path)
    if has_invite and invites == "skip":
        return Plan(skip_reason="invite")
    return Plan(tuple(bodies), tuple(protected))


def _body_leaf(part: Part) -> str | None:
    if part.is_multipart or part.is_attachment or part.mime_type not in BODY_TYPES:
        return None
    return part.mime_type


def _candidates(part: Part, placement: str) -> list[int]:
    """Indices of the children of a multipart worth looking into."""
    children = part.children
    indices = list(range(len(children)))
    if part.mime_type == "multipart/related" and children:
        return [_related_root(part)]
    if part.mime_type != "multipart/mixed":
        return indices
    kept: list[int] = []
    for mime_type in BODY_TYPES:
        same = [i for i in indices if _body_leaf(children[i]) == mime_type]
        if len(same) > 1:
            kept.append(same[0] if placement == "top" else same[-1])
        else:
            kept.extend(same)
    others = [i for i in indices if _body_leaf(children[i]) is None]
    return sorted(kept + others)


def _related_root(part: Part) -> int:
    start = part.content_type.param("start")
    if start:
        wanted = start.strip().strip("<>")
        for index, child in enumerate(part.children):
            cid = (child.headers.value("Content-ID") or "").strip().strip("<>")
            if cid == wanted:
                return index
    return 0
