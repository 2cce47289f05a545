"""docs/tutorial.md runs as written: every ``sh`` block, in order, from a copy of the source
tree with a fresh HOME, and what it prints is what the page shows. Its Postfix commands end in
the configuration of examples/postfix/, which tests/mta runs against a real Postfix; the
README quick start is the tutorial's first steps."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.blocks import Block, blocks

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "tutorial.md"
SERVICES = ("smtp/inet", "127.0.0.1:10026/inet", "mailroute/unix")

pytestmark = pytest.mark.interop


def _source_tree(target: Path) -> Path:
    """A copy of the files of the source tree (what a clone holds), without .venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _postfix_config(folder: Path) -> Path:
    """A throwaway Postfix configuration: Debian's stock master.cf, an empty main.cf."""
    folder.mkdir()
    shutil.copy(Path("/etc/postfix/master.cf"), folder / "master.cf")
    (folder / "main.cf").write_text("")
    return folder


def _postconf(config: Path, *args: str) -> str:
    return subprocess.run(["postconf", "-c", str(config), *args], capture_output=True,
                          text=True, check=True, timeout=30).stdout


def _run_blocks(page_blocks: list[Block], tree: Path, tmp: Path,
                mail_config: Path) -> list[tuple[Block, subprocess.CompletedProcess[str]]]:
    """Run each ``sh`` block in its own bash, carrying the working directory and the
    exported variables from one block to the next, as a reader's shell would."""
    state = tmp / "state"
    state.mkdir()
    (state / "cwd").write_text(str(tree))
    venv_bin = str(ROOT / ".venv" / "bin")
    path = ":".join(p for p in os.environ["PATH"].split(":") if p != venv_bin)
    (state / "env").write_text("")
    env = {"HOME": str(tmp / "home"), "PATH": path, "MAIL_CONFIG": str(mail_config),
           "LANG": "C.UTF-8"}
    (tmp / "home").mkdir()
    results = []
    for block in page_blocks:
        if block.lang != "sh":
            continue
        script = (f'cd "$(cat {state}/cwd)"\nsource {state}/env\n'
                  f"trap 'pwd > {state}/cwd; export -p > {state}/env' EXIT\n"
                  f"set -euo pipefail\n{block.text}")
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        results.append((block, done))
        assert done.returncode == block.exit, (block.text, done.stdout, done.stderr)
    return results


def _expected_output(page_blocks: list[Block]) -> dict[str, str]:
    """``sh`` block text -> the ``text`` or ``diff`` block the page shows right after it."""
    shown = {}
    for block, following in itertools.pairwise(page_blocks):
        if block.lang == "sh" and following.lang in ("text", "diff"):
            shown[block.text] = following.text
    return shown


def test_tutorial_runs_as_written_and_prints_what_it_shows(tmp_path: Path) -> None:
    assert shutil.which("postconf"), "Postfix is installed by scripts/setup-system"
    page_blocks = blocks(PAGE)
    tree = _source_tree(tmp_path / "mailroute")
    mail_config = _postfix_config(tmp_path / "postfix")
    results = _run_blocks(page_blocks, tree, tmp_path, mail_config)
    assert len(results) >= 5
    shown = _expected_output(page_blocks)
    compared = 0
    for block, done in results:
        if block.text not in shown:
            continue
        actual, expected = done.stdout, shown[block.text]
        if actual.startswith("--- "):  # a diff: the file-name lines carry times
            actual = actual[actual.index("@@"):]
        assert actual == expected, block.text
        compared += 1
    assert compared == 3
    installed = tmp_path / "home" / "mailroute-venv" / "bin" / "mailroute"
    version = subprocess.run([str(installed), "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert version.startswith("mailroute ")
    assert "site-packages" in subprocess.run(
        [str(installed.parent / "python"), "-c", "import mailroute; print(mailroute.__file__)"],
        capture_output=True, text=True, check=True).stdout  # installed, not the checkout


def test_tutorial_postfix_commands_make_the_tested_example_configuration(
        tmp_path: Path) -> None:
    page_blocks = [b for b in blocks(PAGE) if b.lang == "sh" and "postconf" in b.text]
    assert page_blocks
    tutorial = _postfix_config(tmp_path / "tutorial")
    for block in page_blocks:
        subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], check=True,
                       env={**os.environ, "MAIL_CONFIG": str(tutorial)}, timeout=60)
    example = _postfix_config(tmp_path / "example")
    _postconf(example, "-MX", "smtp/inet")
    with (example / "master.cf").open("a") as master:
        master.write((ROOT / "examples" / "postfix" / "master.cf").read_text())
    (example / "main.cf").write_text((ROOT / "examples" / "postfix" / "main.cf").read_text())
    for service in SERVICES:
        assert _postconf(tutorial, "-M", service) == _postconf(example, "-M", service)
        assert _postconf(tutorial, "-M", service).strip()
    settings = ("mailroute_destination_recipient_limit",
                "mailroute_destination_concurrency_limit")
    assert _postconf(tutorial, "-n", *settings) == _postconf(example, "-n", *settings)
    assert _postconf(tutorial, "-n", *settings).count(" = ") == 2


def _commands(text: str) -> list[str]:
    """Command lines of a shell block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = (line.split(" #")[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_quick_start_is_the_tutorial() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    quick = [c for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
             for c in _commands(block)]
    tutorial = [c for b in blocks(PAGE) if b.lang == "sh" for c in _commands(b.text)]
    install_and_run = [c for c in quick if not c.startswith("./scripts/")]
    assert len(install_and_run) >= 4
    positions = [tutorial.index(c) for c in install_and_run]  # ValueError: not in tutorial
    assert positions == sorted(positions)
