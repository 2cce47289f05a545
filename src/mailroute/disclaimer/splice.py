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
import re

from mailroute.disclaimer.select import Body
from mailroute.errors import MalformedMessageError
from mailroute.mime import LeafBody, Message, Part, Span
from mailroute.mime.charsets import codec_name, decode_bytes, encode_text, label_codec_name
from mailroute.mime.transfer import choose_encoding, encode_payload, long_line
from mailroute.patterns import on_first_use

__all__ = ["splice_text"]

_LINE_ORIENTED = ("7bit", "8bit", "quoted-printable")
_IDENTITY = ("7bit", "8bit")
# Codecs that write every character on its own (no state, no shifts), so equal bytes on one
# side of an offset mean equal text.
_SELF_CONTAINED = re.compile(r"(?:ascii|utf-8|latin-1|iso8859-\d+|cp125\d|koi8-[ru])\Z")
_NON_ASCII = on_first_use(rb"[\x80-\xff]")
_MAX_LINE = 998
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
    self_contained = _SELF_CONTAINED.match(codec) is not None
    if encoding in _IDENTITY and self_contained:
        return _splice_identity(message, body, part, text, offset, insertion, codec)
    if self_contained:
        return _splice_qp(message, body, part, text, offset, insertion, codec)
    start = text.rfind("\n", 0, offset) + 1
    tail_text = text[start:offset] + insertion + text[offset:]
    try:
        tail = encode_text(tail_text, codec)
        prefix = encode_text(text[:start], codec)
        if decode_bytes(tail, codec) != tail_text:
            return None
    except UnicodeError:
        return None
    if choose_encoding(tail, encoding) != encoding:
        return None
    span = part.body.span
    cut = _encoded_prefix(span, prefix, encoding, text.count("\n", start))
    if cut is None:
        return None
    with memoryview(span.buf) as view:
        encoded = encode_payload(tail, encoding, message.newline, prefix=view[span.start:cut])
    return _replaced(message, body, part, encoded)


def _splice_identity(message: Message, body: Body, part: Part, text: str, offset: int,
                     insertion: str, codec: str) -> Message | None:
    """A 7bit or 8bit body in a codec that writes each character on its own: the body's bytes
    are the text's, so the insertion goes between the original bytes before and after it.

    Only the shorter side of the text is encoded, to find the byte offset, and compared with
    the body; the result is written in one join of views, so a body whose disclaimer goes at
    the top (or above a long quoted reply) costs one copy, not five.
    """
    assert isinstance(part.body, LeafBody)
    span = part.body.span
    buf, first, last = span.buf, span.start, span.end
    try:
        added = encode_payload(insertion.encode(codec), body.transfer_encoding,
                               message.newline)  # the message's line breaks
        if offset <= len(text) - offset:
            side = text[:offset].encode(codec)
            at = first + len(side) if buf.startswith(side, first, last) else -1
        else:
            side = text[offset:].encode(codec)
            at = last - len(side) if buf.endswith(side, first, last) else -1
    except UnicodeError:
        return None
    if at < 0 or not _identity_fits(buf, first, last, at, added, body.transfer_encoding):
        return None
    with memoryview(buf) as view:
        encoded = b"".join((view[first:at], added, view[at:last]))
    return _replaced(message, body, part, encoded)


def _splice_qp(message: Message, body: Body, part: Part, text: str, offset: int,
               insertion: str, codec: str) -> Message | None:
    """A quoted-printable body: only the encoded line(s) holding the insertion point are
    written again, found by counting hard line breaks from the nearer end of the body.

    Decoding is line by line, so when those lines decode to the text they stand for, the
    bytes before and after them are the rest of the text; they are joined as views (no copy
    of the body but the result, wherever the disclaimer goes).
    """
    assert isinstance(part.body, LeafBody)
    span = part.body.span
    buf, first, last = span.buf, span.start, span.end
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset) + 1 or len(text)
    if start <= len(text) - end:
        raw_start = _hard_breaks_forward(buf, first, last, text.count("\n", 0, start))
        raw_end = -1 if raw_start < 0 else (
            _hard_breaks_forward(buf, raw_start, last, 1) if text.endswith("\n", 0, end)
            else last)
    else:
        raw_end = last if end == len(text) else _hard_breaks_backward(
            buf, first, last, text.count("\n", end) + 1)
        raw_start = -1 if raw_end < 0 else _hard_breaks_backward(
            buf, first, raw_end, text.count("\n", start, end) + 1)
    if raw_start < 0 or raw_end < 0:
        return None
    try:
        if binascii.a2b_qp(buf[raw_start:raw_end]) != text[start:end].encode(codec):
            return None
        lines = (text[start:offset] + insertion + text[offset:end]).encode(codec)
    except UnicodeError:
        return None
    added = encode_payload(lines, "quoted-printable", message.newline)
    with memoryview(buf) as view:
        encoded = b"".join((view[first:raw_start], added, view[raw_end:last]))
    return _replaced(message, body, part, encoded)


def _soft(buf: bytes, newline: int) -> bool:
    """True when the line break at ``newline`` is a quoted-printable soft break."""
    return buf.endswith(b"=", 0, newline) or buf.endswith(b"=\r", 0, newline)


