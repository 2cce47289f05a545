"""docs/security.md names the tests that hold each claim: every test file or folder it names
exists, and the claims it quotes from the code are the code's."""

from __future__ import annotations

import re
from pathlib import Path

from mailroute.marker.token import MAX_FIELD_LENGTH

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "security.md"


def test_every_named_test_exists() -> None:
    text = PAGE.read_text(encoding="utf-8")
    named = set(re.findall(r"`(tests/[\w/.-]+)`", text))
    # a table cell may name further files of the folder given first in it
    for row in re.findall(r"`(tests/[\w/]+/)[\w.-]+\.py`((?:, `[\w.-]+\.py`)+)", text):
        folder, rest = row
        named |= {folder + name for name in re.findall(r"`([\w.-]+\.py)`", rest)}
    assert len(named) >= 15
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing


def test_quoted_bounds_are_the_code_s() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert f"{4 * MAX_FIELD_LENGTH:,} bytes as it arrived or\n  {MAX_FIELD_LENGTH} characters" \
        in text
