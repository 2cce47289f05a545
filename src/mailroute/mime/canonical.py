"""The one canonical form for signing (S/MIME, RFC 8551 3.1; PGP/MIME, RFC 3156 3 and 5).

A signature covers bytes; MTAs on the way may re-encode 8-bit data, strip trailing white
space, escape ``From `` at a line start or rewrite line breaks. So before signing, every leaf
that one of them could change is re-encoded (text as quoted-printable with ``From `` written
``=46rom``, anything else as base64), and line breaks become CRLF. Leaves that are already
safe stay byte-identical. Both signing filters use these functions; so does the split of a
root entity into its content (``Content-*``) fields and the rest.
"""

from __future__ import annotations

import re

from mailroute.limits import Limits
from mailroute.mime.headers import HeaderBlock, make_field, split_content
from mailroute.mime.message import Message
from mailroute.mime.part import Part
from mailroute.mime.scan import parse
from mailroute.mime.transfer import decode_payload, encode_payload
from mailroute.records import replace

__all__ = [
    "CRLF",
    "canonicalise",
    "content_entity",
    "has_long_line",
    "in_newline",
    "needs_seven_bit",
    "seven_bit",
    "to_crlf",
]

CRLF = b"\r\n"
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_RISKY_LINE = re.compile(rb"(?:^|\n)From |[ \t]\r?\n|[ \t]\Z")
_FROM_LINE = re.compile(rb"(?m)^From ")
_IDENTITY = ("7bit", "8bit", "binary")
_WINDOW = 500
_MAX_LINE = 998


def content_entity(message: Message, *, default_type: bool = False) -> Part:
    """The root as an entity of its own: only its ``Content-*`` fields, and its body.

    With ``default_type`` a root without Content-Type gets RFC 2045's default written out.
    """
    _, content = split_content(message.root.headers)
    if default_type and not any(f.lower_name == "content-type" for f in content):
        content = (make_field("Content-Type", "text/plain; charset=us-ascii",
                              newline=message.newline), *content)
    return replace(message.root, headers=HeaderBlock(content))


def to_crlf(data: bytes) -> bytes:
    """Every line break (CRLF, LF or a lone CR) as CRLF."""
    return _LINE_BREAK.sub(CRLF, data)


def in_newline(data: bytes, newline: bytes) -> bytes:
    """CRLF ``data`` with the line breaks of a message whose ``newline`` is CRLF or LF (what
    comes out of a decryption is CRLF; a message handed over by pipe(8) is LF)."""
    return data if newline == CRLF else data.replace(CRLF, newline)


def has_long_line(data: bytes) -> bool:
    """True when a line is longer than 998 bytes (RFC 5322 section 2.1.1), CRLF excluded.

    A run of 999 bytes without LF contains a whole aligned window of 500 bytes without LF, so
    only such windows are looked at closely: one C-level ``find`` per 500 bytes.
    """
    find = data.find
    for at in range(0, len(data) - _WINDOW + 1, _WINDOW):
        if find(b"\n", at, at + _WINDOW) >= 0:
            continue
        begin = data.rfind(b"\n", 0, at) + 1
        stop = find(b"\n", at)
        stop = len(data) if stop < 0 else stop
        if data[stop - 1:stop] == b"\r":
            stop -= 1
        if stop - begin > _MAX_LINE:
            return True
    return False


def needs_seven_bit(part: Part) -> bool:
    """True when a leaf's bytes could be changed in transit and must be re-encoded.

    Only identity-encoded leaves qualify (quoted-printable and base64 are already safe), and
    never ``message/*`` or ``multipart/*`` entities, for which RFC 2046 allows only identity
    encodings: 8-bit data, NUL, a bare CR, a line over 998 bytes, trailing white space, or a
    line starting ``From ``.
    """
    if part.is_multipart or part.transfer_encoding not in _IDENTITY:
        return False
    if part.mime_type.startswith(("message/", "multipart/")):
        return False
    body = part.body_bytes()
    return (not body.isascii() or b"\0" in body or _BARE_CR.search(body) is not None
            or _RISKY_LINE.search(body) is not None or has_long_line(body))


def _seven_bit_leaf(part: Part, newline: bytes) -> Part:
    data = decode_payload(part).data
    if part.mime_type.startswith("text/"):
        encoding = "quoted-printable"
        body = _FROM_LINE.sub(b"=46rom ", encode_payload(data, encoding, newline))
    else:
        encoding = "base64"
        body = encode_payload(data, encoding, newline)
    field = make_field("Content-Transfer-Encoding", encoding, newline=newline)
    return part.with_leaf_body(body, newline,
                               part.headers.replaced("Content-Transfer-Encoding", field))


def seven_bit(message: Message) -> Message:
    """``message`` with every leaf that :func:`needs_seven_bit` re-encoded."""
    for path in [path for path, part in message.walk() if needs_seven_bit(part)]:
        message = message.replace_part(path, _seven_bit_leaf(message.part(path),
                                                             message.newline))
    return message


def canonicalise(message: Message, limits: Limits) -> Message:
    """``message`` 7-bit safe and with CRLF line ends: what the signature will cover."""
    message = seven_bit(message)
    if message.newline == CRLF and not any(
            not part.is_multipart and _has_bare_lf(part.body_bytes())
            for _, part in message.walk()):
        return message
    return parse(to_crlf(message.to_bytes()), limits=limits)


def _has_bare_lf(body: bytes) -> bool:
    return body.count(b"\n") != body.count(CRLF)
