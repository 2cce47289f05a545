"""mailroute.patterns: a pattern is compiled on the first call, once."""

from __future__ import annotations

import re

import pytest

from mailroute.patterns import on_first_use


def test_the_pattern_is_compiled_on_the_first_call_and_then_reused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    real = re.compile

    def counting(pattern: str, flags: int = 0) -> re.Pattern[str]:
        compiled.append(pattern)
        return real(pattern, flags)

    monkeypatch.setattr(re, "compile", counting)
    later = on_first_use(r"ab+c", re.IGNORECASE)
    assert compiled == []
    first = later()
    assert later() is first
    assert compiled == [r"ab+c"]
    assert first.fullmatch("ABBC")


def test_bytes_patterns_stay_bytes() -> None:
    assert on_first_use(rb"<meta\b")().search(b"x<meta charset=utf-8>")
