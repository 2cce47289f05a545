"""The ``mailroute`` command. Each subcommand lives in its own module under
:mod:`mailroute.commands` and registers itself through ``register(subparsers)``.

Only the module of the command being run is imported (a mail server starts ``mailroute`` once
per message); the others appear in ``--help`` through the one-line texts of :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from mailroute import __version__
from mailroute.adapters.pipe import report_internal_error
from mailroute.errors import OutputError
from mailroute.exitcodes import ExitCode
from mailroute.logs import configure as configure_logging

__all__ = ["COMMANDS", "COMMAND_MODULES", "HelpFormatter", "Parser", "build_parser", "main"]

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
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(m for m, _ in COMMANDS.values()))


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, set up only when it formats something.

    argparse makes a formatter for every ``add_argument`` (to check the metavar), and the
    stock one asks ``shutil`` for the terminal's width each time: importing ``shutil`` (with
    ``bz2``, ``lzma`` and ``zlib``) costs a run that never shows help about 1.4 ms. This one
    keeps its arguments until an attribute the metavar check does not use is first read, then
    becomes exactly the stock formatter, so help and usage text are unchanged.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        self._deferred = (prog, indent_increment, max_help_position, width)

    def __getattr__(self, name: str) -> Any:
        deferred = self.__dict__.pop("_deferred", None)
        if deferred is None:
            raise AttributeError(name)
        super().__init__(*deferred)
        return getattr(self, name)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter` (subcommands inherit both)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(argv: Sequence[str] | None = None, *,
                 everything: bool = False) -> argparse.ArgumentParser:
    """The argument parser: the command named in ``argv`` in full, the others by name only
    (and not at all once a command is named: each costs start-up).

    With ``everything`` every command is registered in full (for documentation and tests).
    """
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (CLI.md)."""
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        # logging itself is loaded only when a record is shown (mailroute.logs): start-up
        configure_logging(now=args.verbose, level="INFO" if args.verbose else "WARNING",
                          stream=sys.stderr, format="mailroute: %(levelname)s %(message)s")
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
    except Exception:  # noqa: BLE001 - the MTA sees "try again" first; a traceback with -v
        report_internal_error(sys.stderr, "mailroute")
        return ExitCode.TEMPFAIL


def entry_point() -> None:
    """The console script."""
    sys.exit(main())
