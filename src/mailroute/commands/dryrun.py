"""``mailroute try``: what a policy would do to one message, without doing it.

Prints the verdict, the reply, each filter's result and a unified diff of the message on
standard output (``--json``: one object). Nothing is handed on or quarantined, and the
message is not recorded as processed. The exit code is the one ``process`` would give
(0, 65, 69, 75), so scripts can assert on it; 78 for a bad policy, 2 for an unreadable
``--in``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mailroute.adapters.pipe import exit_code_for, quarantine_deferred, read_bounded
from mailroute.commands.common import (
    add_envelope_arguments,
    envelope_from_args,
    load_policy_or_report,
    open_input,
    write_stdout_text,
)
from mailroute.dryrun import dry_run
from mailroute.exitcodes import ExitCode
from mailroute.results import Action

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``try``."""
    parser = subparsers.add_parser(
        "try", help="show what a policy would do to a message (verdict, reply, diff)",
        description="Run POLICY over the message on standard input (or --in) as a dry run "
                    "and print the verdict, the reply, each filter's result and a unified "
                    "diff of the message. Nothing is handed on, stored or recorded as "
                    "processed. Exit codes as process: 0 accept or discard, 65 malformed, 69 "
                    "refused, 75 tempfail or quarantine; 78 bad policy.")
    parser.add_argument("--config", required=True, metavar="POLICY.toml", help="the policy file")
    parser.add_argument("--in", dest="in_file", metavar="FILE", type=Path,
                        help="read the message from FILE instead of standard input")
    parser.add_argument("--json", action="store_true",
                        help='print {"action", "reply", "filters", "changed", "diff"}')
    parser.add_argument("--context", type=int, default=1, metavar="LINES",
                        help="lines of context around each change (default 1)")
    add_envelope_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the policy, run it over the input without side effects, report."""
    pipeline = load_policy_or_report(args.config)
    if isinstance(pipeline, ExitCode):
        return pipeline
    stream = open_input(args)
    if isinstance(stream, ExitCode):
        return stream
    with stream:
        data = read_bounded(stream, pipeline.limits.max_message_size)
    if data is None:
        too_big = f"5.3.4 message larger than {pipeline.limits.max_message_size} bytes"
        write_stdout_text(f"verdict: reject\nreply: 552 {too_big}\n")
        sys.stderr.write(too_big + "\n")
        return ExitCode.DATAERR
    outcome = dry_run(pipeline, data, envelope_from_args(args),
                      diff_context=max(0, args.context))
    result = outcome.result
    if args.json:
        write_stdout_text(json.dumps(outcome.to_json()) + "\n")
    else:
        filters = ", ".join(f"{name}: {what}" for name, what in result.trace) or "-"
        lines = [f"verdict: {result.action}", f"reply: {result.reply}", f"filters: {filters}"]
        if result.action is Action.ACCEPT:
            lines += ["", *outcome.diff] if outcome.diff else ["", "(message unchanged)"]
        write_stdout_text("\n".join(lines) + "\n")
    code = ExitCode.TEMPFAIL if result.action is Action.QUARANTINE else exit_code_for(result)
    if code in (ExitCode.DATAERR, ExitCode.UNAVAILABLE, ExitCode.TEMPFAIL):
        # the status line, as process writes it (docs/cli.md: first on standard error)
        status = (quarantine_deferred(result.smtp_reply)
                  if result.action is Action.QUARANTINE else result.smtp_reply)
        sys.stderr.write(f"{status.status} {status.text}\n")
    return code
