"""The generated corpus, once per session (never committed)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def corpus(corpus_dir: Path) -> list[Path]:
    """The messages of the shared corpus."""
    messages = sorted(corpus_dir.glob("*.eml"))
    assert len(messages) > 100
    return messages
