"""Text of a leaf: transfer decoding plus a strict charset codec."""

from __future__ import annotations

from mailroute.errors import MalformedMessageError
from mailroute.mime.charsets import codec_name
from mailroute.mime.part import Part
from mailroute.mime.transfer import decode_payload

__all__ = ["codec_name", "decode_text"]


def decode_text(part: Part) -> str:
    """The decoded text of a ``text/*`` leaf, never with replacement characters.

    Raises:
        MalformedMessageError: unknown charset, or bytes that do not match it.
    """
    data = decode_payload(part).data
    name = codec_name(part.charset)
    try:
        return data.decode(name)
    except UnicodeDecodeError as exc:
        raise MalformedMessageError("text does not match its declared charset") from exc
