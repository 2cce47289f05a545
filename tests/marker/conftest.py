"""The generated corpus, once per session (never committed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The shared design folder sits beside the checkout (../shared); MAILROUTE_CORPUS_GEN overrides.
GENERATOR = Path(os.environ.get(
    "MAILROUTE_CORPUS_GEN",
    Path(__file__).resolve().parents[3] / "shared" / "corpus" / "corpus-gen.py"))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The messages of ``corpus-gen.py --no-large``."""
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(GENERATOR), str(out), "--no-large"], check=True,
                   capture_output=True, timeout=300)
    messages = sorted(out.glob("*.eml"))
    assert len(messages) > 100
    return messages
