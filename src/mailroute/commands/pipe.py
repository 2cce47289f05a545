"""``mailroute pipe``: the Postfix ``pipe(8)`` / Exim pipe transport adapter (CLI.md).

The message comes on standard input, the envelope on the command line
(``--sender ADDR … -- RCPT…``); mailroute filters it and hands it on itself
(:mod:`mailroute.adapters.transport`). The per-message log line goes to syslog (facility
mail) when ``/dev/log`` exists, else to standard error after the status line; ``--log``
chooses, ``--log-format`` makes it JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

from mailroute.adapters.quarantine import QuarantineStore
from mailroute.adapters.reinject import Reinjector, parse_reinject
from mailroute.adapters.transport import TransportRun, run_pipe_transport
from mailroute.commands.common import (
    add_log_arguments,
    load_policy_or_report,
    message_log_from_args,
)
from mailroute.errors import TemporaryError
from mailroute.exitcodes import ExitCode
from mailroute.item import Direction, Envelope

__all__ = ["register", "reinject_type"]


def reinject_type(text: str) -> Reinjector:
    try:
        return parse_reinject(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pipe``."""
    parser = subparsers.add_parser(
        "pipe", help="the Postfix pipe(8) / Exim pipe transport adapter",
        description="Filter the message on standard input for SENDER and every RCPT, then hand "
                    "it on (sendmail -G -i -f SENDER -- RCPT..., or one SMTP transaction). "
                    "Exit codes: 0 handed on, discarded or quarantined; 65 malformed or over "
                    "a limit; 69 refused by policy or by the next hop for every recipient; "
                    "75 try again later; 78 bad policy. Nothing is handed on unless the exit "
                    "is 0.")
    parser.add_argument("--config", required=True, metavar="POLICY.toml", help="the policy file")
    sender = parser.add_mutually_exclusive_group(required=True)
    sender.add_argument("--sender", metavar="ADDR",
                        help="the envelope sender; '' or '<>' is the null sender of a bounce")
    sender.add_argument("--sender-env", metavar="NAME",
                        help="read the envelope sender from environment variable NAME "
                             "(Exim 4.94+ refuses $sender_address in a pipe command; its pipe "
                             "transport sets SENDER)")
    parser.add_argument("--queue-id", metavar="ID", help="the MTA's queue id, for the log line")
    parser.add_argument("--client-ip", metavar="IP", help="the connecting client's address")
    parser.add_argument("--helo", metavar="NAME",
                        help="the client's HELO name (SPF checks it for the null sender)")
    parser.add_argument("--sasl-user", metavar="NAME",
                        help="the authenticated SASL user (${sasl_username}): the envelope's "
                             "auth_user, for the authenticated condition and the log line")
    parser.add_argument("--tls-name", metavar="NAME",
                        help="the peer's verified TLS certificate name")
    parser.add_argument("--direction", choices=[d.value for d in Direction],
                        help="inbound, outbound or internal (derived from the policy if omitted)")
    parser.add_argument("--reinject", type=reinject_type, default=parse_reinject("sendmail"),
                        metavar="sendmail[:PATH]|smtp:HOST:PORT",
                        help="how an accepted message is handed on (default: "
                             "/usr/sbin/sendmail -G -i -f SENDER -- RCPT...)")
    add_log_arguments(parser, default="auto")
    parser.add_argument("recipients", nargs="+", metavar="RCPT",
                        help="the envelope recipients (after --)")
    parser.set_defaults(handler=run)


class TerminatedError(TemporaryError):
    """SIGTERM before the message was handed on: the MTA keeps it and tries again."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise TerminatedError("terminated by a signal before the message was handed on")


@contextlib.contextmanager
def _hand_on_held() -> Iterator[None]:
    """SIGTERM waits while the next hop takes the message (or the quarantine stores it);
    after that the run only reports, and a SIGTERM would turn a message that was handed on
    into a retry and a second copy, so it is ignored."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run(args: argparse.Namespace) -> int:
    """Load the policy, filter the message, hand it on."""
    signal.signal(signal.SIGTERM, _terminate)  # exit 75, never a death by signal
    message_log = message_log_from_args(args)
    given = args.sender if args.sender is not None else os.environ.get(args.sender_env)
    if given is None:
        sys.stderr.write(f"4.3.5 configuration error: --sender-env {args.sender_env} is not "
                         "set\n")
        return ExitCode.CONFIG
    sender = "" if given in ("", "<>") else given
    try:  # MTAs pass an unknown value as an empty argument: it means "not given"
        envelope = Envelope(mail_from=sender, rcpt_to=tuple(args.recipients),
                            client_address=args.client_ip or None,
                            tls_peer_name=args.tls_name or None, helo=args.helo or None,
                            auth_user=args.sasl_user or None,
                            direction=args.direction)
    except ValueError as exc:
        sys.stderr.write(f"mailroute: {exc}\n")
        return ExitCode.USAGE
    pipeline = load_policy_or_report(args.config)
    if isinstance(pipeline, ExitCode):
        return pipeline
    quarantine = (QuarantineStore(pipeline.quarantine_dir)
                  if pipeline.quarantine_dir is not None else None)
    transport = TransportRun(envelope=envelope, reinjector=args.reinject,
                             queue_id=args.queue_id, quarantine=quarantine,
                             message_log=message_log, sasl_user=args.sasl_user or None,
                             critical=_hand_on_held)
    return run_pipe_transport(pipeline, sys.stdin.buffer, sys.stderr, transport)

