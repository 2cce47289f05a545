"""Flags and plumbing shared by the subcommands (CLI.md "Conventions")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import BinaryIO

from mailroute.adapters.pipe import run_pipe
from mailroute.config.options import Options
from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode
from mailroute.filters.registry import build_filter
from mailroute.item import Direction, Envelope
from mailroute.pipeline import Pipeline

__all__ = [
    "add_envelope_arguments",
    "add_io_arguments",
    "envelope_from_args",
    "open_input",
    "options_from_args",
    "report_config_error",
    "run_filter_command",
]


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    """``--in FILE`` and ``--out FILE`` (default: standard input and output)."""
    parser.add_argument("--in", dest="in_file", metavar="FILE", type=Path,
                        help="read the message from FILE instead of standard input")
    parser.add_argument("--out", dest="out_file", metavar="FILE", type=Path,
                        help="write the result to FILE (atomically) instead of standard output")


def add_envelope_arguments(parser: argparse.ArgumentParser) -> None:
    """The envelope flags of every command that runs a policy."""
    group = parser.add_argument_group("envelope")
    group.add_argument("--mail-from", metavar="ADDR", default="",
                       help="the envelope sender (MAIL FROM); empty for a bounce")
    group.add_argument("--rcpt", metavar="ADDR", action="append", default=[],
                       help="an envelope recipient (repeatable)")
    group.add_argument("--client-ip", metavar="IP", help="the connecting client's address")
    group.add_argument("--tls-name", metavar="NAME",
                       help="the peer's verified TLS certificate name")
    group.add_argument("--direction", choices=[d.value for d in Direction],
                       help="inbound, outbound or internal (derived from the policy if omitted)")


def envelope_from_args(args: argparse.Namespace) -> Envelope:
    """The :class:`~mailroute.item.Envelope` the envelope flags describe."""
    return Envelope(mail_from=args.mail_from, rcpt_to=tuple(args.rcpt),
                    client_address=args.client_ip, tls_peer_name=args.tls_name,
                    direction=args.direction)


def open_input(args: argparse.Namespace) -> BinaryIO:
    """The message stream: ``--in`` or standard input."""
    path: Path | None = getattr(args, "in_file", None)
    return path.open("rb") if path is not None else sys.stdin.buffer


def report_config_error(error: ConfigError) -> int:
    """Print a configuration error and return 78 (EX_CONFIG)."""
    sys.stderr.write(f"4.3.5 configuration error: {error}\n")
    return ExitCode.CONFIG


def options_from_args(args: argparse.Namespace, names: tuple[str, ...]) -> Options:
    """The filter options given as flags (``--key-file`` -> ``key_file``), for a builder.

    Flags left at ``None`` (or an empty list) count as not given, so the builder's
    defaults apply exactly as in a policy file.
    """
    values = {}
    for name in names:
        value = getattr(args, name, None)
        if value is None or value == []:
            continue
        values[name] = str(value) if isinstance(value, Path) else value
    return Options(values, source="command line")


def run_filter_command(args: argparse.Namespace, filter_name: str,
                       option_names: tuple[str, ...]) -> int:
    """Run a one-filter pipeline over the input: the shape of every transform command."""
    try:
        options = options_from_args(args, option_names)
        step = build_filter(filter_name, options)
        options.finish()
    except ConfigError as error:
        return report_config_error(error)
    with open_input(args) as stream:
        return run_pipe(Pipeline(filters=(step,)), stream, sys.stdout.buffer, sys.stderr,
                        envelope=envelope_from_args(args), out_path=args.out_file)
