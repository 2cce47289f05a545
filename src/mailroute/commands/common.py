"""Flags and plumbing shared by the subcommands (CLI.md "Conventions")."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

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
from mailroute.records import record
from mailroute.results import Reply

if TYPE_CHECKING:
    import argparse
    from pathlib import Path
    from types import SimpleNamespace
    from typing import TypeAlias

    #: what argparse returns, or mailroute.cli.quick_args without argparse (same attributes)
    Arguments: TypeAlias = argparse.Namespace | SimpleNamespace

    from mailroute.adapters.messagelog import MessageLog

__all__ = [
    "ENVELOPE_FLAGS",
    "IO_FLAGS",
    "SYSLOG_SOCKET",
    "Flag",
    "add_envelope_arguments",
    "add_flags",
    "add_io_arguments",
    "add_log_arguments",
    "envelope_from_args",
    "load_policy_or_report",
    "log_flags",
    "message_log_from_args",
    "open_input",
    "options_from_args",
    "parse_flags",
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


#: The first second of the year 10000, which no date conversion takes.
_END_OF_TIME = 253402300800


def unix_time(text: str) -> float:
    """argparse type of ``--now``: non-negative UNIX seconds before the year 10000."""
    import argparse  # argparse is loaded by then; the fast path (parse_flags) never gets here
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be UNIX seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be non-negative UNIX seconds")
    if value >= _END_OF_TIME:
        raise argparse.ArgumentTypeError("must be a time before the year 10000")
    return value


def seconds(text: str) -> int:
    """argparse type of a duration: whole seconds, at most a hundred years."""
    value = int(text)
    if not 0 <= value <= 100 * 366 * 86400:
        raise ValueError("must be 0 to 100 years in seconds")
    return value


def timeout(text: str) -> float:
    """argparse type of a time limit: seconds above 0, at most a day (``nan``, ``inf`` and
    negative values would wait for ever or not at all)."""
    value = float(text)
    if not 0 < value <= 86400:  # false for nan
        raise ValueError("must be more than 0 and at most 86400 seconds")
    return value


def template_variable(text: str) -> str:
    """argparse type of ``--var``: ``NAME=VALUE`` in text (an argument that is not UTF-8
    cannot go into a message)."""
    if "=" not in text:
        raise ValueError("must be NAME=VALUE")
    text.encode("utf-8")  # UnicodeEncodeError is a ValueError: argparse reports it
    return text


def one_line(text: str) -> str:
    """argparse type of an envelope or connection fact: UTF-8 text without CR, LF or NUL
    (an argument that is not UTF-8 reaches Python as lone surrogates)."""
    if any(c in text for c in "\r\n\0"):
        raise ValueError("must not contain CR, LF or NUL")
    text.encode("utf-8")  # UnicodeEncodeError is a ValueError: argparse reports it
    return text


def ip_address_text(text: str) -> str:
    """argparse type of ``--client-ip``: an IPv4 or IPv6 address, in its canonical form
    (``2001:DB8::1`` is ``2001:db8::1``)."""
    import ipaddress  # here, not above: start-up imports only what a run needs

    return str(ipaddress.ip_address(text))  # ValueError: argparse reports it


def envelope_address(text: str) -> str:
    """argparse type of an envelope address: one line, and written with or without the
    angle brackets of SMTP (``<a@example.net>`` is ``a@example.net``; ``<>`` the null
    sender)."""
    text = one_line(text)
    return text[1:-1] if len(text) >= 2 and text[0] == "<" and text[-1] == ">" else text


@record(frozen=True, kw_only=True)
class Flag:
    """One long option that takes a value: what :func:`add_flags` registers with argparse and
    what :func:`parse_flags` reads without it (the one table both work from)."""

    option: str
    dest: str
    help: str
    metavar: str | None = None
    default: object = None
    choices: tuple[str, ...] | None = None
    append: bool = False  # repeatable: action="append"
    path: bool = False  # type=Path
    #: argparse's ``type=``; a value it refuses leaves the line to argparse
    convert: Callable[[str], Any] | None = None
    required: bool = False
    group: str | None = None  # the help section it is listed in


IO_FLAGS = (
    Flag(option="--in", dest="in_file", metavar="FILE", path=True,
         help="read the message from FILE instead of standard input"),
    Flag(option="--out", dest="out_file", metavar="FILE", path=True,
         help="write the result to FILE (atomically) instead of standard output"),
)
ENVELOPE_FLAGS = (
    Flag(option="--mail-from", dest="mail_from", metavar="ADDR", default="", group="envelope",
         convert=envelope_address,
         help="the envelope sender (MAIL FROM); empty or <> for a bounce"),
    Flag(option="--rcpt", dest="rcpt", metavar="ADDR", append=True, default=[],
         group="envelope", convert=envelope_address,
         help="an envelope recipient (repeatable)"),
    Flag(option="--client-ip", dest="client_ip", metavar="IP", group="envelope",
         convert=ip_address_text, help="the connecting client's IP address"),
    Flag(option="--tls-name", dest="tls_name", metavar="NAME", group="envelope",
         convert=one_line, help="the peer's verified TLS certificate name"),
    Flag(option="--direction", dest="direction", choices=tuple(d.value for d in Direction),
         group="envelope",
         help="inbound, outbound or internal (derived from the policy if omitted)"),
    Flag(option="--helo", dest="helo", metavar="NAME", group="envelope", convert=one_line,
         help="the client's HELO/EHLO name (SPF checks it for the null sender)"),
    Flag(option="--sasl-user", dest="sasl_user", metavar="NAME", group="envelope",
         convert=one_line,
         help="the authenticated SASL user (the envelope's auth_user: the 'authenticated' "
              "condition, encryption triggers; the log line)"),
    Flag(option="--queue-id", dest="queue_id", metavar="ID", group="envelope",
         convert=one_line, help="the MTA's queue id (for the log line)"),
)


def log_flags(default: str) -> tuple[Flag, ...]:
    """``--log`` (where the per-message line goes) and ``--log-format`` (text or JSON)."""
    return (
        Flag(option="--log", dest="log", choices=LOG_TARGETS, default=default,
             help="where the one log line per message goes: syslog (facility mail), stderr "
                  "(after the status line), none, or auto (syslog when "
                  f"{SYSLOG_SOCKET} exists, else stderr); default {default}"),
        Flag(option="--log-format", dest="log_format", choices=LOG_FORMATS, default="text",
             help="text (key=value, for syslog) or json (one object per line); "
                  "see docs/logging.md"),
    )


def add_flags(parser: argparse._ActionsContainer, flags: tuple[Flag, ...]) -> None:
    """Register ``flags`` with argparse, each group's flags in a section of its name."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in flags:
        target: argparse._ActionsContainer = parser
        if flag.group is not None:
            if flag.group not in groups:
                groups[flag.group] = parser.add_argument_group(flag.group)
            target = groups[flag.group]
        options: dict[str, Any] = {"dest": flag.dest, "help": flag.help}
        if flag.metavar is not None:
            options["metavar"] = flag.metavar
        if flag.default is not None:
            options["default"] = flag.default
        if flag.choices is not None:
            options["choices"] = list(flag.choices)
        if flag.append:
            options["action"] = "append"
        if flag.path:
            from pathlib import Path

            options["type"] = Path
        if flag.convert is not None:
            options["type"] = flag.convert
        if flag.required:
            options["required"] = True
        target.add_argument(flag.option, **options)


