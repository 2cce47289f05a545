"""The pipe adapter: one message from a stream, the result to another, sysexits status.

Postfix pipe(8) and Exim's transport filter read the exit status, and Postfix lets a leading
enhanced status code (``4.3.0 ...``) on the first line of output override it, so every
failure's first stderr line starts with the status code. Nothing is written to the output
unless the message was accepted, and every unexpected error is a temporary failure (75).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, BinaryIO, TextIO

from mailroute.adapters.collector import resume_after_start_up
from mailroute.adapters.heap import pin_mmap_threshold
from mailroute.adapters.output import Chunks, write_all, write_file_atomically
from mailroute.errors import MessageError, OutputError
from mailroute.exitcodes import ExitCode
from mailroute.item import Envelope
from mailroute.logs import LazyLogger
from mailroute.pipeline import Pipeline
from mailroute.records import record, replace
from mailroute.results import Action, Reply
from mailroute.session import Result

if TYPE_CHECKING:
    from pathlib import Path

    from mailroute.adapters.messagelog import MessageLog

__all__ = ["PipeLog", "PipeOutcome", "exit_code_for", "quarantine_deferred", "read_bounded",
           "report_internal_error", "run_pipe", "write_output"]

log = LazyLogger("mailroute.pipe")
# Above this, intermediate copies of the message go to mmap and back to the system when
# freed (see mailroute.adapters.heap); below, the pin is not worth its start-up.
_LARGE_MESSAGE = 1024 * 1024


@record(frozen=True)
class PipeOutcome:
    """The exit code and the one diagnostic line of a pipe run."""

    code: ExitCode
    line: str


def exit_code_for(result: Result) -> ExitCode:
    """The sysexits code for a pipeline result (CLI.md)."""
    if result.action in (Action.ACCEPT, Action.DISCARD):
        return ExitCode.OK
    if result.action is Action.REJECT:
        return ExitCode.DATAERR if isinstance(result.error, MessageError) else ExitCode.UNAVAILABLE
    return ExitCode.TEMPFAIL


def read_bounded(stream: BinaryIO, limit: int) -> bytes | None:
    """Read at most ``limit`` bytes; ``None`` when the stream holds more.

    A large message pins the process's mmap threshold (:func:`pin_mmap_threshold`), so the
    copies made while it is processed are given back when freed, not kept resident.
    """
    data = stream.read(limit + 1)
    if len(data) > limit:
        return None
    if len(data) > _LARGE_MESSAGE:
        pin_mmap_threshold()
    return data


def write_output(data: bytes | Chunks, stdout: BinaryIO, out_path: Path | None) -> None:
    """Write all of ``data`` (bytes, or pieces in order) to ``out_path`` atomically (temp
    file + rename) or to ``stdout`` (also for ``-``, as ``--in -`` reads standard input).

    Raises:
        OutputError: not every byte was written (``out_path`` is then left as it was).
    """
    if out_path is None or str(out_path) == "-":
        write_all(stdout, data)
    else:
        write_file_atomically(out_path, data)


def report_internal_error(stderr: TextIO, what: str) -> Reply:
    """The status line of an unexpected exception, then (with ``-v`` only) its traceback.

    Call from an ``except`` block. The status line comes first because Postfix pipe(8) reads
    the first line; the traceback is logged at INFO, which only ``-v`` shows. Returns the
    reply written.
    """
    reference = os.urandom(6).hex()
    reply = Reply(451, "4.3.0", f"internal error, reference {reference}")
    stderr.write(f"{reply.status} {reply.text}\n")
    stderr.flush()
    log.info("%s failed, reference %s", what, reference, exc_info=True)
    return reply


def with_direction(pipeline: Pipeline, envelope: Envelope) -> Envelope:
    """The envelope with the policy's direction, so the log line has it even when the
    message never got as far as the filters."""
    if envelope.direction is not None:
        return envelope
    return replace(envelope, direction=pipeline.derive_direction(envelope))


@record(frozen=True)
class PipeLog:
    """Where ``run_pipe`` writes its one line per message, and the facts only the caller
    knows (the MTA's queue id, the SASL user)."""

    message_log: MessageLog
    queue_id: str | None = None
    sasl_user: str | None = None


def run_pipe(pipeline: Pipeline, stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO, *,
             envelope: Envelope | None = None, out_path: Path | None = None,
             log_to: PipeLog | None = None) -> ExitCode:
    """Run ``pipeline`` once over the message on ``stdin``. Never raises.

    With ``log_to``, one line per message goes to its message log after the status line.

    Returns:
        0 accepted (message on ``stdout``) or discarded (nothing written), 65 malformed or
        over a limit, 69 refused by policy, 75 temporary failure or quarantine (the MTA keeps
        the message).
    """
    resume_after_start_up()
    started = time.monotonic()
    envelope = with_direction(pipeline, envelope or Envelope())
    result: Result | None = None
    data = b""
    try:
        read = read_bounded(stdin, pipeline.limits.max_message_size)
        if read is None:
            reply = Reply(552, "5.3.4",
                          f"message larger than {pipeline.limits.max_message_size} bytes")
            stderr.write(f"{reply.status} {reply.text}\n")
            return _logged(log_to, ExitCode.DATAERR, None, envelope, data, started, reply)
        data = read
        result = pipeline.process(data, envelope)
        code = exit_code_for(result)
        reply, verdict = result.smtp_reply, None
        if result.action is Action.ACCEPT and result.output is not None:
            write_output(result.chunks(), stdout, out_path)
        elif result.action is Action.DISCARD:
            stderr.write(f"{reply.status} {reply.text}\n")
        else:
            if result.action is Action.QUARANTINE:
                reply, code = quarantine_deferred(reply), ExitCode.TEMPFAIL
                verdict = "quarantine-deferred"
            stderr.write(f"{reply.status} {reply.text}\n")
        return _logged(log_to, code, result, envelope, data, started, reply, verdict)
    except OutputError as error:  # a short write, broken pipe, full disk: the MTA retries
        stderr.write(f"{error.reply.status} {error}\n")
        return _logged(log_to, ExitCode.TEMPFAIL, result, envelope, data, started, error.reply,
                       "accept-deferred")
    except Exception:  # noqa: BLE001 - never crash the MTA's pipe: tempfail instead
        reply = report_internal_error(stderr, "pipe adapter")
        return _logged(log_to, ExitCode.TEMPFAIL, None, envelope, data, started, reply,
                       "tempfail")


def quarantine_deferred(reply: Reply) -> Reply:
    """The answer to a quarantine outcome that ``process`` cannot store: a temporary failure
    (the MTA keeps the message) with the outcome's text."""
    return Reply(451, "4.7.0", reply.text)


def _logged(log_to: PipeLog | None, code: ExitCode, result: Result | None, envelope: Envelope,
            data: bytes, started: float, reply: Reply, verdict: str | None = None) -> ExitCode:
    if log_to is not None:
        if verdict is None and result is None:
            verdict = "reject" if reply.code >= 500 else "tempfail"
        from mailroute.adapters.messagelog import record_for  # only when a line is written

        log_to.message_log.write(record_for(
            result, envelope, data=data, verdict=verdict, reply=reply,
            queue_id=log_to.queue_id, sasl_user=log_to.sasl_user,
            duration=time.monotonic() - started, exit_code=int(code)))
    return code
