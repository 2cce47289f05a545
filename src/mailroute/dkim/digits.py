"""Numbers in tag values and records that a sender or a DNS answer writes."""

from __future__ import annotations

__all__ = ["decimal"]


def decimal(text: str, max_digits: int) -> int | None:
    """``text`` as a number when it is 1 to ``max_digits`` ASCII digits, else ``None``.

    ``str.isdigit`` is true for ``²`` and ``int`` refuses more than 4,300 digits: neither
    may turn a sender's tag value into an exception.
    """
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None
