"""DKIM canonicalization (RFC 6376 section 3.4), on whole byte strings at C speed.

Line breaks are normalised to CRLF first: a message stored with LF line endings goes on the
wire with CRLF, and that is what a receiver hashes.
"""

from __future__ import annotations

import re

__all__ = ["body", "crlf", "header", "strip_b_value"]

_WSP = re.compile(rb"[ \t]+")
_WSP_EOL = re.compile(rb"[ \t]+\r\n")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_B_TAG = re.compile(rb"((?:^|;)[ \t\r\n]*b[ \t\r\n]*=)[^;]*")


def crlf(data: bytes) -> bytes:
    """``data`` with every LF or CRLF line break written as CRLF (a lone CR stays)."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def body(data: bytes, relaxed: bool) -> bytes:
    """The canonical body: ``relaxed`` or ``simple`` (``data`` after the blank line)."""
    text = crlf(data)
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    if relaxed:
        if b"\t" in text or b"  " in text:
            text = _WSP.sub(b" ", text)
        if b" \r\n" in text:
            text = _WSP_EOL.sub(b"\r\n", text)
    end = len(text)
    while text.endswith(b"\r\n", 0, end):
        end -= 2
    if end:
        return text[:end + 2]
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
