"""``mailroute process``: run a policy once over one message (the pipe adapter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailroute.commands.common import (
    ENVELOPE_FLAGS,
    IO_FLAGS,
    Flag,
    add_flags,
    load_policy_or_report,
    log_flags,
    run_pipeline_command,
)
from mailroute.exitcodes import ExitCode

if TYPE_CHECKING:
    import argparse

    from mailroute.commands.common import Arguments

__all__ = ["FLAGS", "register", "run"]

#: Every option of ``process``: argparse registers them, and a command line made of them
#: alone is read without argparse (mailroute.cli: one process per message).
FLAGS: tuple[Flag, ...] = (
    Flag(option="--config", dest="config", metavar="POLICY.toml", required=True,
         help="the policy file"),
    *IO_FLAGS,
    *ENVELOPE_FLAGS,
    *log_flags("none"),
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``process``."""
    parser = subparsers.add_parser(
        "process", help="run a policy over one message (stdin to stdout)",
        description="Run the pipeline of POLICY once over the message on standard input and "
                    "write the result to standard output. Exit codes: 0 accepted, 65 malformed "
                    "or over a limit, 69 refused by policy, 75 try again later, 78 bad policy.")
    add_flags(parser, FLAGS)
    parser.set_defaults(handler=run)


def run(args: Arguments) -> int:
    """Load the policy and run it over the input."""
    pipeline = load_policy_or_report(args.config)
    if isinstance(pipeline, ExitCode):
        return pipeline
    return run_pipeline_command(args, pipeline)
