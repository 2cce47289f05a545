"""Shared fixtures: the corpus (generated once per session) and ready-made templates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailroute.config.options import Options
from mailroute.filters.disclaimer import DisclaimerFilter, build

# The corpus' replies quote this footer; the greeting variable brings the non-ASCII text.
TEXT_TEMPLATE = "-- \nVertraulich / Confidential. mailroute-disclaimer-v1\n{{greeting}}\n"
HTML_TEMPLATE = ('<p style="color:#555">Vertraulich / Confidential. mailroute-disclaimer-v1'
                 "<br>{{greeting}}</p>")
WIDE = "Grüße aus Köln – 東京 ©"      # not in latin-1: latin-1 bodies become UTF-8
LATIN = "Grüße aus Köln, Straße"     # fits latin-1 and windows-1252: charsets are kept


@dataclass(frozen=True)
class Corpus:
    """The generated messages and the manifest entry of each."""

    folder: Path
    entries: tuple[dict[str, object], ...]

    def data(self, entry: dict[str, object]) -> bytes:
        """The bytes of one message."""
        return (self.folder / str(entry["file"])).read_bytes()


@pytest.fixture(scope="session")
def corpus(corpus_dir: Path) -> Corpus:
    """The shared corpus with its manifest."""
    entries = tuple(json.loads((corpus_dir / "manifest.json").read_text()))
    assert len(entries) > 150
    return Corpus(corpus_dir, entries)


def write_templates(folder: Path, text: str = TEXT_TEMPLATE,
                    html: str | None = HTML_TEMPLATE) -> dict[str, object]:
    """Template files in ``folder``; returns the matching ``text``/``html`` options."""
    (folder / "footer.txt").write_text(text, encoding="utf-8")
    options: dict[str, object] = {"text": "footer.txt"}
    if html is not None:
        (folder / "footer.html").write_text(html, encoding="utf-8")
        options["html"] = "footer.html"
    return options


def make_filter(folder: Path, *, text: str = TEXT_TEMPLATE, html: str | None = HTML_TEMPLATE,
                **options: object) -> DisclaimerFilter:
    """A disclaimer filter built from policy-style options, templates written to ``folder``."""
    values = write_templates(folder, text, html)
    values.update(options)
    opts = Options(values, source="test", base_dir=folder)
    built = build(opts)
    opts.finish()
    return built


@pytest.fixture
def wide_filter(tmp_path: Path) -> DisclaimerFilter:
    """The corpus templates with a greeting that does not fit latin-1."""
    return make_filter(tmp_path, var=[f"greeting={WIDE}"])
