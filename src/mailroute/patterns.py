"""Regular expressions compiled on first use.

A mail server starts ``mailroute`` once per message, and compiling a pattern costs 50-500 µs.
A module-level pattern that most messages never need (a rare branch, a fallback) is declared
with :func:`on_first_use` and called where it is used: ``_ARMOR().search(text)``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import AnyStr

__all__ = ["on_first_use"]


def on_first_use(pattern: AnyStr, flags: int = 0) -> Callable[[], re.Pattern[AnyStr]]:
    """A function that compiles ``pattern`` the first time it is called and then returns
    the same compiled pattern."""

    @functools.cache
    def compiled() -> re.Pattern[AnyStr]:
        return re.compile(pattern, flags)

    return compiled
