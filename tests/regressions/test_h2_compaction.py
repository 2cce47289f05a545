"""H2: the "already carries the disclaimer" check removed tags with ``<[^>]*>``, which searched
to the end once per ``<`` without a ``>`` (80 KB took 5 s). The compaction is now linear in time,
works in slices (bounded memory), and gives the same text as before."""

from __future__ import annotations

import html
import random
import re

import pytest

from mailroute.disclaimer import template
from mailroute.disclaimer.template import compact_text, html_to_compact_text, strip_tags
from tests.regressions.complexity import (
    RATIO,
    disclaimer,
    fits_memory,
    growth,
    insert,
    message,
)

_OLD_TAG = re.compile(r"<[^>]*>")


def _old_compact(text: str) -> str:
    if ">" in text:
        text = "".join(line.lstrip(" \t>") for line in text.split("\n"))
    return "".join(text.split())


def _bomb(n: int) -> str:
    return "<p>Confidential</p>" + "<" * n


def test_compaction_grows_linearly() -> None:
    assert growth(_bomb, html_to_compact_text, 100_000) <= RATIO


def test_the_check_on_a_body_with_the_anchor_word_grows_linearly() -> None:
    footer = disclaimer()
    assert footer.html_template.anchor == "Confidential"
    assert growth(_bomb, lambda body: footer.carried_by(body, is_html=True), 100_000) <= RATIO
    body = message(_bomb(400_000))
    assert fits_memory(len(body.to_bytes()), lambda: insert(body))


def test_compaction_of_many_short_quoted_lines_needs_bounded_memory() -> None:
    text = "> a\n" * 500_000
    assert fits_memory(len(text), lambda: compact_text(text))
    assert compact_text(text) == "a" * 500_000


def test_same_text_as_the_old_compaction_across_slice_cuts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    alphabet = ["<", ">", "&", "amp", ";", "\n", " ", "a", "&gt", "\t", "<p>", "&#", "x41",
                "\n>", "not", "in"]
    rnd = random.Random(7)
    for size in (1, 3, 7):
        monkeypatch.setattr(template, "_SLICE", size)
        for _ in range(3000):
            text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
            assert compact_text(text) == _old_compact(text)
            assert html_to_compact_text(text) == _old_compact(
                html.unescape(_OLD_TAG.sub("", text)))


def test_strip_tags_keeps_a_trailing_lone_lt() -> None:
    assert strip_tags("a<b>c<d") == "ac<d"
    assert strip_tags("<<<x>y", " ") == " y"
