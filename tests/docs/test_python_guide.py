"""docs/integrations/python.md: every Python block runs, in order, in one namespace, in a
folder holding the tutorial's policy and footer (as the page says), and its asserts hold."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from tests.docs.blocks import blocks

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "integrations" / "python.md"
TUTORIAL = ROOT / "docs" / "tutorial.md"


def _tutorial_files(folder: Path) -> None:
    """policy.toml and footer.txt as the tutorial's heredocs write them."""
    for block in blocks(TUTORIAL):
        lines = block.text.splitlines()
        for start, line in enumerate(lines):
            if line.startswith("cat > ") and line.endswith("<<'EOF'"):
                name = line.split()[2]
                end = lines.index("EOF", start)
                if name in ("policy.toml", "footer.txt"):
                    (folder / name).write_text("\n".join(lines[start + 1:end]) + "\n")
    assert (folder / "policy.toml").exists()
    assert (folder / "footer.txt").exists()


def test_every_python_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tutorial_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = [b.text for b in blocks(PAGE) if b.lang == "python"]
    assert len(code) == 4
    module = types.ModuleType("python_guide")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for number, text in enumerate(code):
        exec(compile(text, f"{PAGE}:block{number}", "exec"), namespace)  # noqa: S102
    assert namespace["handed_on"]
    assert os.getcwd() == str(tmp_path)
