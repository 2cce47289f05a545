"""The pipe transport adapter: hands on only on accept, with every recipient, never loses mail."""

from __future__ import annotations

import io
import logging
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailroute.adapters.output import Chunks, pieces_of
from mailroute.adapters.quarantine import QuarantineStore
from mailroute.adapters.reinject import HandOn, HandOnStatus, Reinjector, SmtpReinjector
from mailroute.adapters.transport import MESSAGE_LOG, TransportRun, run_pipe_transport
from mailroute.item import Context, Envelope, Filter, MailItem
from mailroute.limits import Limits
from mailroute.pipeline import Pipeline
from mailroute.results import Action, Outcome, Reply
from tests.smtpsink import SmtpSink

MESSAGE = (b"From: a@corp.example\r\nTo: b@partner.example\r\nMessage-ID: <m1@corp.example>\r\n"
           b"Subject: hi\r\n\r\nbody\r\n")
ENVELOPE = Envelope(mail_from="a@corp.example",
                    rcpt_to=("b@partner.example", "c@partner.example", "d@corp.example"))


@dataclass
class Recorder:
    """A reinjector that records what it was given and answers ``status``."""

    status: HandOnStatus = HandOnStatus.DELIVERED
    calls: list[tuple[bytes, str, tuple[str, ...]]] = field(default_factory=list)

    def deliver(self, data: bytes | Chunks, sender: str, recipients: Sequence[str]) -> HandOn:
        self.calls.append((b"".join(pieces_of(data)), sender, tuple(recipients)))
        return HandOn(self.status, "recorded")


@dataclass(frozen=True)
class Decide:
    """A filter that ends with ``outcome`` (or tags the message and goes on)."""

    outcome: Outcome | None = None
    name: str = "decide"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        if self.outcome is not None:
            return self.outcome
        return item.evolve(message=item.message.with_header("X-Filtered", "yes"))


@dataclass(frozen=True)
class Boom:
    name: str = "boom"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        raise RuntimeError("bug")


def _run(step: Filter, reinjector: Reinjector, *, quarantine: QuarantineStore | None = None,
         data: bytes = MESSAGE, pipeline: Pipeline | None = None) -> tuple[int, str]:
    pipeline = pipeline or Pipeline(filters=(step,), internal_domains=frozenset({"corp.example"}))
    stderr = io.StringIO()
    run = TransportRun(envelope=ENVELOPE, reinjector=reinjector,
                       queue_id="4XyZ1", quarantine=quarantine, clock=lambda: 1000.0)
    code = run_pipe_transport(pipeline, io.BytesIO(data), stderr, run)
    return code, stderr.getvalue()


def test_accept_hands_on_once_with_every_recipient_and_exits_0() -> None:
    recorder = Recorder()
    code, err = _run(Decide(), recorder)
    assert code == 0
    assert err == ""
    [(data, sender, rcpts)] = recorder.calls
    assert b"X-Filtered: yes" in data
    assert sender == "a@corp.example"
    assert rcpts == ENVELOPE.rcpt_to


@pytest.mark.parametrize(("outcome", "code", "status"), [
    (Outcome(Action.REJECT, Reply(554, "5.7.1", "refused by policy")), 69, "5.7.1"),
    (Outcome(Action.TEMPFAIL, Reply(451, "4.7.1", "later")), 75, "4.7.1"),
])
def test_reject_and_tempfail_hand_on_nothing(outcome: Outcome, code: int, status: str) -> None:
    recorder = Recorder()
    got, err = _run(Decide(outcome), recorder)
    assert got == code
    assert err.splitlines()[0].startswith(status)
    assert recorder.calls == []


def test_oversized_input_is_65_and_nothing_handed_on() -> None:
    recorder = Recorder()
    small = Pipeline(filters=(Decide(),), limits=Limits(max_message_size=10))
    code, err = _run(Decide(), recorder, pipeline=small)
    assert code == 65
    assert err.startswith("5.3.4")
    assert recorder.calls == []


def test_discard_exits_0_without_handing_on() -> None:
    recorder = Recorder()
    code, _ = _run(Decide(Outcome(Action.DISCARD, Reply(250, "2.0.0", "dropped"))), recorder)
    assert code == 0
    assert recorder.calls == []


def test_an_internal_error_is_75_and_nothing_handed_on() -> None:
    recorder = Recorder()
    code, err = _run(Boom(), recorder)
    assert code == 75
    assert err.startswith("4.3.0")
    assert recorder.calls == []


@pytest.mark.parametrize(("status", "code", "first"), [
    (HandOnStatus.TEMPORARY, 75, "4.3.0"), (HandOnStatus.PERMANENT, 69, "5.3.0")])
def test_a_failed_hand_on_is_not_success(status: HandOnStatus, code: int, first: str) -> None:
    got, err = _run(Decide(), Recorder(status))
    assert got == code
    assert err.startswith(first)


QUARANTINE = Outcome(Action.QUARANTINE, Reply(250, "2.7.0", "held for review"))


def test_quarantine_stores_message_and_envelope_and_exits_0(tmp_path: Path) -> None:
    recorder = Recorder()
    store = QuarantineStore(tmp_path / "state" / "q")   # state_dir made on first use too
    code, err = _run(Decide(QUARANTINE), recorder, quarantine=store)
    assert code == 0
    assert err == ""
    assert recorder.calls == []
    [entry] = list(store.entries())
    assert entry.recipients == ENVELOPE.rcpt_to
    assert entry.sender == "a@corp.example"
    assert entry.queue_id == "4XyZ1"
    assert store.message(entry.id) == MESSAGE
    for path in (tmp_path / "state" / "q").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (tmp_path / "state", tmp_path / "state" / "q"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_quarantine_without_a_store_or_failing_to_store_is_75(tmp_path: Path) -> None:
    code, err = _run(Decide(QUARANTINE), Recorder())
    assert code == 75
    assert err.startswith("4.7.0")
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _run(Decide(QUARANTINE), Recorder(), quarantine=QuarantineStore(blocker / "q"))
    assert code == 75
    assert err.startswith("4.3.0")


def test_quarantine_ids_from_outside_never_become_paths(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path)
    for bad in ("../etc/passwd", "a" * 31, "A" * 32, ""):
        with pytest.raises(KeyError):
            store.message(bad)


def test_one_log_line_verdict_first_then_queue_id_message_id_sender_count_direction(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        _run(Decide(Outcome(Action.REJECT, Reply(554, "5.7.1", "no"))), Recorder())
    [record] = [r for r in caplog.records if r.name == MESSAGE_LOG]
    line = record.getMessage()
    assert line.startswith("reject 5.7.1 no; queue_id=4XyZ1 message_id=<m1@corp.example> "
                           "sender=<a@corp.example> recipients=3 direction=outbound exit=69")


def test_hand_on_over_smtp_really_arrives_once() -> None:
    with SmtpSink() as sink:
        code, _ = _run(Decide(), SmtpReinjector("127.0.0.1", sink.port))
        [tx] = sink.wait_for(1)
    assert code == 0
    assert tx.recipients == list(ENVELOPE.rcpt_to)
    assert b"X-Filtered: yes" in tx.body


def test_the_log_line_has_the_direction_even_when_filters_fail(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        _run(Boom(), Recorder())
    [record] = [r for r in caplog.records if r.name == MESSAGE_LOG]
    assert "recipients=3 direction=outbound exit=75" in record.getMessage()
