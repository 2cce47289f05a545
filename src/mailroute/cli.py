"""The ``mailroute`` command. Each subcommand lives in its own module under
:mod:`mailroute.commands` and registers itself through ``register(subparsers)``.

Only the module of the command being run is imported (a mail server starts ``mailroute`` once
per message); the others appear in ``--help`` through the one-line texts of :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from io import StringIO
from types import SimpleNamespace
from typing import TYPE_CHECKING, TextIO

from mailroute import __version__
from mailroute.adapters.collector import pause_for_start_up, skip_final_collection
from mailroute.errors import OutputError
from mailroute.exitcodes import ExitCode
from mailroute.logs import configure as configure_logging

if TYPE_CHECKING:
    import argparse

__all__ = ["COMMANDS", "COMMAND_MODULES", "ONE_MESSAGE_COMMANDS", "build_parser", "main",
           "quick_args"]

#: command -> (the module that registers it, its one-line help as that module gives it).
COMMANDS: dict[str, tuple[str, str]] = {
    "process": ("mailroute.commands.process", "run a policy over one message (stdin to stdout)"),
    "try": ("mailroute.commands.dryrun",
            "show what a policy would do to a message (verdict, reply, diff)"),
    "check": ("mailroute.commands.check",
              "check a policy, its key and certificate files, and its topology"),
    "pipe": ("mailroute.commands.pipe", "the Postfix pipe(8) / Exim pipe transport adapter"),
    "quarantine": ("mailroute.commands.quarantine",
                   "list, release or delete quarantined messages"),
    "disclaimer": ("mailroute.commands.disclaimer",
                   "insert a disclaimer (HTML into HTML parts, text into text parts)"),
    "marker": ("mailroute.commands.marker",
               "set or verify the HMAC loop marker header; make, rotate and list its keys"),
    "smime": ("mailroute.commands.smime", "S/MIME sign, encrypt, decrypt, verify"),
    "keys": ("mailroute.commands.keys",
             "the key directory: import, list, show, pin, trust, hold, release, remove, "
             "export"),
    "pgp": ("mailroute.commands.pgp",
            "PGP/MIME (RFC 3156) sign, encrypt, decrypt, verify with GnuPG"),
    "dkim": ("mailroute.commands.dkim", "DKIM sign and verify"),
    "milter": ("mailroute.commands.milter",
               "run the milter adapter (Postfix smtpd_milters, Sendmail INPUT_MAIL_FILTER)"),
    "serve": ("mailroute.commands.serve",
              "run the SMTP gateway service (content filter, before-queue proxy)"),
    "route": ("mailroute.commands.routing", "the routing decision for one message at one hop"),
    "simulate": ("mailroute.commands.routing",
                 "every hop until final delivery, or the loop it finds"),
    "exo-config": ("mailroute.commands.routing",
                   "the Exchange Online connectors and rules, or a diagram"),
    "exo-diff": ("mailroute.commands.exodiff",
                 "the tenant as read back (Get-* JSON) against the plan"),
}
#: The commands a mail server starts once per message: their console-script run skips the
#: garbage collector's start-up and shutdown work (mailroute.adapters.collector).
ONE_MESSAGE_COMMANDS = frozenset({"process", "pipe"})
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(m for m, _ in COMMANDS.values()))


def build_parser(argv: Sequence[str] | None = None, *,
                 everything: bool = False) -> argparse.ArgumentParser:
    """The argument parser: the command named in ``argv`` in full, the others by name only
    (and not at all once a command is named: each costs start-up).

    With ``everything`` every command is registered in full (for documentation and tests).
    """
    from mailroute.commands.parsers import Parser

    parser = Parser(
        prog="mailroute",
        description="Composable mail-processing filters for mail gateways: S/MIME, PGP, "
                    "disclaimers, DKIM, loop markers and Exchange Online routing.",
        epilog="Exit codes: 0 ok, 1 verification negative, 2 usage, 65 malformed input, "
               "69 refused by policy, 75 temporary failure, 78 configuration error.")
    parser.add_argument("--version", action="version", version=f"mailroute {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log diagnostics to standard error")
    # prog as argparse would compute it (no positional comes before COMMAND), given so
    # that it does not format a usage line, and measure the terminal, to find it out
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       prog=parser.prog)
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    modules = COMMAND_MODULES if everything else (
        (COMMANDS[chosen][0],) if chosen is not None else ())
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    if chosen is None or everything:  # the command list of --help and of a usage error
        for name, (_, text) in COMMANDS.items():
            if name not in subparsers.choices:
                subparsers.add_parser(name, help=text, add_help=False)
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named by the first argument that is not an option, if it is one."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def quick_args(argv: Sequence[str]) -> SimpleNamespace | None:
    """The arguments argparse would give, read without it, for a command whose module lists
    its options in ``FLAGS`` (``process``) when every item after the command is one of them
    with its value; ``None`` for anything else, which argparse then reads and answers (help,
    usage errors). A mail server starts ``mailroute`` once per message, and argparse with
    its gettext and locale lookups is several milliseconds of that."""
    if not argv or argv[0] not in COMMANDS:
        return None
    module = importlib.import_module(COMMANDS[argv[0]][0])
    flags = getattr(module, "FLAGS", None)
    if flags is None:
        return None
    from mailroute.commands.common import parse_flags

    values = parse_flags(argv[1:], flags, positional=getattr(module, "POSITIONAL", None),
                         one_of=getattr(module, "ONE_OF", ()))
    if values is None:
        return None
    return SimpleNamespace(verbose=False, command=argv[0], handler=module.run, **values)


#: The services: their diagnostics go to standard error as they happen. Every other
#: command's come after its status line (CLI.md: the first line on standard error is the
#: status, as Postfix pipe(8) reads it).
RESIDENT_COMMANDS = frozenset({"milter", "serve"})


class _Diagnostics:
    """The stream of the log handler: standard error, or the run's held text. logging is
    configured once per process; each run of :func:`main` points this where it wants."""

    def __init__(self) -> None:
        self.target: TextIO = sys.stderr

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


_DIAGNOSTICS = _Diagnostics()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (CLI.md)."""
    _stand_in_for_closed_streams()
    held = StringIO()
    _DIAGNOSTICS.target = held
    try:
        return _run(argv)
    finally:
        _DIAGNOSTICS.target = sys.stderr
        if held.tell():
            sys.stderr.write(held.getvalue())


