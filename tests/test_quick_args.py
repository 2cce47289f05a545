"""``mailroute process`` reads a plain command line without argparse (cli.quick_args): what
it reads is exactly what argparse reads, and whatever it does not take (help, usage errors,
abbreviations, ``--option=value``) goes to argparse, whose answer is unchanged."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mailroute import cli
from mailroute.commands import pipe, process
from mailroute.commands.common import Flag, ip_address_text, parse_flags


def _argparse(argv: list[str]) -> dict[str, object] | None:
    """argparse's reading of ``argv`` (``None`` for a usage error or help)."""
    try:
        return vars(cli.build_parser(argv).parse_args(argv))
    except SystemExit:
        return None


def _parser_of(command: str) -> argparse.ArgumentParser:
    action = next(a for a in cli.build_parser([command])._actions
                  if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = action.choices[command]
    return parser


def _assert_table_is_registered(command: str, flags: tuple[Flag, ...]) -> None:
    """Every flag of the table is an argparse option of ``command`` with the same reading."""
    registered = {a.dest: a for a in _parser_of(command)._actions if a.option_strings
                  and a.dest != "help"}
    assert set(registered) == {flag.dest for flag in flags}
    for flag in flags:
        action = registered[flag.dest]
        assert action.option_strings == [flag.option]
        assert action.default == flag.default
        assert action.required == flag.required
        assert (list(action.choices) if action.choices else None) == (
            list(flag.choices) if flag.choices else None)
        assert isinstance(action, argparse._AppendAction) == flag.append
        assert action.type is (Path if flag.path else flag.convert)


def test_the_table_is_what_argparse_registers() -> None:
    _assert_table_is_registered("process", process.FLAGS)


OPTIONS = [flag.option for flag in process.FLAGS]
ODD_VALUES = st.sampled_from(["-x", "--rcpt", "-", "-1", "sideways", "a b", "x=y", "--"])


@st.composite
def _valid_item(draw: st.DrawFn) -> list[str]:
    flag = draw(st.sampled_from(process.FLAGS))
    plain = st.sampled_from(["", "a@example.net", "/tmp/p.toml", "x=y", "a b", "+1"])
    if flag.convert is ip_address_text:
        plain = st.sampled_from(["192.0.2.1", "2001:db8::1"])
    values = st.sampled_from(flag.choices) if flag.choices else plain
    return [flag.option, draw(values)]


ITEMS = st.one_of(
    _valid_item(), _valid_item(), _valid_item(), _valid_item(), _valid_item(),
    st.tuples(st.sampled_from(OPTIONS), ODD_VALUES).map(list),
    st.tuples(st.sampled_from(OPTIONS), st.text(alphabet="ab-=@ ", max_size=3)).map(list),
    _valid_item().map(lambda item: ["=".join(item)]),
    st.sampled_from([["--conf", "p.toml"], ["-h"], ["--help"], ["-v"], ["extra"], ["--rcpt"],
                     ["--config"], ["--"], ["--unknown", "x"]]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(ITEMS, max_size=7), st.booleans())
def test_what_quick_args_reads_is_what_argparse_reads(items: list[list[str]],
                                                       config_first: bool) -> None:
    argv = ["process", *(["--config", "p.toml"] if config_first else []),
            *(arg for item in items for arg in item)]
    quick = cli.quick_args(argv)
    event("read without argparse" if quick is not None else "left to argparse")
    if quick is not None:
        assert vars(quick) == _argparse(argv)


@pytest.mark.parametrize("argv", [
    ["process", "--config", "p.toml"],
    ["process", "--config", "p.toml", "--mail-from", "", "--rcpt", "a@x", "--rcpt", "b@y",
     "--direction", "outbound", "--in", "m.eml", "--out", "o.eml", "--log", "stderr",
     "--log-format", "json", "--queue-id", "4ABC", "--sasl-user", "u", "--helo", "h",
     "--client-ip", "192.0.2.1", "--tls-name", "mx.example", "--config", "q.toml"],
])
def test_plain_command_lines_are_read_without_argparse(argv: list[str]) -> None:
    quick = cli.quick_args(argv)
    assert quick is not None
    assert vars(quick) == _argparse(argv)


@pytest.mark.parametrize("argv", [
    ["process"], ["process", "--help"], ["process", "--config", "p.toml", "-h"],
    ["process", "--conf", "p.toml"], ["process", "--config=p.toml"],
    ["process", "--config", "p.toml", "--direction", "sideways"],
    ["process", "--config", "p.toml", "--mail-from", "-x"],
    ["process", "--config", "p.toml", "--rcpt"], ["-v", "process", "--config", "p.toml"],
    ["check", "--config", "p.toml"], [], ["--version"],
])
def test_everything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert cli.quick_args(argv) is None


def test_a_usage_error_is_argparses_own() -> None:
    done = subprocess.run([sys.executable, "-m", "mailroute", "process", "--config", "p.toml",
                           "--direction", "sideways"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: mailroute process [-h] --config POLICY.toml")
    assert "argument --direction: invalid choice: 'sideways'" in done.stderr


def test_parse_flags_keeps_the_defaults_of_the_table_unshared() -> None:
    first = parse_flags(["--config", "p"], process.FLAGS)
    assert first is not None
    first["rcpt"].append("x")
    again = parse_flags(["--config", "p"], process.FLAGS)
    assert again is not None
    assert again["rcpt"] == []


@settings(max_examples=300, deadline=None)
@given(st.lists(_valid_item(), max_size=8))
def test_a_line_of_table_options_with_plain_values_is_read_as_argparse_reads_it(
        items: list[list[str]]) -> None:
    argv = ["process", "--config", "p.toml", *(arg for item in items for arg in item)]
    quick = cli.quick_args(argv)
    assert quick is not None
    assert vars(quick) == _argparse(argv)


# ``mailroute pipe``: the command line an MTA writes, options then ``--`` and recipients.

def test_the_pipe_table_is_what_argparse_registers() -> None:
    _assert_table_is_registered("pipe", pipe.FLAGS)
    group = next(g for g in _parser_of("pipe")._mutually_exclusive_groups)
    assert group.required
    assert tuple(a.dest for a in group._group_actions) == pipe.ONE_OF[0]


@st.composite
def _pipe_item(draw: st.DrawFn) -> list[str]:
    flag = draw(st.sampled_from(pipe.FLAGS))
    if flag.choices:
        return [flag.option, draw(st.sampled_from(flag.choices))]
    if flag.dest == "reinject":
        return [flag.option, draw(st.sampled_from(
            ["sendmail", "sendmail:/usr/sbin/sendmail", "smtp:127.0.0.1:10026", "smtp:[::1]:25",
             "sendmail:relative", "smtp:host", "lmtp:x"]))]
    return [flag.option, draw(st.sampled_from(["", "a@example.net", "<>", "SENDER", "x y"]))]


PIPE_ITEMS = st.one_of(
    _pipe_item(), _pipe_item(), _pipe_item(), _pipe_item(),
    st.tuples(st.sampled_from([f.option for f in pipe.FLAGS]), ODD_VALUES).map(list),
    st.sampled_from([["-h"], ["--send", "a"], ["--"], ["r@x"], ["--unknown", "x"]]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(PIPE_ITEMS, max_size=6), st.booleans(), st.booleans(),
       st.lists(st.sampled_from(["r@example.net", "-r", "", "--", "x y"]), max_size=3))
def test_what_quick_args_reads_of_a_pipe_line_is_what_argparse_reads(
        items: list[list[str]], config_first: bool, sender_first: bool,
        recipients: list[str]) -> None:
    argv = ["pipe", *(["--config", "p.toml"] if config_first else []),
            *(["--sender", "a@example.net"] if sender_first else []),
            *(arg for item in items for arg in item), "--", *recipients]
    quick = cli.quick_args(argv)
    event("read without argparse" if quick is not None else "left to argparse")
    if quick is not None:
        assert vars(quick) == _argparse(argv)


@pytest.mark.parametrize("argv", [
    ["pipe", "--config", "p.toml", "--sender", "a@x", "--", "r@y"],
    ["pipe", "--config", "/etc/mailroute/policy.toml", "--sender", "", "--queue-id", "4ABC",
     "--client-ip", "192.0.2.1", "--helo", "mx.example", "--sasl-user", "",
     "--reinject", "smtp:127.0.0.1:10026", "--log", "syslog", "--", "r1@y", "r2@z", "-odd"],
    ["pipe", "--config", "p.toml", "--sender-env", "SENDER", "--direction", "inbound",
     "--log-format", "json", "--", "r@y"],
])
def test_an_mta_pipe_line_is_read_without_argparse(argv: list[str]) -> None:
    quick = cli.quick_args(argv)
    assert quick is not None
    assert vars(quick) == _argparse(argv)


@pytest.mark.parametrize("argv", [
    ["pipe", "--config", "p.toml", "--sender", "a@x"],  # no recipients
    ["pipe", "--config", "p.toml", "--sender", "a@x", "--"],
    ["pipe", "--config", "p.toml", "--", "r@y"],  # no sender
    ["pipe", "--config", "p.toml", "--sender", "a", "--sender-env", "S", "--", "r@y"],
    ["pipe", "--config", "p.toml", "--sender", "a", "--reinject", "lmtp:x", "--", "r@y"],
    ["pipe", "--config", "p.toml", "--sender", "a", "r@y"],  # recipients without --
    ["pipe", "--sender", "a", "--", "r@y"],  # no policy
])
def test_an_odd_pipe_line_is_left_to_argparse(argv: list[str]) -> None:
    assert cli.quick_args(argv) is None
