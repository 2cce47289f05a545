"""docs/reference/ is generated from the code (scripts/gen_reference.py) and committed: it
must equal a fresh generation, cover every command and filter, and pick up a command added
to the COMMANDS table without any change to the generator."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import types
from pathlib import Path

import pytest

from mailroute import cli
from mailroute.policy import FILTERS
from tests.docs.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
gen = load_script("scripts/gen_reference.py", "gen_reference")


def test_committed_reference_is_what_the_code_generates() -> None:
    for name, make in gen.PAGES_OUT.items():
        committed = (ROOT / "docs" / "reference" / name).read_text(encoding="utf-8")
        assert committed == make(), f"run scripts/gen_reference.py ({name} is out of date)"
    assert gen.main(["--check"]) == 0


def test_every_command_and_subcommand_has_a_section() -> None:
    page = gen.cli_page()
    for command in cli.COMMANDS:
        assert f"### `mailroute {command}`" in page
    for action in ("sign", "encrypt", "decrypt", "verify"):
        assert f"#### `mailroute smime {action}`" in page
    assert "| `--config` | `POLICY.toml` | required | the policy file |" in page


def test_every_filter_key_the_source_reads_is_listed() -> None:
    """The AST walk (which follows helpers such as ``_store(options)``) finds exactly the
    keys a plain search of the filter modules finds."""
    getters = "|".join(gen.GETTERS)
    in_source = set()
    for module in (ROOT / "src" / "mailroute" / "filters").glob("*.py"):
        in_source |= set(re.findall(rf'options\.(?:{getters})\(\s*"(\w+)"', module.read_text()))
    keys = gen.filter_keys()
    assert set(keys) == set(FILTERS)
    assert {k.name for found in keys.values() for k in found} == in_source - {"filter"}
    marker = {k.name: k for k in keys["marker-verify"]}
    assert marker["source"].choices == ("auto", "internet", "return-path", "networks")
    assert marker["key_file"].default == "required"
    assert marker["max_received"].default == "`100`"
    assert {k.name for k in keys["pgp-sign"]} >= {"gnupghome", "timeout", "passphrase_file"}


def test_a_new_command_appears_without_touching_the_generator(
        monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("docs_test_frobnicate")

    def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        parser = subparsers.add_parser("frobnicate", help="frobnicate the queue",
                                       description="Frobnicate every message.")
        parser.add_argument("--depth", type=int, default=3, metavar="N", help="how deep")

    vars(module)["register"] = register
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "frobnicate", (module.__name__, "frobnicate the queue"))
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, module.__name__))
    page = gen.cli_page()
    assert "### `mailroute frobnicate`" in page
    assert "| `--depth` | `N` | `3` | how deep |" in page


def test_a_new_filter_key_appears(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = tmp_path / "docs_test_filter.py"
    source.write_text('def _shared(options):\n    return options.integer("depth", 7)\n\n'
                      'def build(options):\n    name = options.string("name")\n'
                      '    return _shared(options), options.choice("mode", ("a", "b"), "b")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FILTERS, "frob", ("docs_test_filter", "build", None))
    keys = {k.name: k for k in gen.filter_keys()["frob"]}
    assert keys["name"].default == "required"
    assert keys["depth"].default == "`7`"
    assert keys["mode"].choices == ("a", "b")


def test_every_filter_key_is_explained_on_its_page() -> None:
    """The generated tables give types and defaults; the page each links to must say what
    every key does (named in backquotes or set in an example)."""
    missing = []
    for name, keys in gen.filter_keys().items():
        page = ROOT / "docs" / gen.PAGES[name.split("-")[0]]
        text = page.read_text(encoding="utf-8")
        missing += [f"{page.name}: {name}.{k.name}" for k in keys
                    if not re.search(rf"`{k.name}( = [^`]*)?`|^\s*{k.name}\s*=", text,
                                     re.MULTILINE)]
    assert not missing


def test_a_new_policy_section_or_top_level_key_appears(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    (tmp_path / "docs_test_policy.py").write_text(
        "def policy_from_mapping(data, source):\n"
        "    top = Options(data, source=source)\n"
        "    topology = top.optional_path(\"topology\")\n"
        "    log = Options(top.table(\"log\"), source=source, prefix=\"log\")\n"
        "    fmt = log.choice(\"format\", (\"text\", \"json\"), \"text\")\n"
        "    return _more(log), topology, fmt\n\n"
        "def _more(log):\n"
        "    return log.boolean(\"secrets\", False)\n"
        "Options = dict\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("docs_test_policy")
    assert gen._section_receivers(module) == {"log": "log"}
    keys = {k.name: k for k in gen.keys_of(module, "policy_from_mapping", "log")}
    assert keys["format"].choices == ("text", "json")
    assert keys["secrets"].default == "`false`"
    top = [k.name for k in gen.keys_of(module, "policy_from_mapping", "top")]
    assert top == ["topology", "log"]
