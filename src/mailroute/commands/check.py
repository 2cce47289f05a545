"""``mailroute check --config POLICY [--topology FILE]`` (CLI.md "mailroute check").

Warnings and errors go to standard error, one per line, each starting with ``warning:`` or
``error:`` and naming file and key. Exit 0 clean, 1 warnings only, 78 any error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mailroute.commands.common import unix_time, write_stdout_text
from mailroute.exitcodes import ExitCode

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``check``."""
    parser = subparsers.add_parser(
        "check", help="check a policy, its key and certificate files, and its topology",
        description="Load POLICY as the adapters would and check the files it names: secret "
                    "files (missing, not a regular file, readable by group or others), "
                    "certificates and marker keys (expired: error; expiring within "
                    "--warn-days: warning), and, with a topology (--topology or the policy's "
                    "topology key), that the marker tag, field, windows and tenant id agree "
                    "with it. Problems go to standard error, one per line. Exit 0 clean, 1 "
                    "warnings only, 78 errors.")
    parser.add_argument("--config", required=True, type=Path, metavar="POLICY.toml",
                        help="the policy file")
    parser.add_argument("--topology", type=Path, metavar="TOPOLOGY.toml",
                        help="check consistency with this topology (default: the one the "
                             "policy names, if any)")
    parser.add_argument("--warn-days", type=int, default=30, metavar="DAYS",
                        help="warn about certificates and marker keys that expire within "
                             "DAYS (default 30)")
    parser.add_argument("--errors-only", action="store_true",
                        help="warnings are still listed but exit 0 (for a service's "
                             "ExecStartPre: only errors stop the start)")
    parser.add_argument("--now", type=unix_time, metavar="UNIX_TIME",
                        help="check as of this time instead of now (for tests)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check and report."""
    from mailroute.check import check_policy

    if args.warn_days < 0:
        sys.stderr.write("mailroute check: --warn-days must not be negative\n")
        return ExitCode.USAGE
    now = time.time() if args.now is None else args.now
    findings = check_policy(args.config, topology=args.topology, now=now,
                            warn_days=args.warn_days)
    for finding in findings:
        sys.stderr.write(f"{finding}\n")
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if errors:
        return ExitCode.CONFIG
    write_stdout_text(f"{args.config}: ok" + (f", {warnings} warning(s)" if warnings else "")
                      + "\n")
    return ExitCode.NEGATIVE if warnings and not args.errors_only else ExitCode.OK
