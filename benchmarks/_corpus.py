"""The benchmark corpus: generated on demand with corpus/generate.py, never committed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# The project's own generator; MAILROUTE_CORPUS_GEN may name another (as for the tests).
GENERATOR = Path(os.environ.get("MAILROUTE_CORPUS_GEN",
                                Path(__file__).resolve().parents[1] / "corpus" / "generate.py"))
DEFAULT_DIR = Path(__file__).resolve().parent / "out" / "corpus"


def corpus_dir(target: Path = DEFAULT_DIR) -> Path:
    """The corpus folder, generated with corpus/generate.py when missing."""
    if not (target / "manifest.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(GENERATOR), str(target)], check=True,
                       stdout=subprocess.DEVNULL)
    return target


def manifest(target: Path) -> list[dict[str, object]]:
    """The corpus manifest: one entry per message."""
    entries: list[dict[str, object]] = json.loads((target / "manifest.json").read_text())
    return entries
