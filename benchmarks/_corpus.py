"""Locating the shared corpus for benchmarks: generated on demand, never committed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GENERATOR = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "corpus-gen.py"
DEFAULT_DIR = Path(__file__).resolve().parent / "out" / "corpus"


def corpus_dir(target: Path = DEFAULT_DIR) -> Path:
    """The corpus folder, generated with ../shared/corpus/corpus-gen.py when missing."""
    if not (target / "manifest.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(GENERATOR), str(target)], check=True,
                       stdout=subprocess.DEVNULL)
    return target


def manifest(target: Path) -> list[dict[str, object]]:
    """The corpus manifest: one entry per message."""
    entries: list[dict[str, object]] = json.loads((target / "manifest.json").read_text())
    return entries
