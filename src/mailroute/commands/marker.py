"""``mailroute marker set`` and ``mailroute marker verify`` (CLI.md); ``keygen``, ``rotate``
and ``status`` live in :mod:`mailroute.commands.markerkeys`.

``set`` runs the ``marker-set`` filter over one message; ``verify`` reports the verdict of
the message's marker (exit 0 only for ``valid-fresh`` and ``valid-stale``, 1 otherwise).
``--now`` replaces the clock through the pipeline's :class:`~mailroute.item.Context`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mailroute.commands.common import (
    add_envelope_arguments,
    add_io_arguments,
    options_from_args,
    read_message,
    report_config_error,
    run_pipeline_command,
    unix_time,
    write_stdout_text,
)
from mailroute.commands.markerkeys import register_key_actions
from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode
from mailroute.filters.marker import field_option, ring_option, windows_option
from mailroute.item import Context
from mailroute.limits import DEFAULT_LIMITS
from mailroute.marker.verify import check_message
from mailroute.pipeline import Pipeline
from mailroute.policy import build_filter

__all__ = ["register"]

_SET_OPTIONS = ("key_file", "field", "message_id_domain")
_VERIFY_OPTIONS = ("key_file", "field", "max_age", "loop_window", "max_future_skew")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``marker set`` and ``marker verify``."""
    parser = subparsers.add_parser(
        "marker", help="set or verify the HMAC loop marker header; make, rotate and list its keys",
        description="The HMAC loop marker (X-Mailroute-Mark) that tells Exchange Online rules "
                    "and the gateway that a message has been processed. See docs/marker.md.")
    actions = parser.add_subparsers(dest="marker_command", metavar="ACTION", required=True)

    setter = actions.add_parser(
        "set", help="add the marker (replacing any), signed with the newest signing key",
        description="Add the marker header, replacing any, signed with the key with the "
                    "latest not_before among those allowed to sign now. A message without "
                    "a Message-ID gets one first. Exit 0 ok, 65 malformed input, 75 no key "
                    "may sign now (nothing written), 78 bad key file.")
    _add_common(setter)
    setter.add_argument("--message-id-domain", metavar="DOMAIN",
                        help="domain of a Message-ID added to a message without one "
                             "(default: the key file's org_id when it is a host name)")
    add_io_arguments(setter)
    add_envelope_arguments(setter)
    setter.set_defaults(handler=run_set)

    verifier = actions.add_parser(
        "verify", help="check the marker; exit 0 only when it is valid",
        description="Verify the marker of the message on standard input. Exit 0 for "
                    "valid-fresh and valid-stale, 1 for every other verdict (missing, "
                    "malformed, foreign, unknown-key, future, bad-mac, expired), 65 for "
                    "malformed input, 78 for a bad key file.")
    _add_common(verifier)
    verifier.add_argument("--max-age", type=int, metavar="SECONDS",
                          help="older markers are expired (default 604800)")
    verifier.add_argument("--loop-window", type=int, metavar="SECONDS",
                          help="markers at most this old are valid-fresh (default 3600)")
    verifier.add_argument("--max-future-skew", type=int, metavar="SECONDS",
                          help="tolerated clock skew into the future (default 300)")
    verifier.add_argument("--json", action="store_true",
                          help='print {"valid", "verdict", "reason", "key_id", '
                               '"age_seconds"} on standard output')
    verifier.add_argument("--in", dest="in_file", metavar="FILE", type=Path,
                          help="read the message from FILE instead of standard input")
    verifier.set_defaults(handler=run_verify)
    register_key_actions(actions)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-file", required=True, metavar="FILE",
                        help="the marker key file (TOML, mode 0600)")
    parser.add_argument("--field", metavar="NAME",
                        help="the header field name (default X-Mailroute-Mark)")
    parser.add_argument("--now", type=unix_time, metavar="UNIX_TIME",
                        help="use this time instead of the clock (for tests)")


def _context(args: argparse.Namespace) -> Context | None:
    now: float | None = args.now
    return None if now is None else Context(clock=lambda: now)


def run_set(args: argparse.Namespace) -> int:
    """Mark the input message."""
    try:
        options = options_from_args(args, _SET_OPTIONS)
        step = build_filter("marker-set", options)
        options.finish()
    except ConfigError as error:
        return report_config_error(error)
    return run_pipeline_command(args, Pipeline(filters=(step,), context=_context(args)))


def run_verify(args: argparse.Namespace) -> int:
    """Verify the input message's marker and report the verdict."""
    try:
        options = options_from_args(args, _VERIFY_OPTIONS)
        ring = ring_option(options)
        field_name = field_option(options)
        windows = windows_option(options)
        options.finish()
    except ConfigError as error:
        return report_config_error(error)
    message = read_message(args)
    if isinstance(message, ExitCode):
        return message
    now = args.now if args.now is not None else Context().clock()
    check = check_message(message, ring, now=now, windows=windows, field_name=field_name,
                          limits=DEFAULT_LIMITS)
    if args.json:
        write_stdout_text(json.dumps(check.to_json()) + "\n")
    else:
        key = f", key {check.key_id}" if check.key_id else ""
        sys.stderr.write(f"marker {check.verdict}: {check.reason}{key}\n")
    return ExitCode.OK if check.valid else ExitCode.NEGATIVE
