"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The shared design folder sits beside the checkout (../shared); MAILROUTE_CORPUS_GEN overrides.
CORPUS_GENERATOR = Path(os.environ.get(
    "MAILROUTE_CORPUS_GEN",
    Path(__file__).resolve().parents[2] / "shared" / "corpus" / "corpus-gen.py"))


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``corpus-gen.py --no-large`` output (messages and manifest.json), generated once."""
    assert CORPUS_GENERATOR.is_file(), (
        f"the corpus generator is expected at {CORPUS_GENERATOR} (the shared folder beside "
        "the checkout); set MAILROUTE_CORPUS_GEN to its path")
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(CORPUS_GENERATOR), str(out), "--no-large"],
                   check=True, capture_output=True, timeout=300)
    assert (out / "manifest.json").exists()
    return out
