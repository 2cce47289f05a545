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
- split (a filter asked for one copy per group of recipients, as ``encrypt-by-policy`` does
  when recipients need different treatment): the policy runs once per group and each copy is
  handed on to its recipients, only when every group was accepted.
- quarantine: the message goes to the quarantine store (:mod:`mailroute.adapters.quarantine`),
  nothing handed on, exit 0; without a store, or if storing fails, exit 75. When the outcome
  carries a notification (the encryption policy's ``notify``), the sender gets it
  (:mod:`mailroute.adapters.notify`), from the null sender.

Every unexpected error is exit 75, so the MTA keeps the message. Nothing is written to
standard output. One log line per message goes to the message log
(:mod:`mailroute.adapters.messagelog`): the verdict and reply first, then the queue id,
Message-ID, sender, recipient count, direction, exit code, filters and duration.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, TextIO

from mailroute.adapters.collector import resume_after_start_up
from mailroute.adapters.messagelog import MESSAGE_LOG, MessageLog, record_for
from mailroute.adapters.pipe import exit_code_for, read_bounded, with_direction
from mailroute.adapters.reinject import HandOnStatus, Reinjector
from mailroute.errors import MailrouteError, TemporaryError
from mailroute.exitcodes import ExitCode
from mailroute.item import Envelope
from mailroute.logs import LazyLogger
from mailroute.pipeline import Pipeline
from mailroute.records import field, record, replace
from mailroute.results import Action, Reply
from mailroute.session import Result

if TYPE_CHECKING:
    from mailroute.adapters.quarantine import QuarantineStore

__all__ = ["MESSAGE_LOG", "TransportRun", "run_pipe_transport"]

log = LazyLogger("mailroute.pipe")


@record(frozen=True)
class TransportRun:
    """What one message needs besides the pipeline and its bytes."""

    envelope: Envelope
    reinjector: Reinjector
    queue_id: str | None = None
    quarantine: QuarantineStore | None = None
    clock: Callable[[], float] = time.time
    message_log: MessageLog = field(default_factory=MessageLog)
    sasl_user: str | None = None
    #: Held around the hand-on and the quarantine store: the command line's keeps SIGTERM
    #: from turning a message the next hop took into a retry (a second copy).
    critical: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext


def run_pipe_transport(pipeline: Pipeline, stdin: BinaryIO, stderr: TextIO,
                       run: TransportRun) -> ExitCode:
    """Filter the message on ``stdin`` and act on the decision. Never raises."""
    resume_after_start_up()
    data = b""
    started = time.monotonic()
    try:
        run = replace(run, envelope=with_direction(pipeline, run.envelope))
        data_or_none = read_bounded(stdin, pipeline.limits.max_message_size)
        if data_or_none is None:
            reply = Reply(552, "5.3.4",
                          f"message larger than {pipeline.limits.max_message_size} bytes")
            return _finish(stderr, ExitCode.DATAERR, reply, "reject", run, None, data, started)
        data = data_or_none
        result = pipeline.process(data, run.envelope)
        if result.split:
            return _act_split(pipeline, result, data, stderr, run, started)
        return _act(result, data, stderr, run, started)
    except TemporaryError as error:  # SIGTERM (the command line's handler) and the like
        return _finish(stderr, ExitCode.TEMPFAIL, error.reply, "tempfail", run, None, data,
                       started)
    except Exception:  # never crash the MTA's pipe: tempfail instead
        reference = os.urandom(6).hex()
        log.exception("pipe transport failed, reference %s", reference)
        reply = Reply(451, "4.3.0", f"internal error, reference {reference}")
        return _finish(stderr, ExitCode.TEMPFAIL, reply, "tempfail", run, None, data, started)


def _act(result: Result, data: bytes, stderr: TextIO, run: TransportRun,
         started: float) -> ExitCode:
    reply = result.smtp_reply
    if result.action is Action.ACCEPT and result.output is not None:
        with run.critical():
            handon = run.reinjector.deliver(result.chunks(), run.envelope.mail_from,
                                            run.envelope.rcpt_to)
        if handon.ok:
            return _finish(stderr, ExitCode.OK, Reply(250, "2.0.0", f"handed on: {handon.detail}"),
                           "accept", run, result, data, started, quiet=True)
        if handon.status is HandOnStatus.PERMANENT:
            refused = Reply(554, "5.3.0", f"next hop refused the message: {handon.detail}")
            return _finish(stderr, ExitCode.UNAVAILABLE, refused, "accept-refused", run, result,
                           data, started)
        return _finish(stderr, ExitCode.TEMPFAIL,
                       Reply(451, "4.3.0", f"hand-on failed: {handon.detail}"),
                       "accept-deferred", run, result, data, started)
    if result.action is Action.DISCARD:
        return _finish(stderr, ExitCode.OK, reply, str(result.action), run, result, data,
                       started, quiet=True)
    if result.action is Action.QUARANTINE:
        return _quarantine(result, data, stderr, run, started)
    return _finish(stderr, exit_code_for(result), reply, str(result.action), run, result, data,
                   started)


def _act_split(pipeline: Pipeline, result: Result, data: bytes, stderr: TextIO,
               run: TransportRun, started: float) -> ExitCode:
    """A filter asked for one copy per group of recipients (the encryption policy does when
    recipients need different treatment): run the policy once per group and hand every copy
    on, but only when every group was accepted; otherwise the first other decision stands
    for the whole message. A hand-on failing after an earlier copy went is exit 75 (the MTA
    retries: a duplicate rather than a loss)."""
    groups = result.split
    recipients = run.envelope.rcpt_to
    if (len(groups) < 2 or sorted(r for g in groups for r in g) != sorted(recipients)):
        return _act(result, data, stderr, run, started)  # not a partition: tempfail
    copies: list[tuple[tuple[str, ...], Result]] = []
    for group in groups:
        part = pipeline.process(data, replace(run.envelope, rcpt_to=group))
        if part.split:
            return _act(result, data, stderr, run, started)  # no second split: tempfail
        if part.action not in (Action.ACCEPT, Action.DISCARD):
            return _act(part, data, stderr, run, started)
        copies.append((group, part))
    sent = 0
    for group, part in copies:
        if part.action is not Action.ACCEPT or part.output is None:
            continue
        with run.critical():
            handon = run.reinjector.deliver(part.chunks(), run.envelope.mail_from, group)
        if not handon.ok:
            if sent == 0 and handon.status is HandOnStatus.PERMANENT:
                refused = Reply(554, "5.3.0", f"next hop refused the message: {handon.detail}")
                return _finish(stderr, ExitCode.UNAVAILABLE, refused, "accept-refused", run,
                               part, data, started)
            deferred = Reply(451, "4.3.0", f"hand-on failed after {sent} of {len(copies)} "
                                           f"copies: {handon.detail}")
            return _finish(stderr, ExitCode.TEMPFAIL, deferred, "accept-deferred", run, part,
                           data, started)
        sent += 1
    return _finish(stderr, ExitCode.OK, Reply(250, "2.0.0", f"handed on in {sent} copies"),
                   "accept-split", run, copies[0][1], data, started, quiet=True)


def _quarantine(result: Result, data: bytes, stderr: TextIO, run: TransportRun,
                started: float) -> ExitCode:
    reply = result.smtp_reply
    if run.quarantine is None:
        deferred = Reply(451, "4.7.0", f"{reply.text} (no quarantine configured: [gateway] "
                                       "quarantine_dir)")
        return _finish(stderr, ExitCode.TEMPFAIL, deferred, "quarantine-deferred", run, result,
                       data, started)
    try:
        with run.critical():
            entry = run.quarantine.store(result.data or data, sender=run.envelope.mail_from,
                                         recipients=run.envelope.rcpt_to, reply=str(reply),
                                         queue_id=run.queue_id, now=run.clock())
    except MailrouteError as error:
        return _finish(stderr, ExitCode.TEMPFAIL, error.reply, "quarantine-deferred", run,
                       result, data, started)
    if result.notify and run.envelope.mail_from:
        _notify(result, entry, run)
    return _finish(stderr, ExitCode.OK, reply.with_text(f"{reply.text}; quarantined as {entry}"),
                   "quarantine", run, result, data, started, quiet=True)


def _notify(result: Result, entry: str, run: TransportRun) -> None:
    """Tell the sender his message is held; a failure is logged, the message stays held."""
    subject = ""
    found = result.prepared.message.headers.get("Subject") if result.prepared else None
    if found is not None:
        try:
            subject = found.decoded()
        except MailrouteError:
            subject = found.value
    # the notice's MIME and date handling load the email package: only for quarantine
    from mailroute.adapters.notify import held_notification

    try:
        notice = held_notification(sender=run.envelope.mail_from, subject=subject,
                                   recipients=run.envelope.rcpt_to, reason=result.notify,
                                   quarantine_id=entry, now=run.clock())
    except MailrouteError as error:
        log.warning("no notification for quarantined %s: %s", entry, error)
        return
    handon = run.reinjector.deliver(notice, "", (run.envelope.mail_from,))
    if not handon.ok:
        log.warning("notification for quarantined %s not handed on: %s", entry, handon.detail)


def _finish(stderr: TextIO, code: ExitCode, reply: Reply, verdict: str, run: TransportRun,
            result: Result | None, data: bytes, started: float, *,
            quiet: bool = False) -> ExitCode:
    """Status line first on standard error (unless exit 0), then the one log line."""
    if not quiet:
        stderr.write(f"{reply.status} {reply.text}\n")
        stderr.flush()
    run.message_log.write(record_for(
        result, run.envelope, data=data, verdict=verdict, reply=reply, queue_id=run.queue_id,
        sasl_user=run.sasl_user, duration=time.monotonic() - started, exit_code=int(code)))
    return code
