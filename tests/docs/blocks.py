"""Fenced code blocks of a documentation page, for tests that run or compare them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^(?:<!-- exit (?P<exit>\d+) -->\n)?```(?P<lang>[\w-]*)[^\n]*\n"
                    r"(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, text, and the exit status the page announces."""

    lang: str
    text: str
    exit: int


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page`` in order (``<!-- exit N -->`` just before a block sets
    the exit status its commands end with; 0 otherwise)."""
    text = page.read_text(encoding="utf-8")
    return [Block(m["lang"], m["body"], int(m["exit"] or 0)) for m in _FENCE.finditer(text)]
