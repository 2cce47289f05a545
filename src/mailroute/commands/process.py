"""``mailroute process``: run a policy once over one message (the pipe adapter)."""

from __future__ import annotations

import argparse

from mailroute.commands.common import (
    add_envelope_arguments,
    add_io_arguments,
    add_log_arguments,
    load_policy_or_report,
    run_pipeline_command,
)
from mailroute.exitcodes import ExitCode

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``process``."""
    parser = subparsers.add_parser(
        "process", help="run a policy over one message (stdin to stdout)",
        description="Run the pipeline of POLICY once over the message on standard input and "
                    "write the result to standard output. Exit codes: 0 accepted, 65 malformed "
                    "or over a limit, 69 refused by policy, 75 try again later, 78 bad policy.")
    parser.add_argument("--config", required=True, metavar="POLICY.toml",
                        help="the policy file")
    add_io_arguments(parser)
    add_envelope_arguments(parser)
    add_log_arguments(parser, default="none")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the policy and run it over the input."""
    pipeline = load_policy_or_report(args.config)
    if isinstance(pipeline, ExitCode):
        return pipeline
    return run_pipeline_command(args, pipeline)
