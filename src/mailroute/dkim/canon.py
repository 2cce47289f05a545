"""DKIM canonicalization (RFC 6376 section 3.4), on whole byte strings at C speed.

Line breaks are normalised to CRLF first: a message stored with LF line endings goes on the
wire with CRLF, and that is what a receiver hashes.
"""

from __future__ import annotations

import re

__all__ = ["body", "crlf", "header", "strip_b_value"]

_EOL = re.compile(rb"\r?\n")
_WSP = re.compile(rb"[ \t]+")
_WSP_EOL = re.compile(rb"[ \t]+\r\n")
_TRAILING_EMPTY = re.compile(rb"(?:\r\n)+\Z")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_B_TAG = re.compile(rb"((?:^|;)[ \t\r\n]*b[ \t\r\n]*=)[^;]*")


def crlf(data: bytes) -> bytes:
    """``data`` with every LF or CRLF line break written as CRLF."""
    return _EOL.sub(b"\r\n", data)


def body(data: bytes, relaxed: bool) -> bytes:
    """The canonical body: ``relaxed`` or ``simple`` (``data`` after the blank line)."""
    text = crlf(data)
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    if relaxed:
        text = _WSP_EOL.sub(b"\r\n", _WSP.sub(b" ", text))
    text = _TRAILING_EMPTY.sub(b"", text)
    if text:
        return text + b"\r\n"
    return b"" if relaxed else b"\r\n"


def header(raw: bytes, relaxed: bool) -> bytes:
    """One canonical header field from its raw bytes (final line break included)."""
    field = crlf(raw)
    if not field.endswith(b"\r\n"):
        field += b"\r\n"
    if not relaxed:
        return field
    name, _, value = field.partition(b":")
    value = _WSP.sub(b" ", _FOLD.sub(b"", value[:-2])).strip(b" \t")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def strip_b_value(raw: bytes) -> bytes:
    """A signature field with the value of its ``b=`` tag removed (RFC 6376 3.7)."""
    name, colon, value = raw.partition(b":")
    return name + colon + _B_TAG.sub(rb"\1", value)
