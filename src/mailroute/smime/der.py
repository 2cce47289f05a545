"""The few DER pieces that are assembled by hand, and CMS parsing with limits.

Large contents (a 28 MB entity) are never put into an ASN.1 object: the small parts of a CMS
structure are encoded with asn1crypto and the enclosing TLV headers are written here, so the
big content stays one buffer from start to end.
"""

from __future__ import annotations

from collections.abc import Sequence

from asn1crypto import cms, core

from mailroute.errors import MalformedMessageError
from mailroute.records import record

__all__ = [
    "Chunk",
    "GcmParameters",
    "Tlv",
    "children",
    "chunks_length",
    "header",
    "load_content_info",
    "octets",
    "read_tlv",
    "tlv",
]

Chunk = bytes | memoryview

SEQUENCE = 0x30
OCTET_STRING = 0x04
CONTEXT_0 = 0xA0  # [0] constructed
CONTEXT_0_PRIMITIVE = 0x80  # [0] IMPLICIT OCTET STRING


class GcmParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 ``GCMParameters``: the nonce and the ICV length (default 12)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("aes_nonce", core.OctetString),
        ("aes_icv_len", core.Integer, {"default": 12}),
    ]


def header(tag: int, length: int) -> bytes:
    """A DER identifier and definite length for ``length`` content bytes."""
    if length < 0x80:
        return bytes((tag, length))
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big")


def chunks_length(chunks: Sequence[Chunk]) -> int:
    """Total length of ``chunks``."""
    return sum(len(c) for c in chunks)


def tlv(tag: int, chunks: Sequence[Chunk]) -> list[Chunk]:
    """``chunks`` wrapped in a DER TLV, as a list of chunks (nothing is copied)."""
    return [header(tag, chunks_length(chunks)), *chunks]


def load_content_info(data: bytes, *, max_size: int) -> cms.ContentInfo:
    """Parse a CMS ``ContentInfo`` (DER or BER) after checking its size.

    Raises:
        MalformedMessageError: larger than ``max_size`` or not a ContentInfo.
    """
    if len(data) > max_size:
        raise MalformedMessageError("CMS structure exceeds the size limit")
    try:
        info = cms.ContentInfo.load(data, strict=False)
        _ = info["content_type"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedMessageError("not a CMS ContentInfo structure") from exc
    return info


_MAX_NESTING = 32


@record(frozen=True)
class Tlv:
    """One BER/DER element located in a buffer (low tag numbers only, as CMS needs).

    ``content`` is where the contents start, ``end`` where the element ends (after the
    end-of-contents octets when the length is indefinite).
    """

    tag: int
    start: int
    content: int
    end: int
    indefinite: bool

    @property
    def content_end(self) -> int:
        """Where the contents end."""
        return self.end - 2 if self.indefinite else self.end


def _header(buf: bytes, pos: int, limit: int) -> tuple[int, int | None, int]:
    if pos + 2 > limit:
        raise MalformedMessageError("truncated ASN.1 element")
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise MalformedMessageError("unsupported ASN.1 tag")
    if first < 0x80:
        return tag, first, pos + 2
    if first == 0x80:
        if not tag & 0x20:
            raise MalformedMessageError("indefinite length on a primitive element")
        return tag, None, pos + 2
    size = first & 0x7F
    if size > 8 or pos + 2 + size > limit:
        raise MalformedMessageError("bad ASN.1 length")
    return tag, int.from_bytes(buf[pos + 2:pos + 2 + size], "big"), pos + 2 + size


def read_tlv(buf: bytes, pos: int, limit: int) -> Tlv:
    """The element starting at ``pos``, which must end by ``limit``.

    Raises:
        MalformedMessageError: truncated, too deeply nested or otherwise unreadable.
    """
    tag, length, content = _header(buf, pos, limit)
    if length is not None:
        if content + length > limit:
            raise MalformedMessageError("truncated ASN.1 element")
        return Tlv(tag, pos, content, content + length, False)
    depth, at = 1, content
    while depth:
        if buf[at:at + 2] == b"\0\0":
            depth, at = depth - 1, at + 2
            continue
        _, inner, inner_content = _header(buf, at, limit)
        if inner is None:
            depth += 1
            if depth > _MAX_NESTING:
                raise MalformedMessageError("ASN.1 nesting too deep")
            at = inner_content
        else:
            at = inner_content + inner
        if at > limit:
            raise MalformedMessageError("truncated ASN.1 element")
    return Tlv(tag, pos, content, at, True)


def children(buf: bytes, parent: Tlv) -> list[Tlv]:
    """The elements inside a constructed element."""
    found = []
    at, stop = parent.content, parent.content_end
    while at < stop:
        child = read_tlv(buf, at, stop)
        found.append(child)
        at = child.end
    return found


def octets(buf: bytes, element: Tlv) -> list[memoryview]:
    """The contents of an OCTET STRING (or an implicitly tagged one), primitive or
    constructed (BER chunks), as views into ``buf``: nothing is copied."""
    view = memoryview(buf)
    if not element.tag & 0x20:
        return [view[element.content:element.end]]
    pieces: list[memoryview] = []
    stack = [element]
    while stack:
        current = stack.pop()
        if current.tag & 0x20:
            if len(stack) > _MAX_NESTING:
                raise MalformedMessageError("ASN.1 nesting too deep")
            stack.extend(reversed(children(buf, current)))
        elif current.tag == OCTET_STRING:
            pieces.append(view[current.content:current.end])
        else:
            raise MalformedMessageError("unexpected element in a constructed OCTET STRING")
    return pieces
