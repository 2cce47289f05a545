"""A mail server starts ``mailroute`` once per message: it imports only what the run needs."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from mailroute import cli
from mailroute.testing import build_message

PROBE = """
import sys
from mailroute.cli import main
code = main(["process", "--config", sys.argv[1]])
loaded = sorted(name for name in sys.modules
                if name.split(".")[0] in {"cryptography", "bs4", "html5lib", "gnupg", "asn1crypto"}
                or name.startswith(("mailroute.routing", "mailroute.marker", "mailroute.smime",
                                    "mailroute.pgp", "mailroute.disclaimer")))
sys.stderr.write("LOADED " + " ".join(loaded) + "\\n")
sys.exit(code)
"""


def test_process_with_an_empty_policy_loads_no_engine_and_no_crypto(tmp_path: Path) -> None:
    policy = tmp_path / "empty.toml"
    policy.write_text("")
    message = build_message()
    done = subprocess.run([sys.executable, "-c", PROBE, str(policy)], input=message,
                          capture_output=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, message)
    loaded = done.stderr.decode().rsplit("LOADED", 1)[1].split()
    assert loaded == []


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_help_table_says_what_each_command_module_says() -> None:
    full = cli.build_parser(everything=True)
    action = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    registered = {choice.dest: choice.help for choice in action._choices_actions}
    assert registered == {name: text for name, (_, text) in cli.COMMANDS.items()}


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_the_chosen_command_is_registered_in_full(command: str) -> None:
    parsers = _subcommands(cli.build_parser([command, "--help"]))
    assert parsers[command].add_help  # the real parser, not the one-line placeholder
    others = [p for name, p in parsers.items()
              if cli.COMMANDS[name][0] != cli.COMMANDS[command][0]]
    assert all(not p.add_help for p in others)
