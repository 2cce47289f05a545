"""``mailroute pipe``: the Postfix ``pipe(8)`` / Exim pipe transport adapter (CLI.md).

The message comes on standard input, the envelope on the command line
(``--sender ADDR … -- RCPT…``); mailroute filters it and hands it on itself
(:mod:`mailroute.adapters.transport`). The per-message log line goes to syslog (facility
mail) when ``/dev/log`` exists, else to standard error after the status line; ``--log``
chooses, ``--log-format`` makes it JSON.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

from mailroute.adapters.reinject import Reinjector, parse_reinject
from mailroute.adapters.transport import TransportRun, run_pipe_transport
from mailroute.commands.common import (
    Flag,
    add_flags,
    envelope_address,
    load_policy_or_report,
    log_flags,
    message_log_from_args,
)
from mailroute.errors import TemporaryError
from mailroute.exitcodes import ExitCode
from mailroute.item import Direction, Envelope

if TYPE_CHECKING:
    import argparse

__all__ = ["FLAGS", "ONE_OF", "POSITIONAL", "register", "reinject_type"]


def reinject_type(text: str) -> Reinjector:
    """``--reinject``'s value (argparse's ``type``)."""
    try:
        return parse_reinject(text)
    except ValueError as exc:
        import argparse  # only for a value argparse is about to report

        raise argparse.ArgumentTypeError(str(exc)) from None


#: The options of ``pipe``: :func:`register` gives them to argparse, and the command line an
#: MTA writes (options, ``--``, recipients) is read without argparse (mailroute.cli: one
#: process per message); tests/test_quick_args.py checks that both readings agree.
FLAGS: tuple[Flag, ...] = (
    Flag(option="--config", dest="config", metavar="POLICY.toml", required=True,
         help="the policy file"),
    Flag(option="--sender", dest="sender", metavar="ADDR",
         help="the envelope sender; '' or '<>' is the null sender of a bounce"),
    Flag(option="--sender-env", dest="sender_env", metavar="NAME",
         help="read the envelope sender from environment variable NAME (Exim 4.94+ refuses "
              "$sender_address in a pipe command; its pipe transport sets SENDER)"),
    Flag(option="--queue-id", dest="queue_id", metavar="ID",
         help="the MTA's queue id, for the log line"),
    Flag(option="--client-ip", dest="client_ip", metavar="IP",
         help="the connecting client's address"),
    Flag(option="--helo", dest="helo", metavar="NAME",
         help="the client's HELO name (SPF checks it for the null sender)"),
    Flag(option="--sasl-user", dest="sasl_user", metavar="NAME",
         help="the authenticated SASL user (${sasl_username}): the envelope's auth_user, for "
              "the authenticated condition and the log line"),
    Flag(option="--tls-name", dest="tls_name", metavar="NAME",
         help="the peer's verified TLS certificate name"),
    Flag(option="--direction", dest="direction", choices=tuple(d.value for d in Direction),
         help="inbound, outbound or internal (derived from the policy if omitted)"),
    Flag(option="--reinject", dest="reinject", default=parse_reinject("sendmail"),
         convert=reinject_type, metavar="sendmail[:PATH]|smtp:HOST:PORT",
         help="how an accepted message is handed on (default: /usr/sbin/sendmail -G -i -f "
              "SENDER -- RCPT...)"),
    *log_flags("auto"),
)
#: The recipients, after ``--``.
POSITIONAL = "recipients"
#: Exactly one of them is given.
ONE_OF = (("sender", "sender_env"),)


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
    sender_flags = {dest for group in ONE_OF for dest in group}
    add_flags(parser, FLAGS[:1])
    add_flags(parser.add_mutually_exclusive_group(required=True),
              tuple(f for f in FLAGS if f.dest in sender_flags))
    add_flags(parser, tuple(f for f in FLAGS[1:] if f.dest not in sender_flags))
    parser.add_argument(POSITIONAL, nargs="+", metavar="RCPT",
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
    try:  # MTAs pass an unknown value as an empty argument: it means "not given"
        envelope = Envelope(mail_from=envelope_address(given),
                            rcpt_to=tuple(envelope_address(r) for r in args.recipients),
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
    quarantine = None
    if pipeline.quarantine_dir is not None:
        from mailroute.adapters.quarantine import QuarantineStore

        quarantine = QuarantineStore(pipeline.quarantine_dir)
    transport = TransportRun(envelope=envelope, reinjector=args.reinject,
                             queue_id=args.queue_id, quarantine=quarantine,
                             message_log=message_log, sasl_user=args.sasl_user or None,
                             critical=_hand_on_held)
    return run_pipe_transport(pipeline, sys.stdin.buffer, sys.stderr, transport)

