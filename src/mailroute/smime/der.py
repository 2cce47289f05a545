"""The few DER pieces that are assembled by hand, and CMS parsing with limits.

Large contents (a 28 MB entity) are never put into an ASN.1 object: the small parts of a CMS
structure are encoded with asn1crypto and the enclosing TLV headers are written here, so the
big content stays one buffer from start to end.
"""

from __future__ import annotations

from collections.abc import Sequence

from asn1crypto import cms, core

from mailroute.errors import MalformedMessageError

__all__ = [
    "Chunk",
    "GcmParameters",
    "chunks_length",
    "header",
    "load_content_info",
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
