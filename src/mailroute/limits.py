"""Resource limits, checked before expensive work.

The defaults follow Postfix where Postfix has an equivalent (``message_size_limit``,
``header_size_limit``, ``mime_nesting_limit``, ``mime_boundary_length_limit``,
``line_length_limit``); the rest are generous bounds for hostile input.
"""

from __future__ import annotations

from mailroute.errors import InvalidArgumentError
from mailroute.records import fields, record

__all__ = ["DEFAULT_LIMITS", "Limits"]


@record(frozen=True, kw_only=True)
class Limits:
    """Bounds on what mailroute will parse. Every value is a positive integer.

    Attributes:
        max_message_size: bytes of the whole message (Postfix ``message_size_limit``, 50 MiB
            here; Postfix's own default is 10 MB).
        max_header_block_size: bytes of one entity's header block (``header_size_limit``).
        max_header_fields: header fields in one entity.
        max_total_header_fields: header fields in all entities together (checked as each
            entity is scanned). Postfix bounds each header with ``header_size_limit`` and the
            parts with ``mime_nesting_limit``; this bounds their product, so that 1,000
            fields in each of 10,000 parts cannot be kept in memory.
        max_header_line_length: bytes of one physical header line, line ending excluded
            (Postfix ``line_length_limit``). Body lines are copied verbatim and not measured.
        max_header_value_size: bytes of one unfolded field value handed to a value parser
            (guards the stdlib's superlinear address and encoded-word parsers).
        max_depth: MIME nesting depth (``mime_nesting_limit``).
        max_parts: entities in the whole tree.
        max_boundary_length: bytes of a multipart boundary (RFC 2046 allows 70;
            ``mime_boundary_length_limit`` is 2048).
    """

    max_message_size: int = 50 * 1024 * 1024
    max_header_block_size: int = 102_400
    max_header_fields: int = 1_000
    max_total_header_fields: int = 20_000
    max_header_line_length: int = 2_048
    max_header_value_size: int = 16_384
    max_depth: int = 100
    max_parts: int = 10_000
    max_boundary_length: int = 2_048

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidArgumentError(f"limit {f.name} must be a positive integer")


DEFAULT_LIMITS = Limits()
