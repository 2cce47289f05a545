"""Serialisation: spans are copied verbatim; only new pieces were ever re-encoded.

The walk is iterative (an explicit stack), so depth is bounded by memory, not by Python's
recursion limit.
"""

from __future__ import annotations

from mailroute.mime.part import LeafBody, Part, Span

__all__ = ["body_chunks", "emit_part", "part_chunks"]

_Chunk = bytes | memoryview


def _chunks(root: Part, *, with_headers: bool) -> list[_Chunk]:
    out: list[_Chunk] = []
    stack: list[Part | Span | bytes] = [root]
    first = True
    while stack:
        item = stack.pop()
        if isinstance(item, Span):
            if len(item):
                out.append(item.view())
            continue
        if isinstance(item, bytes):
            if item:
                out.append(item)
            continue
        if with_headers or not first:
            out.extend(field.raw for field in item.headers.fields)
            out.append(item.separator)
        first = False
        body = item.body
        if isinstance(body, LeafBody):
            out.append(body.span.view())
            continue
        pending: list[Part | Span | bytes] = [body.preamble]
        for delimiter, child in zip(body.delimiters, body.children, strict=True):
            pending.append(delimiter)
            pending.append(child)
        if body.close is not None:
            pending.append(body.close)
        pending.append(body.epilogue)
        stack.extend(reversed(pending))
    return out


def emit_part(part: Part) -> bytes:
    """The bytes of ``part`` (header fields, separator, body)."""
    return b"".join(_chunks(part, with_headers=True))


def part_chunks(part: Part) -> list[_Chunk]:
    """The pieces of ``part`` (header fields, separator, body), for streaming."""
    return _chunks(part, with_headers=True)


def body_chunks(part: Part) -> list[_Chunk]:
    """The pieces of ``part``'s body, for joining or streaming."""
    return _chunks(part, with_headers=False)

