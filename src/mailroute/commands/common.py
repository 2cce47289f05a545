"""Flags and plumbing shared by the subcommands (CLI.md "Conventions")."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from mailroute.adapters.output import write_stdout_text
from mailroute.adapters.pipe import PipeLog, read_bounded, run_pipe
from mailroute.config.options import Options
from mailroute.errors import ConfigError, MessageError
from mailroute.exitcodes import ExitCode
from mailroute.item import Direction, Envelope, Filter
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.logs import LOG_FORMATS
from mailroute.mime import Message, parse
from mailroute.pipeline import Pipeline
from mailroute.policy import build_filter, load_policy
from mailroute.results import Reply

if TYPE_CHECKING:
    from mailroute.adapters.messagelog import MessageLog

__all__ = [
    "SYSLOG_SOCKET",
    "add_envelope_arguments",
    "add_io_arguments",
    "add_log_arguments",
    "envelope_from_args",
    "load_policy_or_report",
    "message_log_from_args",
    "open_input",
    "options_from_args",
    "read_message",
    "report_config_error",
    "run_filter_command",
    "run_pipeline_command",
    "unix_time",
    "write_status",
    "write_stdout_text",
]

SYSLOG_SOCKET = "/dev/log"
LOG_TARGETS = ("auto", "syslog", "stderr", "none")


def unix_time(text: str) -> float:
    """argparse type of ``--now``: non-negative UNIX seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be UNIX seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be non-negative UNIX seconds")
    return value


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
    group.add_argument("--helo", metavar="NAME",
                       help="the client's HELO/EHLO name (SPF checks it for the null sender)")
    group.add_argument("--sasl-user", metavar="NAME",
                       help="the authenticated SASL user (the envelope's auth_user: the "
                            "'authenticated' condition, encryption triggers; the log line)")
    group.add_argument("--queue-id", metavar="ID", help="the MTA's queue id (for the log line)")


def add_log_arguments(parser: argparse.ArgumentParser, *, default: str) -> None:
    """``--log`` (where the per-message line goes) and ``--log-format`` (text or JSON)."""
    parser.add_argument("--log", choices=LOG_TARGETS, default=default,
                        help="where the one log line per message goes: syslog (facility mail), "
                             "stderr (after the status line), none, or auto (syslog when "
                             f"{SYSLOG_SOCKET} exists, else stderr); default {default}")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text (key=value, for syslog) or json (one object per line); "
                             "see docs/logging.md")


def message_log_from_args(args: argparse.Namespace) -> MessageLog:
    """Send the message log where ``--log`` says, formatted as ``--log-format`` says."""
    from mailroute.commands.logsetup import message_log  # loads logging: only when used

    return message_log(args.log, args.log_format)


def envelope_from_args(args: argparse.Namespace) -> Envelope:
    """The :class:`~mailroute.item.Envelope` the envelope flags describe."""
    return Envelope(mail_from=args.mail_from, rcpt_to=tuple(args.rcpt),
                    client_address=args.client_ip, tls_peer_name=args.tls_name,
                    helo=args.helo, direction=args.direction,
                    auth_user=getattr(args, "sasl_user", None) or None)


def open_input(args: argparse.Namespace) -> BinaryIO | ExitCode:
    """The message stream: ``--in`` or standard input (also ``--in -``).

    A ``--in`` file that cannot be opened is a usage error: the reason goes to standard
    error and 2 comes back instead of a stream.
    """
    path: Path | None = getattr(args, "in_file", None)
    if path is None or str(path) == "-":
        return sys.stdin.buffer
    try:
        return path.open("rb")
    except OSError as exc:
        sys.stderr.write(f"mailroute: --in {path}: {exc.strerror or 'cannot read'}\n")
        return ExitCode.USAGE


def write_status(reply: Reply) -> None:
    """Write ``reply`` as the status line Postfix pipe(8) reads (``5.6.0 text``)."""
    sys.stderr.write(f"{reply.status} {reply.text}\n")


def read_message(args: argparse.Namespace,
                 limits: Limits = DEFAULT_LIMITS) -> Message | ExitCode:
    """Read and parse the input message, for commands that inspect rather than transform.

    On failure the status line is written and the exit code returned: 2 when ``--in``
    cannot be read, 65 when the message is over the size limit or malformed.
    """
    stream = open_input(args)
    if isinstance(stream, ExitCode):
        return stream
    with stream:
        data = read_bounded(stream, limits.max_message_size)
    if data is None:
        sys.stderr.write(f"5.3.4 message larger than {limits.max_message_size} bytes\n")
        return ExitCode.DATAERR
    try:
        return parse(data, limits=limits)
    except MessageError as error:
        write_status(error.reply)
        return ExitCode.DATAERR


def run_pipeline_command(args: argparse.Namespace, pipeline: Pipeline) -> int:
    """Run ``pipeline`` over the input with the pipe adapter's I/O and exit codes."""
    stream = open_input(args)
    if isinstance(stream, ExitCode):
        return stream
    with stream:
        log_to = None
        if getattr(args, "log", "none") != "none":
            log_to = PipeLog(message_log_from_args(args), queue_id=args.queue_id or None,
                             sasl_user=args.sasl_user or None)
        return run_pipe(pipeline, stream, sys.stdout.buffer, sys.stderr,
                        envelope=envelope_from_args(args), out_path=args.out_file,
                        log_to=log_to)


def load_policy_or_report(path: str | Path) -> Pipeline | ExitCode:
    """The policy at ``path``, or 78 after printing its configuration error."""
    try:
        return load_policy(path)
    except ConfigError as error:
        return ExitCode(report_config_error(error))


def report_config_error(error: ConfigError) -> int:
    """Print a configuration error and return 78 (EX_CONFIG).

    The line starts with ``4.3.5`` on purpose: Postfix maps exit 78 to ``5.3.5`` (a bounce,
    ``sys_exits.c``), and a leading enhanced status code overrides the exit code in
    ``pipe(8)``, so a broken policy defers mail instead of bouncing it. Commands no MTA runs
    (``milter``, ``check``) print their errors without it.
    """
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
                       option_names: tuple[str, ...],
                       wrap: Callable[[Filter], Filter] | None = None) -> int:
    """Run a one-filter pipeline over the input: the shape of every transform command.
    ``wrap``, when given, wraps the built filter (to report on its result)."""
    try:
        options = options_from_args(args, option_names)
        step = build_filter(filter_name, options)
        options.finish()
    except ConfigError as error:
        return report_config_error(error)
    return run_pipeline_command(args, Pipeline(filters=(wrap(step) if wrap else step,)))
