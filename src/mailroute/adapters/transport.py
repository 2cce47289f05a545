"""The pipe transport adapter (``mailroute pipe``): filter, then hand on, never lose mail.

Postfix ``pipe(8)`` and Exim's pipe transport start one process per message with the
envelope on the command line. The adapter runs the policy once for every recipient and acts
on the decision itself:

- accept: the result is handed on (:mod:`mailroute.adapters.reinject`) with the same sender
  and every recipient; exit 0 only after the next hop took it, else 75 (temporary) or 69
  (every recipient refused for good). Nothing is ever handed on twice within one run.
- reject: exit 65 (malformed, over a limit) or 69 (policy); tempfail: exit 75. Nothing is
  handed on and the first line on standard error is the status line (``5.7.1 ...``).
- discard: nothing handed on, exit 0.
- quarantine: the message goes to the quarantine store (:mod:`mailroute.adapters.quarantine`),
  nothing handed on, exit 0; without a store, or if storing fails, exit 75.

Every unexpected error is exit 75, so the MTA keeps the message. Nothing is written to
standard output. One log line per message goes to the ``mailroute.pipe.messages`` logger:
the verdict and reply first, then the queue id, Message-ID, sender, recipient count and
direction.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import BinaryIO, TextIO

from mailroute.adapters.messagelog import log_message
from mailroute.adapters.pipe import exit_code_for, read_bounded
from mailroute.adapters.quarantine import QuarantineStore
from mailroute.adapters.reinject import HandOnStatus, Reinjector
from mailroute.errors import MailrouteError
from mailroute.exitcodes import ExitCode
from mailroute.item import Envelope
from mailroute.pipeline import Pipeline
from mailroute.results import Action
from mailroute.session import Result

__all__ = ["MESSAGE_LOG", "TransportRun", "run_pipe_transport"]

MESSAGE_LOG = "mailroute.pipe.messages"
log = logging.getLogger("mailroute.pipe")
message_log = logging.getLogger(MESSAGE_LOG)


@dataclass(frozen=True, slots=True)
class TransportRun:
    """What one message needs besides the pipeline and its bytes."""

    envelope: Envelope
    reinjector: Reinjector
    queue_id: str | None = None
    quarantine: QuarantineStore | None = None
    clock: Callable[[], float] = time.time


def run_pipe_transport(pipeline: Pipeline, stdin: BinaryIO, stderr: TextIO,
                       run: TransportRun) -> ExitCode:
    """Filter the message on ``stdin`` and act on the decision. Never raises."""
    data = b""
    try:
        run = replace(run, envelope=_with_direction(pipeline, run.envelope))
        data_or_none = read_bounded(stdin, pipeline.limits.max_message_size)
        if data_or_none is None:
            line = f"5.3.4 message larger than {pipeline.limits.max_message_size} bytes"
            return _finish(stderr, ExitCode.DATAERR, line, "reject", run, None, data)
        data = data_or_none
        result = pipeline.process(data, run.envelope)
        return _act(result, data, stderr, run)
    except Exception:  # never crash the MTA's pipe: tempfail instead
        reference = secrets.token_hex(6)
        log.exception("pipe transport failed, reference %s", reference)
        line = f"4.3.0 internal error, reference {reference}"
        return _finish(stderr, ExitCode.TEMPFAIL, line, "tempfail", run, None, data)


def _act(result: Result, data: bytes, stderr: TextIO, run: TransportRun) -> ExitCode:
    reply = result.smtp_reply
    verdict = f"{result.action}"
    if result.action is Action.ACCEPT and result.data is not None:
        handon = run.reinjector.deliver(result.data, run.envelope.mail_from,
                                        run.envelope.rcpt_to)
        if handon.ok:
            return _finish(stderr, ExitCode.OK, f"2.0.0 handed on: {handon.detail}",
                           "accept", run, result, data, quiet=True)
        if handon.status is HandOnStatus.PERMANENT:
            return _finish(stderr, ExitCode.UNAVAILABLE, f"5.3.0 next hop refused the "
                           f"message: {handon.detail}", "accept-refused", run, result, data)
        return _finish(stderr, ExitCode.TEMPFAIL, f"4.3.0 hand-on failed: {handon.detail}",
                       "accept-deferred", run, result, data)
    if result.action is Action.DISCARD:
        return _finish(stderr, ExitCode.OK, f"{reply.status} {reply.text}", verdict, run,
                       result, data, quiet=True)
    if result.action is Action.QUARANTINE:
        return _quarantine(result, data, stderr, run)
    return _finish(stderr, exit_code_for(result), f"{reply.status} {reply.text}", verdict,
                   run, result, data)


def _quarantine(result: Result, data: bytes, stderr: TextIO, run: TransportRun) -> ExitCode:
    reply = result.smtp_reply
    if run.quarantine is None:
        return _finish(stderr, ExitCode.TEMPFAIL, f"4.7.0 {reply.text} (no quarantine "
                       f"configured: [gateway] quarantine_dir)", "quarantine-deferred", run,
                       result, data)
    try:
        entry = run.quarantine.store(result.data or data, sender=run.envelope.mail_from,
                                     recipients=run.envelope.rcpt_to, reply=str(reply),
                                     queue_id=run.queue_id, now=run.clock())
    except MailrouteError as error:
        return _finish(stderr, ExitCode.TEMPFAIL, f"{error.reply.status} {error.reply.text}",
                       "quarantine-deferred", run, result, data)
    return _finish(stderr, ExitCode.OK, f"{reply.status} {reply.text}; quarantined as {entry}",
                   "quarantine", run, result, data, quiet=True)


def _finish(stderr: TextIO, code: ExitCode, line: str, verdict: str, run: TransportRun,
            result: Result | None, data: bytes, *, quiet: bool = False) -> ExitCode:
    """Status line first on standard error (unless exit 0), then the one log line."""
    if not quiet:
        stderr.write(line + "\n")
        stderr.flush()
    log_message(message_log, verdict, line, envelope=run.envelope, queue_id=run.queue_id,
                result=result, data=data, exit=int(code))
    return code


def _with_direction(pipeline: Pipeline, envelope: Envelope) -> Envelope:
    """The envelope with the policy's direction, so the log line has it even when the
    message never got as far as the filters."""
    if envelope.direction is not None:
        return envelope
    return replace(envelope, direction=pipeline.derive_direction(envelope))