def _stand_in_for_closed_streams() -> None:
    """A standard stream the caller closed (``2>&-``) is ``None`` in Python: every use
    failed with an internal error, or, for standard error, exit 1. Standard input reads as
    empty, standard error goes nowhere, and standard output is a pipe without a reader, so
    a result written there fails as any unwritable output does (75, nothing claimed)."""
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - for the whole run
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    if sys.stdout is None:
        read_end, write_end = os.pipe()
        os.close(read_end)
        sys.stdout = open(write_end, "w", encoding="utf-8")  # noqa: SIM115


def _run(argv: Sequence[str] | None) -> int:
    try:
        args: argparse.Namespace | SimpleNamespace | None = quick_args(
            sys.argv[1:] if argv is None else argv)
        if args is None:
            args = build_parser(argv).parse_args(argv)
        if args.command in RESIDENT_COMMANDS:
            _DIAGNOSTICS.target = sys.stderr
        # logging itself is loaded only when a record is shown (mailroute.logs): start-up
        configure_logging(now=args.verbose, level="INFO" if args.verbose else "WARNING",
                          stream=_DIAGNOSTICS, format="mailroute: %(levelname)s %(message)s")
        code: int = args.handler(args)
        return code
    except SystemExit as exit_:  # argparse: --help (0) and usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else ExitCode.USAGE
    except KeyboardInterrupt:
        sys.stderr.write("4.3.0 interrupted\n")
        return ExitCode.TEMPFAIL
    except OutputError as error:  # standard output took less than all: nothing is claimed
        sys.stderr.write(f"{error.reply.status} {error.reply.text}\n")
        return ExitCode.TEMPFAIL
    except ModuleNotFoundError as error:
        extras = OPTIONAL_MODULES.get((error.name or "").partition(".")[0])
        if extras is None:
            return _internal_error()
        sys.stderr.write(f"4.3.5 configuration error: {error.name} is not installed; install "
                         f"{' or '.join(f'mailroute[{extra}]' for extra in extras)}\n")
        return ExitCode.CONFIG
    except Exception:  # noqa: BLE001 - the MTA sees "try again" first; a traceback with -v
        return _internal_error()


#: The optional packages a command may import, and the extras that install them
#: (pyproject.toml): missing, they are a configuration error (78), not an internal one.
OPTIONAL_MODULES: dict[str, tuple[str, ...]] = {
    "asn1crypto": ("smime",), "gnupg": ("pgp",), "dkim": ("dkim",), "authres": ("dkim",),
    "nacl": ("dkim",), "publicsuffixlist": ("dkim",), "dns": ("dkim", "smtp"),
    "bs4": ("html",), "html5lib": ("html",), "aiosmtpd": ("smtp",), "uvloop": ("milter",),
    "psycopg": ("postgres",), "prometheus_client": ("metrics",),
}


def _internal_error() -> int:
    from mailroute.adapters.pipe import report_internal_error

    report_internal_error(sys.stderr, "mailroute")
    return ExitCode.TEMPFAIL


def entry_point() -> None:
    """The console script."""
    one_message = _chosen(sys.argv[1:]) in ONE_MESSAGE_COMMANDS
    if one_message:
        pause_for_start_up()
    code = main()
    if one_message:
        skip_final_collection()
    sys.exit(code)