def _hard_breaks_forward(buf: bytes, first: int, last: int, count: int) -> int:
    """The offset after the ``count``-th hard line break from ``first`` (``first`` for 0),
    or -1."""
    position = first
    while count:
        newline = buf.find(b"\n", position, last)
        if newline < 0:
            return -1
        position = newline + 1
        if not _soft(buf, newline):
            count -= 1
    return position


def _hard_breaks_backward(buf: bytes, first: int, last: int, count: int) -> int:
    """The offset after the ``count``-th hard line break before ``last`` (counted from
    ``last``; ``count`` >= 1): ``first`` when there is one fewer, -1 when fewer still."""
    position = last
    while True:
        newline = buf.rfind(b"\n", first, position)
        if newline < 0:
            return first if count == 1 else -1
        position = newline
        if not _soft(buf, newline):
            count -= 1
            if not count:
                return newline + 1


def _identity_fits(buf: bytes, first: int, last: int, at: int, added: bytes,
                   encoding: str) -> bool:
    """True when ``added`` at ``at`` leaves a body the encoding can carry: no NUL, lines of at
    most 998 octets from the edited line on, and only ASCII in a 7bit body (as
    :func:`~mailroute.mime.transfer.choose_encoding` asks), checked in place."""
    line_start = buf.rfind(b"\n", first, at) + 1 or first
    line_end = buf.find(b"\n", at, last)
    line_end = last if line_end < 0 else line_end
    if b"\0" in added or buf.find(b"\0", line_start, last) >= 0:
        return False
    if encoding == "7bit" and (not added.isascii()
                               or _NON_ASCII().search(buf, line_start, last) is not None):
        return False
    if long_line(added) or long_line(buf, start=line_end, end=last):
        return False
    if b"\n" not in added:
        return line_end - line_start + len(added) <= _MAX_LINE
    return (at - line_start + added.index(b"\n") <= _MAX_LINE
            and len(added) - added.rindex(b"\n") - 1 + line_end - at <= _MAX_LINE)


def _splice_base64(message: Message, body: Body, part: Part, text: str, offset: int,
                   insertion: str, codec: str) -> Message | None:
    """Keep the whole base64 lines before the insertion point; encode the rest again.

    The body is read in place and the text encoded once, so a large body (one that is a
    single line too) costs the re-encoded rest and the result, not a copy at every step.
    """
    if codec.startswith(_STATEFUL):
        return None  # byte offsets in the middle of such text are not character boundaries
    assert isinstance(part.body, LeafBody)
    span = part.body.span
    buf, first, last = span.buf, span.start, span.end
    newline = buf.find(b"\n", first, last)
    width = newline - first - (newline > first and buf[newline - 1] == 0x0D)
    if newline < 0 or width <= 0 or width % 4:
        return None
    try:
        before = text[:offset].encode(codec)
        tail = insertion.encode(codec) + text[offset:].encode(codec)
        # Codecs that write each character on their own decode what they encoded; for the
        # others the round trip is checked.
        if not _SELF_CONTAINED.match(codec) and (
                (before + tail).decode(codec) != text[:offset] + insertion + text[offset:]):
            return None
    except UnicodeError:
        return None
    per_line = width // 4 * 3
    stride = newline + 1 - first
    lines = len(before) // per_line
    cut = first + lines * stride
    with memoryview(buf) as view:
        try:
            kept = binascii.a2b_base64(view[first:cut])
        except binascii.Error:
            return None
        with memoryview(before) as kept_text:
            if kept_text[:lines * per_line] != kept:
                return None  # the lines before are not all of the first line's length
            rest = b"".join((kept_text[lines * per_line:], tail))
        del before, tail, kept
        encoded = encode_payload(rest, "base64", message.newline, prefix=view[first:cut])
    return _replaced(message, body, part, encoded)


def _encoded_prefix(span: Span, prefix: bytes, encoding: str, tail_breaks: int) -> int | None:
    """Where the encoded bytes of ``prefix`` end in the body ``span`` (an offset into its
    buffer), or ``None``; read in place.

    ``tail_breaks`` is the number of line breaks in the decoded text after the prefix; the
    prefix ends after the hard line break that many breaks before the end.
    """
    buf, first, last = span.buf, span.start, span.end
    if encoding != "quoted-printable":
        return first + len(prefix) if buf.startswith(prefix, first, last) else None
    position = last
    seen = 0
    while True:
        newline = buf.rfind(b"\n", first, position)
        if newline < 0:
            cut = first
            break
        soft = buf.endswith(b"=", first, newline) or buf.endswith(b"=\r", first, newline)
        if not soft:
            if seen == tail_breaks:
                cut = newline + 1
                break
            seen += 1
        position = newline
    with memoryview(buf) as view:
        if binascii.a2b_qp(view[first:cut]) != prefix:
            return None
    return cut


def _replaced(message: Message, body: Body, part: Part, encoded: bytes) -> Message | None:
    """``message`` with ``encoded`` as the body, or ``None`` when an enclosing multipart
    would read a line of it as its delimiter (the caller then writes the body again)."""
    if not message.boundary_safe(body.path, encoded):
        return None
    return message.replace_part(body.path, part.with_leaf_body(encoded, message.newline))
