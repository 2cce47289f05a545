"""Base64 with 76-character lines, fast and in bounded extra memory.

``binascii`` encodes without line breaks; the lines are cut with strided slice assignment
(a few hundred C-level copies per megabyte) instead of one Python object per line.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable

from mailroute.smime.der import Chunk

__all__ = ["base64_lines"]

_LINE = 76
_BLOCK = 57 * 16_384  # input bytes per round: whole lines, about 0.9 MB


def base64_lines(chunks: Iterable[Chunk], newline: bytes = b"\r\n") -> bytes:
    """Base64 of the concatenated ``chunks`` in lines of 76 characters, each ending ``newline``."""
    out: list[bytes] = []
    carry = b""
    for chunk in chunks:
        view = memoryview(chunk)
        start = 0
        if carry:
            need = _BLOCK - len(carry)
            carry += view[:need].tobytes()
            start = need
            if len(carry) < _BLOCK:
                continue
            out.append(_encode_block(carry, newline))
            carry = b""
        while len(view) - start >= _BLOCK:
            out.append(_encode_block(view[start:start + _BLOCK], newline))
            start += _BLOCK
        carry = view[start:].tobytes()
    if carry:
        out.append(_encode_block(carry, newline))
    return b"".join(out)


def _encode_block(data: Chunk, newline: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    lines = len(encoded) // _LINE
    full = lines * _LINE
    width = _LINE + len(newline)
    dest = bytearray(lines * width)
    for column in range(_LINE):
        dest[column::width] = encoded[column:full:_LINE]
    for offset, byte in enumerate(newline):
        dest[_LINE + offset::width] = bytes((byte,)) * lines
    if full < len(encoded):
        dest += encoded[full:] + newline
    return bytes(dest)
