"""Protected header fields: the header section that travels inside a signature or encryption.

Thunderbird, Delta Chat and other Autocrypt clients (``protected-headers="v1"``) and RFC 9788
(``hp="cipher"`` or ``hp="clear"``) repeat From, To, Subject ... in the header of the
cryptographic payload and may obscure the outer copies (``Subject: ...``). The marked entity
(the *carrier*) is the root of the payload, or the signed part of a root ``multipart/signed``.

When a message is decrypted the inner user-facing fields win: each replaces every outer field
of the same name, so the result has one set of fields. Only the fields in :data:`PROTECTABLE`
are taken from inside (the author fields From and Sender only from a signed payload); trace
and authentication fields (Received, Authentication-Results ...) stay the gateway's own, and
such fields inside are dropped. Legacy-display copies meant for clients that do not know protected
headers (a ``text/rfc822-headers`` part, the ``header-protection-legacy-display`` HTML
``div``, the leading lines of a ``hp-legacy-display="1"`` text) are removed, unless they sit
inside a signature that removing them would break.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailroute.errors import MalformedMessageError
from mailroute.mime.headers import HeaderBlock, HeaderField, is_content_field
from mailroute.mime.message import Message, Path
from mailroute.mime.part import MultipartBody, Part
from mailroute.mime.text import decode_text
from mailroute.records import record, replace

__all__ = ["PROTECTABLE", "ProtectedHeaders", "carrier_path", "compare", "decrypted_with_outer"]

# RFC 9788 section 2.1's user-facing fields, plus those clients repeat (Sender, Keywords ...)
PROTECTABLE = frozenset({
    "from", "sender", "to", "cc", "reply-to", "subject", "date", "message-id",
    "in-reply-to", "references", "keywords", "comments", "followup-to", "mail-followup-to",
})
#: The fields that name the author (see :func:`decrypted_with_outer`).
_AUTHOR = frozenset({"from", "sender"})
_LEGACY_DIV = '<div class="header-protection-legacy-display">'
_MAX_LEGACY_LINES = 64


@record(frozen=True)
class ProtectedHeaders:
    """What a message's protected header section says.

    Attributes:
        fields: lower-case names of the protected fields, sorted.
        outer_differs: the names whose outer fields are not the same (missing, obscured or
            changed on the way), sorted.
        legacy_display: True when a legacy-display copy was removed.
    """

    fields: tuple[str, ...]
    outer_differs: tuple[str, ...] = ()
    legacy_display: bool = False

    def summary(self) -> str:
        """One line for annotations and status text."""
        text = f"fields={','.join(self.fields)}"
        if self.outer_differs:
            text += f"; outer-differs={','.join(self.outer_differs)}"
        return text + ("; legacy-display=removed" if self.legacy_display else "")

    def to_json(self) -> dict[str, object]:
        """The ``protected_headers`` object of ``pgp verify --json``."""
        return {"fields": list(self.fields), "outer_differs": list(self.outer_differs),
                "legacy_display_removed": self.legacy_display}


def _marked(part: Part) -> bool:
    content_type = part.content_type
    version = (content_type.param("protected-headers") or "").strip().lower()
    hp = (content_type.param("hp") or "").strip().lower()
    return version == "v1" or hp in ("cipher", "clear")


def carrier_path(message: Message) -> Path | None:
    """Where the protected header section is: ``()``, ``(0,)`` (the signed part of a root
    ``multipart/signed``) or ``None`` when the message has none."""
    root = message.root
    if _marked(root):
        return ()
    if root.mime_type == "multipart/signed" and root.children and _marked(root.children[0]):
        return (0,)
    return None


def _protected(part: Part) -> list[HeaderField]:
    return [f for f in part.headers if f.lower_name in PROTECTABLE]


def compare(outer: Sequence[HeaderField], message: Message) -> ProtectedHeaders | None:
    """The protected fields of ``message`` and which of them the ``outer`` fields do not
    repeat unchanged (values compared unfolded); ``None`` without protected headers."""
    path = carrier_path(message)
    if path is None:
        return None
    inner = _protected(message.part(path))
    names = sorted({f.lower_name for f in inner})
    differs = [n for n in names
               if [f.value for f in inner if f.lower_name == n]
               != [f.value for f in outer if f.lower_name == n]]
    return ProtectedHeaders(tuple(names), tuple(differs))


def decrypted_with_outer(outer: Sequence[HeaderField], entity: Message
                         ) -> tuple[Message, ProtectedHeaders | None]:
    """The decrypted message: the ``outer`` (non-Content-*) fields, then ``entity``.

    Of the entity's own fields only its ``Content-*`` fields are kept (and its
    ``MIME-Version`` when the outer fields have none): anything else a sender put inside
    (trace and authentication fields, the gateway's own flags) is the sender's word alone.
    With protected headers the inner user-facing fields replace the outer ones of the same
    names, and legacy-display copies are removed; but the author fields (From, Sender) come
    from inside only when a signature covers them, since an encrypted payload can claim any
    author while the outer ones are what SPF, DKIM and DMARC were about. Without protected
    headers the outer fields are put on top unchanged.
    """
    report = compare(outer, entity)
    root = entity.root
    outer_names = {f.lower_name for f in outer}
    path = carrier_path(entity) if report is not None else None
    taken = frozenset(report.fields) if report is not None else frozenset[str]()
    if path == ():
        taken -= _AUTHOR
    own = tuple(f for f in root.headers if is_content_field(f)
                or (f.lower_name == "mime-version" and "mime-version" not in outer_names)
                or (path == () and f.lower_name in taken))
    kept = tuple(f for f in outer if f.lower_name not in taken)
    if report is None:
        return replace(entity, root=replace(root, headers=HeaderBlock((*kept, *own)))), None
    if path == ():
        message = replace(entity, root=replace(root, headers=HeaderBlock((*kept, *own))))
        message, removed = _without_legacy_display(message)
        return message, replace(report, legacy_display=removed)
    # inside a signature: copy the fields up, touch nothing the signature covers
    copies = tuple(_protected(root.children[0]))
    return replace(entity, root=replace(root, headers=HeaderBlock(
        (*kept, *copies, *own)))), report


def _without_legacy_display(message: Message) -> tuple[Message, bool]:
    root = message.root
    if not isinstance(root.body, MultipartBody):
        return _text_without_legacy(message, ())
    if root.mime_type != "multipart/mixed" or not root.body.children:
        return message, False
    first = root.body.children[0]
    if first.mime_type == "text/rfc822-headers" and _marked(first):
        body = root.body
        new = replace(body, children=body.children[1:], delimiters=body.delimiters[1:])
        return replace(message, root=replace(root, body=new)), True
    if first.mime_type == "multipart/alternative":
        removed = False
        for index in range(len(first.children)):
            message, done = _text_without_legacy(message, (0, index))
            removed = removed or done
        return message, removed
    return _text_without_legacy(message, (0,))


def _text_without_legacy(message: Message, path: Path) -> tuple[Message, bool]:
    """RFC 9788 section 4.5: the leading legacy-display block of a marked text part."""
    part = message.part(path)
    if part.is_multipart or part.mime_type not in ("text/plain", "text/html"):
        return message, False
    try:
        text = decode_text(part)
    except MalformedMessageError:
        return message, False
    if part.mime_type == "text/html":
        start = text.find(_LEGACY_DIV)
        end = text.find("</div>", start) if start >= 0 else -1
        if end < 0:
            return message, False
        return message.replace_text(path, text[:start] + text[end + len("</div>"):]), True
    if (part.content_type.param("hp-legacy-display") or "").strip() != "1":
        return message, False
    lines = text.split("\n", _MAX_LEGACY_LINES + 1)
    for index, line in enumerate(lines[:_MAX_LEGACY_LINES + 1]):
        if not line.strip("\r"):
            rest = "\n".join(lines[index + 1:])
            return message.replace_text(path, rest), True
        if ":" not in line:
            break
    return message, False
