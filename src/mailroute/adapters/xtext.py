"""xtext (RFC 3461 section 4): ``+XX`` hex escapes, as MTAs write XFORWARD and XCLIENT values
and Sendmail its ``{cert_subject}`` macro."""

from __future__ import annotations

import re

__all__ = ["decode_xtext"]

_ESCAPE = re.compile(r"\+([0-9A-Fa-f]{2})")


def decode_xtext(value: str) -> str:
    """``value`` with every ``+XX`` escape turned into its character (a ``+`` that starts
    no escape stays)."""
    if "+" not in value:
        return value
    return _ESCAPE.sub(lambda found: chr(int(found.group(1), 16)), value)
