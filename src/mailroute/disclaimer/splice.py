"""Inserting text into a body without re-encoding the part of it before the insertion.

A disclaimer at the bottom of a 7bit, 8bit or quoted-printable body changes only its last
line: the encoded bytes up to the line break before the insertion point are kept as they are,
and only the rest (that line, the disclaimer, what follows) is encoded again. In a base64 body
the whole encoded lines before the insertion point are kept. That is faster
than re-encoding the whole body, and keeps every byte the sender's client wrote before the
insertion point. It applies when the body keeps its charset and transfer encoding; otherwise
(a charset switch to UTF-8, base64, 7bit gaining non-ASCII text) the caller re-encodes the
whole body with :meth:`~mailroute.mime.Message.replace_text`. The kept prefix is checked by
decoding it, so a body whose encoded and decoded line breaks do not match is never spliced.
"""

from __future__ import annotations

import binascii

from mailroute.disclaimer.select import Body
from mailroute.errors import MalformedMessageError
from mailroute.mime import LeafBody, Message, Part
from mailroute.mime.charsets import codec_name, label_codec_name
from mailroute.mime.transfer import choose_encoding, encode_payload

__all__ = ["splice_text"]

_LINE_ORIENTED = ("7bit", "8bit", "quoted-printable")
_STATEFUL = ("utf-16", "utf-32", "utf-7", "iso2022", "hz")


def splice_text(message: Message, body: Body, text: str, offset: int, insertion: str,
                codec: str) -> Message | None:
    """``message`` with ``insertion`` put into ``body`` at ``offset`` of its ``text``.

    ``text`` is the body as decoded with ``codec``. Returns ``None`` when the body cannot be
    spliced (see the module docstring); the caller then re-encodes the whole body.
    """
    part = message.part(body.path)
    encoding = body.transfer_encoding
    if not isinstance(part.body, LeafBody) or (
            encoding not in _LINE_ORIENTED and encoding != "base64"):
        return None
    try:
        if codec != codec_name(body.charset or "us-ascii"):
            return None  # decoded with a fallback: the label changes, the whole body with it
        # new text is written in the label's own charset: windows-1252 bytes the body has
        # are kept, none are added under an iso-8859-1 or us-ascii label
        insertion.encode(label_codec_name(body.charset))
    except (MalformedMessageError, UnicodeError):
        return None
    if encoding == "base64":
        return _splice_base64(message, body, part, text, offset, insertion, codec)
    start = text.rfind("\n", 0, offset) + 1
    tail_text = text[start:offset] + insertion + text[offset:]
    try:
        tail = tail_text.encode(codec)
        prefix = text[:start].encode(codec)
        if tail.decode(codec) != tail_text:
            return None
    except UnicodeError:
        return None
    if choose_encoding(tail, encoding) != encoding:
        return None
    raw = part.body.span.to_bytes()
    cut = _encoded_prefix(raw, prefix, encoding, text.count("\n", start))
    if cut is None:
        return None
    encoded = raw[:cut] + encode_payload(tail, encoding, message.newline)
    return message.replace_part(body.path, part.with_leaf_body(encoded, message.newline))


def _splice_base64(message: Message, body: Body, part: Part, text: str, offset: int,
                   insertion: str, codec: str) -> Message | None:
    """Keep the whole base64 lines before the insertion point; encode the rest again."""
    if codec.startswith(_STATEFUL):
        return None  # byte offsets in the middle of such text are not character boundaries
    assert isinstance(part.body, LeafBody)
    raw = part.body.span.to_bytes()
    first = raw.find(b"\n")
    line = raw[:first].rstrip(b"\r") if first > 0 else b""
    if not line or len(line) % 4:
        return None
    try:
        before = text[:offset].encode(codec)
        tail = insertion.encode(codec) + text[offset:].encode(codec)
        if (before + tail).decode(codec) != text[:offset] + insertion + text[offset:]:
            return None
    except UnicodeError:
        return None
    per_line = len(line) // 4 * 3
    stride = first + 1
    lines = len(before) // per_line
    cut = lines * stride
    try:
        kept = binascii.a2b_base64(raw[:cut])
    except binascii.Error:
        return None
    if kept != before[:lines * per_line]:
        return None  # the lines before are not all of the first line's length
    rest = before[lines * per_line:] + tail
    encoded = raw[:cut] + encode_payload(rest, "base64", message.newline)
    return message.replace_part(body.path, part.with_leaf_body(encoded, message.newline))


def _encoded_prefix(raw: bytes, prefix: bytes, encoding: str, tail_breaks: int) -> int | None:
    """Where the encoded bytes of ``prefix`` end in ``raw``, or ``None``.

    ``tail_breaks`` is the number of line breaks in the decoded text after the prefix; the
    prefix ends after the hard line break that many breaks before the end.
    """
    if encoding != "quoted-printable":
        return len(prefix) if raw.startswith(prefix) else None
    position = len(raw)
    seen = 0
    while True:
        newline = raw.rfind(b"\n", 0, position)
        if newline < 0:
            cut = 0
            break
        soft = raw.endswith(b"=", 0, newline) or raw.endswith(b"=\r", 0, newline)
        if not soft:
            if seen == tail_breaks:
                cut = newline + 1
                break
            seen += 1
        position = newline
    if binascii.a2b_qp(raw[:cut]) != prefix:
        return None
    return cut