def parse_flags(argv: Sequence[str], flags: tuple[Flag, ...], *,
                positional: str | None = None,
                one_of: tuple[tuple[str, ...], ...] = ()) -> dict[str, Any] | None:
    """What argparse makes of ``argv`` when every item is one of ``flags`` followed by its
    value, or ``None`` for anything else (help, an unknown or abbreviated option, the
    ``--option=value`` form, a value that starts with ``-``, a value not among the choices
    or refused by the flag's ``convert``, a required option missing), which argparse then
    reads and answers itself.

    With ``positional``, the options are followed by ``--`` and one or more values, stored
    as a list under that name (``nargs="+"``). Each group of ``one_of`` names flags of which
    exactly one must be given (a required mutually exclusive group).
    """
    if positional is not None:
        if "--" not in argv:
            return None
        cut = list(argv).index("--")
        argv, rest = argv[:cut], list(argv[cut + 1:])
        if not rest:
            return None
    by_option = {flag.option: flag for flag in flags}
    values: dict[str, Any] = {
        flag.dest: list(flag.default) if isinstance(flag.default, list) else flag.default
        for flag in flags}
    given: set[str] = set()
    for index in range(0, len(argv), 2):
        flag = by_option.get(argv[index])
        if flag is None or index + 1 == len(argv):
            return None
        value: Any = argv[index + 1]
        if value.startswith("-") or (flag.choices is not None and value not in flag.choices):
            return None
        if flag.path:
            from pathlib import Path

            value = Path(value)
        if flag.convert is not None:
            try:
                value = flag.convert(value)
            except Exception:  # noqa: BLE001 - argparse reads the line again and reports it
                return None
        if flag.append:  # as argparse's append: the default's items, then each value
            value = [*(values[flag.dest] or ()), value]
        values[flag.dest] = value
        given.add(flag.dest)
    if any(flag.required and flag.dest not in given for flag in flags):
        return None
    if any(len(given.intersection(group)) != 1 for group in one_of):
        return None
    if positional is not None:
        values[positional] = rest
    return values


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    """``--in FILE`` and ``--out FILE`` (default: standard input and output)."""
    add_flags(parser, IO_FLAGS)


def add_envelope_arguments(parser: argparse.ArgumentParser) -> None:
    """The envelope flags of every command that runs a policy."""
    add_flags(parser, ENVELOPE_FLAGS)


def add_log_arguments(parser: argparse.ArgumentParser, *, default: str) -> None:
    """``--log`` (where the per-message line goes) and ``--log-format`` (text or JSON)."""
    add_flags(parser, log_flags(default))


def message_log_from_args(args: Arguments) -> MessageLog:
    """Send the message log where ``--log`` says, formatted as ``--log-format`` says
    (:mod:`mailroute.adapters.linelog`: without the logging package)."""
    from mailroute.adapters.linelog import line_log

    return line_log(args.log, args.log_format, syslog_socket=SYSLOG_SOCKET)


def envelope_from_args(args: Arguments) -> Envelope:
    """The :class:`~mailroute.item.Envelope` the envelope flags describe."""
    return Envelope(mail_from=args.mail_from, rcpt_to=tuple(args.rcpt),
                    client_address=args.client_ip, tls_peer_name=args.tls_name,
                    helo=args.helo, direction=args.direction,
                    auth_user=getattr(args, "sasl_user", None) or None)


def open_input(args: Arguments) -> BinaryIO | ExitCode:
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


def run_pipeline_command(args: Arguments, pipeline: Pipeline) -> int:
    """Run ``pipeline`` over the input with the pipe adapter's I/O and exit codes."""
    stream = open_input(args)
    if isinstance(stream, ExitCode):
        return stream
    with stream:
        log_to = None
        if getattr(args, "log", "none") != "none":
            log_to = PipeLog(message_log_from_args(args),
                             queue_id=args.queue_id or None,
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
        values[name] = os.fspath(value) if isinstance(value, os.PathLike) else value
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
