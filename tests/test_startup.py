"""A mail server starts ``mailroute`` once per message: it imports only what the run needs."""

from __future__ import annotations

import argparse
import base64
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailroute import cli
from mailroute.commands import parsers
from mailroute.testing import build_message

PROBE = """
import sys
from mailroute.cli import main
code = main(["process", "--config", *sys.argv[1:]])
loaded = sorted(name for name in sys.modules
                if name.split(".")[0] in {"cryptography", "bs4", "html5lib", "gnupg", "asn1crypto",
                                          "logging", "tempfile", "dataclasses", "inspect",
                                          "shutil", "json", "argparse", "gettext", "locale",
                                          "html", "pathlib", "urllib", "ipaddress", "hashlib",
                                          "hmac", "_hashlib", "base64"}
                or name.startswith(("mailroute.routing", "mailroute.marker", "mailroute.smime",
                                    "mailroute.pgp", "mailroute.disclaimer")))
sys.stderr.write("LOADED " + " ".join(loaded) + "\\n")
sys.exit(code)
"""
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OUTBOUND = ["--mail-from", "anna.weber@example.net", "--rcpt", "max@partner.example"]
HTML_PARSER = {"bs4", "html5lib"}
#: stdlib modules no policy needs: the records' module and what it loads, argparse (the
#: command line is read by cli.quick_args) with its gettext, locale and terminal measurement,
#: the message log's JSON (process logs nothing by default)
STDLIB_OFF_THE_PATH = {"dataclasses", "inspect", "shutil", "json", "argparse", "gettext",
                       "locale"}
#: the html module's entity table: the example templates and message hold no "&"
NO_ENTITIES = {"html"}
#: pathlib (with urllib.parse and ipaddress): the built-in filters open files by name;
#: OpenSSL (hashlib, hmac): SHA-256 and the marker's HMAC come from mailroute.digests
NO_PATHLIB_NO_OPENSSL = {"pathlib", "urllib", "ipaddress", "hashlib", "hmac", "_hashlib",
                         "base64"}


def _loaded(policy: Path, message: bytes, *args: str) -> tuple[bytes, set[str]]:
    """Run ``mailroute process`` in a fresh interpreter: its output and the modules of
    interest it imported (only the top-level package of a third-party one)."""
    done = subprocess.run([sys.executable, "-c", PROBE, str(policy), *args], input=message,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    names = done.stderr.decode().rsplit("LOADED", 1)[1].split()
    return done.stdout, {n if n.startswith("mailroute") else n.split(".")[0] for n in names}


def _gateway_policy(folder: Path) -> Path:
    shutil.copytree(EXAMPLES / "gateway", folder / "gateway")
    shutil.copytree(EXAMPLES / "disclaimer", folder / "disclaimer")
    (folder / "gateway" / "run").mkdir(exist_ok=True)
    keys = folder / "gateway" / "run" / "marker-keys.toml"
    keys.write_text('tag = "startq"\norg_id = "example.net"\n[[key]]\nid = "k1"\n'
                    f'secret = "{base64.b64encode(bytes(range(32))).decode()}"\n')
    keys.chmod(0o600)
    return folder / "gateway" / "policy.toml"


def test_process_with_an_empty_policy_loads_no_engine_and_no_crypto(tmp_path: Path) -> None:
    policy = tmp_path / "empty.toml"
    policy.write_text("")
    message = build_message()
    output, loaded = _loaded(policy, message)
    assert (output, loaded) == (message, set())


def test_a_disclaimer_on_a_text_message_loads_no_html_parser(tmp_path: Path) -> None:
    message = build_message(sender="anna.weber@example.net", to="max@partner.example")
    output, loaded = _loaded(EXAMPLES / "disclaimer" / "policy.toml", message, *OUTBOUND)
    assert b"Example GmbH" in output  # the disclaimer was added
    assert "mailroute.disclaimer.insert" in loaded
    assert not loaded & (HTML_PARSER | STDLIB_OFF_THE_PATH | NO_PATHLIB_NO_OPENSSL | {
        "cryptography", "logging", "tempfile"})


def test_a_disclaimer_in_plain_html_is_placed_without_the_html_parser() -> None:
    message = (EXAMPLES / "messages" / "02-outbound-alternative.eml").read_bytes()
    output, loaded = _loaded(EXAMPLES / "disclaimer" / "policy.toml", message, *OUTBOUND)
    assert b"Example GmbH" in output
    assert not loaded & (HTML_PARSER | STDLIB_OFF_THE_PATH | NO_ENTITIES | NO_PATHLIB_NO_OPENSSL)


def test_html_the_scan_cannot_place_loads_the_html_parser() -> None:
    body = "<p>Hello<svg><p>inside foreign content</p></svg></p>"
    message = build_message(sender="anna.weber@example.net", to="max@partner.example",
                            body=body, content_type="text/html; charset=utf-8")
    output, loaded = _loaded(EXAMPLES / "disclaimer" / "policy.toml", message, *OUTBOUND)
    assert b"Example GmbH" in output
    assert loaded >= HTML_PARSER


def test_the_gateway_policy_loads_no_crypto_package_and_no_html_parser(tmp_path: Path) -> None:
    message = (EXAMPLES / "messages" / "02-outbound-alternative.eml").read_bytes()
    output, loaded = _loaded(_gateway_policy(tmp_path), message, *OUTBOUND)
    assert b"X-Mailroute-Mark:" in output
    assert b"Example GmbH" in output
    assert "mailroute.marker.keyring" in loaded
    assert not loaded & (HTML_PARSER | STDLIB_OFF_THE_PATH | NO_ENTITIES | NO_PATHLIB_NO_OPENSSL | {
        "cryptography", "asn1crypto", "gnupg", "logging", "tempfile"})
    assert not any(n.startswith(("mailroute.routing", "mailroute.smime", "mailroute.pgp"))
                   for n in loaded)


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


def _all_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``parser`` and every subcommand parser below it, by prog."""
    found = {parser.prog: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found.update(_all_parsers(sub))
    return found


@pytest.mark.parametrize("columns", ["60", "100", "200"])
def test_help_and_usage_are_those_of_the_stock_argparse(monkeypatch: pytest.MonkeyPatch,
                                                       columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    ours = _all_parsers(cli.build_parser(everything=True))
    monkeypatch.setattr(parsers, "Parser", argparse.ArgumentParser)
    stock = _all_parsers(cli.build_parser(everything=True))
    assert ours.keys() == stock.keys()
    assert len(ours) > len(cli.COMMANDS)  # nested subcommands (marker keys, smime sign...)
    for prog, parser in stock.items():
        assert ours[prog].format_help() == parser.format_help(), prog
        assert ours[prog].format_usage() == parser.format_usage(), prog


def test_a_usage_error_reads_as_with_the_stock_argparse(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["process", "--config", "p.toml", "--direction", "sideways"]
    errors = []
    for parser_class in (parsers.Parser, argparse.ArgumentParser):
        monkeypatch.setattr(parsers, "Parser", parser_class)
        assert cli.main(argv) == 2
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1]
    assert "invalid choice: 'sideways'" in errors[0]


def test_running_a_command_does_not_measure_the_terminal() -> None:
    # argparse's stock formatter imports shutil (bz2, lzma, zlib) per add_argument
    probe = ("import sys\nfrom mailroute.cli import build_parser\n"
             "build_parser(['process']).parse_args(['process', '--config', 'p.toml'])\n"
             "print('shutil' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "False"
