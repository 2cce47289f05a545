"""The pipe transport's split: one copy per group of recipients when a filter asks for it
(Outcome.split_by), handed on only when every group was accepted."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from mailroute.adapters.output import Chunks, pieces_of
from mailroute.adapters.quarantine import QuarantineStore
from mailroute.adapters.reinject import HandOn, HandOnStatus
from mailroute.adapters.transport import TransportRun, run_pipe_transport
from mailroute.errors import UnsafeHeaderValueError
from mailroute.item import Context, Envelope, Filter, MailItem
from mailroute.pipeline import Pipeline
from mailroute.results import Outcome

MESSAGE = b"From: a@corp.example\r\nTo: x\r\nSubject: hi\r\n\r\nbody\r\n"
ENVELOPE = Envelope(mail_from="a@corp.example",
                    rcpt_to=("b@one.example", "c@two.example", "d@one.example"))


@dataclass
class Recorder:
    """A reinjector that records copies; the ``fail_at``-th call fails temporarily."""

    fail_at: int = -1
    calls: list[tuple[bytes, tuple[str, ...]]] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)

    def deliver(self, data: bytes | Chunks, sender: str, recipients: Sequence[str]) -> HandOn:
        self.calls.append((b"".join(pieces_of(data)), tuple(recipients)))
        self.senders.append(sender)
        if len(self.calls) - 1 == self.fail_at:
            return HandOn(HandOnStatus.TEMPORARY, "421 busy")
        return HandOn(HandOnStatus.DELIVERED, "ok")


@dataclass(frozen=True)
class ByDomain:
    """Splits mail to several domains by domain; tags single-domain mail; can refuse one."""

    refuse: str = ""
    groups: tuple[tuple[str, ...], ...] | None = None
    name: str = "by-domain"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        domains = sorted({r.rpartition("@")[2] for r in item.envelope.rcpt_to})
        if len(domains) > 1:
            return Outcome.split_by(self.groups or tuple(
                tuple(r for r in item.envelope.rcpt_to if r.endswith("@" + d))
                for d in domains))
        if domains[0] == self.refuse:
            return Outcome.reject("5.7.1", f"nothing for {self.refuse}", 550)
        return item.evolve(message=item.message.with_header("X-Domain", domains[0]))


def run_transport(step: Filter | None, recorder: Recorder, *, pipeline: Pipeline | None = None,
                  envelope: Envelope = ENVELOPE, data: bytes = MESSAGE,
                  quarantine: QuarantineStore | None = None) -> tuple[int, str]:
    if pipeline is None:
        assert step is not None, "a step or a pipeline"
        pipeline = Pipeline(filters=(step,))
    stderr = io.StringIO()
    run = TransportRun(envelope=envelope, reinjector=recorder, clock=lambda: 1000.0,
                       quarantine=quarantine)
    return run_pipe_transport(pipeline, io.BytesIO(data), stderr, run), stderr.getvalue()


def test_each_group_gets_its_own_copy() -> None:
    recorder = Recorder()
    code, err = run_transport(ByDomain(), recorder)
    assert (code, err) == (0, "")
    assert [(r, d.split(b"\r\n", 1)[0]) for d, r in recorder.calls] == [
        (("b@one.example", "d@one.example"), b"X-Domain: one.example"),
        (("c@two.example",), b"X-Domain: two.example")]


def test_a_refused_group_refuses_the_whole_message_and_nothing_goes() -> None:
    recorder = Recorder()
    code, err = run_transport(ByDomain(refuse="two.example"), recorder)
    assert code == 69
    assert err.startswith("5.7.1 nothing for two.example")
    assert recorder.calls == []


def test_groups_that_are_not_the_envelope_are_a_temporary_failure() -> None:
    recorder = Recorder()
    code, err = run_transport(ByDomain(groups=(("b@one.example",), ("c@two.example",))), recorder)
    assert code == 75
    assert err.startswith("4.7.0 ")
    assert recorder.calls == []


def test_a_failed_second_hand_on_is_a_temporary_failure() -> None:
    recorder = Recorder(fail_at=1)
    code, err = run_transport(ByDomain(), recorder)
    assert code == 75
    assert err.startswith("4.3.0 hand-on failed after 1 of 2 copies: 421 busy")


def test_the_notification_cannot_carry_header_fields_of_the_held_message() -> None:
    from mailroute.adapters.notify import held_notification
    from mailroute.mime import parse
    notice = held_notification(sender="a@corp.example", subject="hi\r\nBcc: x@evil.example",
                               recipients=("b@one.example",), reason="held\r\nX-Evil: 1",
                               quarantine_id="q1", now=1000.0)
    message = parse(notice)
    assert message.headers.get("Bcc") is None
    assert message.headers.get("X-Evil") is None
    assert message.headers.value("Subject") == "Held, not delivered: hi Bcc: x@evil.example"
    assert message.headers.value("To") == "<a@corp.example>"


def test_the_notification_to_a_utf8_address_names_it_in_utf8() -> None:
    """RFC 6532: the notice to an internationalised address goes with SMTPUTF8, and its
    address fields carry the address as UTF-8; an encoded word is no address at all."""
    from mailroute.adapters.notify import held_notification
    from mailroute.mime import parse
    notice = held_notification(sender="jürgen@bäckerei.example", subject="Brötchen",
                               recipients=("b@one.example",), reason="held",
                               quarantine_id="q1", now=1000.0)
    message = parse(notice)
    assert message.headers.value("To") == "<jürgen@bäckerei.example>"
    assert message.headers.value("From") == "Mail gateway <postmaster@bäckerei.example>"
    assert b"=?" not in notice.split(b"\r\nSubject:")[0]
    with pytest.raises(UnsafeHeaderValueError):   # UTF-8 is no way around the checks
        held_notification(sender="ü@b.example>\r\nBcc: <x@evil.example", subject="",
                          recipients=(), reason="", quarantine_id="q", now=0.0)
