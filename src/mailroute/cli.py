"""The ``mailroute`` command. Each subcommand lives in its own module under
:mod:`mailroute.commands` and registers itself through ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import secrets
import sys
from collections.abc import Sequence

from mailroute import __version__
from mailroute.exitcodes import ExitCode

__all__ = ["COMMAND_MODULES", "main"]

log = logging.getLogger("mailroute")

COMMAND_MODULES: tuple[str, ...] = (
    "mailroute.commands.process",
    "mailroute.commands.disclaimer",
    "mailroute.commands.marker",
    "mailroute.commands.smime",
    "mailroute.commands.pgp",
    "mailroute.commands.routing",
    "mailroute.commands.milter",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mailroute",
        description="Composable mail-processing filters for mail gateways: S/MIME, PGP, "
                    "disclaimers, DKIM, loop markers and Exchange Online routing.",
        epilog="Exit codes: 0 ok, 1 verification negative, 2 usage, 65 malformed input, "
               "69 refused by policy, 75 temporary failure, 78 configuration error.")
    parser.add_argument("--version", action="version", version=f"mailroute {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log diagnostics to standard error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (CLI.md)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            stream=sys.stderr, format="mailroute: %(levelname)s %(message)s")
        code: int = args.handler(args)
        return code
    except SystemExit as exit_:  # argparse: --help (0) and usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else ExitCode.USAGE
    except KeyboardInterrupt:
        sys.stderr.write("4.3.0 interrupted\n")
        return ExitCode.TEMPFAIL
    except Exception:  # an MTA must see "try again", never a traceback
        reference = secrets.token_hex(6)
        log.exception("unexpected error, reference %s", reference)
        sys.stderr.write(f"4.3.0 internal error, reference {reference}\n")
        return ExitCode.TEMPFAIL


def entry_point() -> None:
    """The console script."""
    sys.exit(main())
