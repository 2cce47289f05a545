"""MIME charset labels to Python codecs, strictly."""

from __future__ import annotations

import codecs

from mailroute.errors import MalformedMessageError

__all__ = ["codec_name"]


def codec_name(charset: str | None) -> str:
    """The Python codec name for a MIME charset label (``us-ascii`` when absent).

    Raises:
        MalformedMessageError: Python has no codec for the label.
    """
    label = (charset or "us-ascii").strip().lower()
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError) as exc:  # ValueError: a NUL in the label
        raise MalformedMessageError("unknown charset") from exc
    # Python also registers bytes-to-bytes codecs (base64, zlib, hex): not charsets.
    if not getattr(info, "_is_text_encoding", True):
        raise MalformedMessageError("unknown charset")
    return info.name
