"""``mailroute serve`` on loopback: client -> serve -> sink, the lossless rules and faults."""

from __future__ import annotations

import smtplib
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

import pytest

from mailroute.adapters.smtp_client import NextHopTimeouts
from mailroute.item import Context, MailItem
from mailroute.pipeline import Pipeline
from mailroute.policy import load_policy
from mailroute.results import Outcome
from tests.mta.common import free_port
from tests.serve.harness import MESSAGE, InProcess
from tests.smtpsink import SmtpSink


@pytest.fixture
def disclaimer_policy(tmp_path: Path) -> Pipeline:
    (tmp_path / "d.txt").write_text("-- \nDISCLAIMER-TEXT from corp\n")
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "disclaimer"\ntext = "d.txt"\n')
    return load_policy(policy)


@dataclass(frozen=True)
class Raises:
    error: BaseException
    name: str = "raises"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        raise self.error


@dataclass(frozen=True)
class Slow:
    seconds: float
    name: str = "slow"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        time.sleep(self.seconds)
        return item


def test_processed_mail_arrives_exactly_once_with_the_envelope(
        disclaimer_policy: Pipeline) -> None:
    with SmtpSink() as sink, InProcess(disclaimer_policy, sink.port) as serve:
        refused = serve.send(recipients=["bob@partner.example", "carol@partner.example"])
        delivered = sink.wait_for(1)
    assert refused == {}
    assert len(delivered) == 1
    got = delivered[0]
    assert got.sender == "alice@corp.example"
    assert got.recipients == ["bob@partner.example", "carol@partner.example"]
    assert b"DISCLAIMER-TEXT from corp" in got.body
    assert b"\r\n.leading dot line\r\n" in got.body      # unstuffed once, stuffed again
    assert b"\r\n..leading dot line\r\n" in got.raw        # on the wire: stuffed
    assert got.body.startswith(b"From: Alice <alice@corp.example>\r\n")


def test_the_final_reply_is_250_only_after_the_next_hop_said_250() -> None:
    with SmtpSink(data_reply="554 5.7.1 content refused by sink") as sink, \
            InProcess(Pipeline(), sink.port) as serve, serve.client() as smtp:
        smtp.ehlo()
        smtp.mail("alice@corp.example")
        smtp.rcpt("bob@partner.example")
        code, text = smtp.data(MESSAGE)
    assert (code, text) == (554, b"5.7.1 content refused by sink")


def test_next_hop_down_is_451_and_the_retry_arrives_once() -> None:
    port = free_port()
    down = (451, b"4.4.1 next hop not available, try again later")
    with InProcess(Pipeline(), port) as serve:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            serve.send(recipients=["bob@partner.example", "carol@partner.example"])
        assert refused.value.recipients == {"bob@partner.example": down,
                                            "carol@partner.example": down}
        with SmtpSink(port=port) as sink:
            assert serve.send() == {}
            delivered = sink.wait_for(1)
            time.sleep(0.2)
            assert len(sink.delivered) == 1
    assert b"Hello Bob." in delivered[0].body


def test_each_recipient_gets_the_next_hops_answer() -> None:
    replies = {"nobody@partner.example": "550 5.1.1 <nobody@partner.example>: no such user"}
    with SmtpSink(rcpt_replies=replies) as sink, InProcess(Pipeline(), sink.port) as serve:
        refused = serve.send(recipients=["bob@partner.example", "nobody@partner.example",
                                         "carol@partner.example"])
        delivered = sink.wait_for(1)
    assert refused == {"nobody@partner.example":
                       (550, b"5.1.1 <nobody@partner.example>: no such user")}
    assert len(delivered) == 1
    assert delivered[0].recipients == ["bob@partner.example", "carol@partner.example"]


def test_a_temporary_recipient_refusal_is_passed_on_as_4xx() -> None:
    replies = {"full@partner.example": "452 4.2.2 mailbox full"}
    with SmtpSink(rcpt_replies=replies) as sink, InProcess(Pipeline(), sink.port) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        smtp.mail("alice@corp.example")
        assert smtp.rcpt("full@partner.example") == (452, b"4.2.2 mailbox full")


@pytest.mark.parametrize("error", [RuntimeError("secret internal detail /etc/x"),
                                   MemoryError("secret internal detail")],
                         ids=["exception", "memory-error"])
def test_a_failing_filter_is_451_without_internal_text_and_nothing_is_delivered(
        error: BaseException) -> None:
    with SmtpSink() as sink, InProcess(Pipeline(filters=(Raises(error),)), sink.port) as serve:
        with serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("alice@corp.example")
            smtp.rcpt("bob@partner.example")
            code, text = smtp.data(MESSAGE)
            # the session goes on: the next transaction works (and fails the same way)
            assert smtp.noop()[0] == 250
        time.sleep(0.2)
        assert sink.delivered == []
        assert "RSET" in sink.commands
    assert code == 451
    assert text.startswith(b"4.3.0 internal error, reference ")
    assert b"secret" not in text
    assert b"Error" not in text


def test_an_unexpected_error_outside_the_policy_is_451_not_aiosmtpds_500(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mailroute.adapters import serve as serve_module

    def broken(*args: object, **kwargs: object) -> bytes:
        raise ValueError("internal detail")

    monkeypatch.setattr(serve_module, "to_wire", broken)
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, serve.client() as smtp:
        smtp.ehlo()
        smtp.mail("alice@corp.example")
        smtp.rcpt("bob@partner.example")
        code, text = smtp.data(MESSAGE)
    assert code == 451
    assert text.startswith(b"4.3.0 internal error, reference ")
    assert b"detail" not in text


def test_a_next_hop_that_does_not_greet_in_time_is_451_and_nothing_is_delivered() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        quick = NextHopTimeouts(connect=0.5, command=0.5)
        with InProcess(Pipeline(), silent.getsockname()[1], timeouts=quick) as serve:
            start = time.monotonic()
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                serve.send()
            elapsed = time.monotonic() - start
    assert refused.value.recipients["bob@partner.example"][0] == 451
    assert elapsed < 10


def test_a_next_hop_slow_to_confirm_the_message_gets_451_never_250() -> None:
    quick = NextHopTimeouts(data_end=0.5)
    with SmtpSink(data_delay=2.0) as sink, \
            InProcess(Pipeline(), sink.port, timeouts=quick) as serve, serve.client() as smtp:
        smtp.ehlo()
        smtp.mail("alice@corp.example")
        smtp.rcpt("bob@partner.example")
        code, text = smtp.data(MESSAGE)
    assert (code, text) == (451, b"4.4.2 next hop connection lost, try again later")


def test_a_policy_that_runs_too_long_is_451(tmp_path: Path) -> None:
    with SmtpSink() as sink, InProcess(Pipeline(filters=(Slow(2.0),)), sink.port,
                                       processing_timeout=0.3, inline_size=0) as serve:
        with serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("alice@corp.example")
            smtp.rcpt("bob@partner.example")
            code, _ = smtp.data(MESSAGE)
        time.sleep(0.2)
        assert sink.delivered == []
    assert code == 451


def test_dns_timeout_in_the_policy_is_451_and_nothing_is_delivered(tmp_path: Path) -> None:
    (tmp_path / "dns.txt").write_text("_dmarc.corp.example TIMEOUT\n")
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "dkim-verify"\ndns_file = "dns.txt"\n'
                      'accepted_domains = ["corp.example"]\non_spoof = "reject"\n')
    with SmtpSink() as sink, InProcess(load_policy(policy), sink.port) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        smtp.mail("alice@corp.example")
        smtp.rcpt("bob@partner.example")
        code, text = smtp.data(MESSAGE)
        time.sleep(0.2)
        assert sink.delivered == []
    assert code == 451, text


def test_a_policy_rejection_is_answered_in_session_and_nothing_is_handed_on(
        tmp_path: Path) -> None:
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, serve.client() as smtp:
        smtp.ehlo()
        smtp.mail("alice@corp.example")
        smtp.rcpt("bob@partner.example")
        code, text = smtp.data(b"From: a@corp.example\r\nContent-Type: multipart/mixed\r\n"
                               b"Content-Type: text/plain\r\n\r\nambiguous\r\n")
        time.sleep(0.2)
        assert sink.delivered == []
    assert code == 554
    assert text.startswith(b"5.6.0")


def test_a_message_over_the_size_limit_is_refused_at_mail_and_at_data(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[limits]\nmax_message_size = 20000\n")
    with SmtpSink() as sink, InProcess(load_policy(policy), sink.port) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        assert smtp.has_extn("size")
        assert smtp.esmtp_features["size"] == "20000"
        assert smtp.mail("alice@corp.example", ["SIZE=30000"]) == (552, b"5.3.4 message too big")
        smtp.rset()
        smtp.mail("alice@corp.example")
        smtp.rcpt("bob@partner.example")
        code, _ = smtp.data(MESSAGE + b"x" * 30000 + b"\r\n")
        time.sleep(0.2)
        assert sink.delivered == []
    assert code == 552


def test_extensions_and_a_large_message_spooled_to_disk(tmp_path: Path) -> None:
    big = MESSAGE + (b"0123456789" * 99 + b"\r\n") * 3000   # about 3 MB
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port, spool_above=64 * 1024,
                                       spool_dir=tmp_path) as serve, serve.client() as smtp:
        smtp.ehlo()
        for extension in ("size", "8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes"):
            assert smtp.has_extn(extension), extension
        assert not smtp.has_extn("auth")
        assert smtp.sendmail("alice@corp.example", ["bob@partner.example"], big,
                             mail_options=["BODY=8BITMIME"]) == {}
        delivered = sink.wait_for(1)
    assert delivered[0].body == big
    assert list(tmp_path.iterdir()) == []   # the spool file is gone


def test_xforward_from_postfix_is_what_the_log_line_shows(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mailroute.messages")
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, serve.client() as smtp:
        smtp.ehlo()
        assert smtp.has_extn("xforward")
        assert smtp.docmd("XFORWARD", "NAME=mx.sender.example ADDR=192.0.2.7 "
                                      "HELO=mx+2Esender.example")[0] == 250
        smtp.sendmail("alice@corp.example", ["bob@partner.example"], MESSAGE)
        sink.wait_for(1)
    lines = [r.getMessage() for r in caplog.records if r.name == "mailroute.messages"]
    assert len(lines) == 1
    assert lines[0].startswith("accept 2.0.0 Ok: next hop said: 2.0.0 queued; ")
    assert "message_id=<m1@corp.example> sender=<alice@corp.example> recipients=1" in lines[0]
    assert "client=192.0.2.7 helo=mx.sender.example client_name=mx.sender.example" in lines[0]


def test_xclient_from_a_proxy_names_the_client_for_the_whole_session(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mailroute.messages")
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, serve.client() as smtp:
        smtp.ehlo()
        assert smtp.has_extn("xclient")
        code, _text = smtp.docmd("XCLIENT", "ADDR=192.0.2.9 HELO=relay.partner.example "
                                            "LOGIN=anna NAME=[UNAVAILABLE]")
        assert code == 220   # a new greeting: the session starts over as that client
        smtp.ehlo()
        smtp.sendmail("anna@corp.example", ["bob@partner.example"], MESSAGE)
        smtp.sendmail("anna@corp.example", ["carl@partner.example"], MESSAGE)
        sink.wait_for(2)
    lines = [r.getMessage() for r in caplog.records if r.name == "mailroute.messages"]
    assert len(lines) == 2
    for line in lines:   # the facts hold for every transaction of the session
        assert "sasl_user=anna client=192.0.2.9 helo=relay.partner.example" in line
        assert "client_name=" not in line


def test_xclient_from_an_untrusted_client_is_refused() -> None:
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port,
                                       xforward_hosts=("192.0.2.0/24",)) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("xclient")
        assert smtp.docmd("XCLIENT", "ADDR=192.0.2.9")[0] == 550


def test_xforward_from_an_untrusted_client_is_refused() -> None:
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port,
                                       xforward_hosts=("192.0.2.0/24",)) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("xforward")
        assert smtp.docmd("XFORWARD", "ADDR=192.0.2.7")[0] == 550


def _pipelined_to_data(raw: socket.socket) -> BinaryIO:
    """EHLO, MAIL, RCPT and DATA in one write, as Exim pipelines them; the reader after 354."""
    reader = raw.makefile("rb")
    reader.readline()
    raw.sendall(b"EHLO client.test\r\nMAIL FROM:<alice@corp.example>\r\n"
                b"RCPT TO:<bob@partner.example>\r\nDATA\r\n")
    replies: list[bytes] = []
    while len(replies) < 4:
        line = reader.readline()
        if line[3:4] != b"-":
            replies.append(line[:3])
    assert replies == [b"250", b"250", b"250", b"354"]
    return reader


def test_a_client_that_half_closes_after_a_pipelined_quit_still_gets_its_answer() -> None:
    """Exim sends QUIT right after the final dot and shuts its side down (found with the
    Exim recipe: aiosmtpd cancelled the session and with it the hand-on)."""
    with SmtpSink() as sink, InProcess(Pipeline(filters=(Slow(0.5),)), sink.port) as serve, \
            socket.create_connection(("127.0.0.1", serve.port), timeout=10) as raw:
        reader = _pipelined_to_data(raw)
        raw.sendall(MESSAGE + b".\r\nQUIT\r\n")
        raw.shutdown(socket.SHUT_WR)
        answers = reader.read()
        assert len(sink.wait_for(1)) == 1
    assert answers.startswith(b"250 2.0.0 Ok: next hop said: 2.0.0 queued\r\n")
    assert answers.endswith(b"221 2.0.0 Bye\r\n")


@pytest.mark.parametrize("case", ["reject", "cut-off"])
def test_a_half_closing_client_gets_a_refusal_and_a_cut_off_one_is_let_go(case: str) -> None:
    """The same with a message the policy refuses: answered at once, then RSET went to the
    next hop, and an EOF that came in between lost the answer (found with the Exim recipe).
    A client that half-closes before its final dot is let go: nothing is handed on."""
    message = (b"From: a@corp.example\r\nContent-Type: multipart/mixed\r\n"
               b"Content-Type: text/plain\r\n\r\nambiguous\r\n.\r\nQUIT\r\n"
               if case == "reject" else MESSAGE)
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, \
            socket.create_connection(("127.0.0.1", serve.port), timeout=10) as raw:
        reader = _pipelined_to_data(raw)
        raw.sendall(message)
        raw.shutdown(socket.SHUT_WR)
        answers = reader.read()   # the server closes its side too (else: socket timeout)
        time.sleep(0.2)
        assert sink.delivered == []
    if case == "reject":
        assert answers.startswith(b"554 5.6.0 ")
        assert answers.endswith(b"221 2.0.0 Bye\r\n")
    else:
        assert answers == b""


@dataclass
class SeesSender:
    seen: list[str]
    name: str = "sees-sender"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        self.seen.append(item.envelope.mail_from)
        return item


def test_a_bounce_keeps_the_null_sender_for_the_policy_and_the_next_hop() -> None:
    """MAIL FROM:<> is the empty sender: aiosmtpd hands it over as "<>", which was passed
    on as MAIL FROM:<<>> (Exim refuses that with 501, so bounces through serve froze)."""
    seen: list[str] = []
    with SmtpSink() as sink, InProcess(Pipeline(filters=(SeesSender(seen),)),
                                       sink.port) as serve:
        refused = serve.send(sender="")
        delivered = sink.wait_for(1)
    assert refused == {}
    assert seen == [""]
    assert delivered[0].sender == ""
    assert "MAIL FROM:<>" in sink.commands


def test_next_hop_connections_are_reused_across_client_sessions() -> None:
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve:
        for _ in range(3):
            assert serve.send() == {}
        assert len(sink.wait_for(3)) == 3
        assert sink.commands.count("EHLO mailroute.localdomain") == 1


def test_an_idle_next_hop_connection_closed_meanwhile_is_replaced_transparently() -> None:
    port = free_port()
    with InProcess(Pipeline(), port) as serve:
        with SmtpSink(port=port) as first:
            assert serve.send() == {}
            assert len(first.wait_for(1)) == 1
        with SmtpSink(port=port) as second:      # the pooled connection died with `first`
            assert serve.send() == {}
            assert len(second.wait_for(1)) == 1


def test_a_bare_lf_message_from_smtplib_keeps_its_leading_dots() -> None:
    """smtplib sends a bytes message with its LF line ends and stuffs the dot after each
    LF; serve passed the stuffing dot on as content (".leading" arrived as "..leading")."""
    message = b"From: a@corp.example\nSubject: dots\n\n.leading\nmiddle\n..two\n"
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve:
        assert serve.send(message) == {}
        [delivered] = sink.wait_for(1)
    # (smtplib adds a CRLF to data that does not end in one: the last line is its)
    assert delivered.body.startswith(b"From: a@corp.example\r\nSubject: dots\r\n\r\n"
                                     b".leading\r\nmiddle\r\n..two\r\n")


def test_the_log_line_says_how_long_the_message_took() -> None:
    """duration_ms was always 0.0 (no start time was taken), and so the duration metric."""
    from mailroute.adapters.messagelog import MessageLog

    lines: list[str] = []
    with SmtpSink() as sink, InProcess(Pipeline(filters=(Slow(0.3),)), sink.port) as serve:
        serve.service.message_log = MessageLog(sink=lines.append)
        assert serve.send() == {}
        sink.wait_for(1)
    [line] = lines
    duration = float(line.rsplit("duration_ms=", 1)[1].split()[0])
    assert 300 <= duration < 30_000


def test_a_client_gone_in_the_middle_of_data_is_no_internal_error(
        caplog: pytest.LogCaptureFixture) -> None:
    """An ERROR "session failed" with a traceback was logged for a plain disconnect."""
    caplog.set_level("INFO", logger="mailroute.serve")
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, \
            socket.create_connection(("127.0.0.1", serve.port), timeout=10) as raw:
        _pipelined_to_data(raw)
        raw.sendall(b"Subject: cut\r\n\r\nhalf a mess")
        raw.close()
        time.sleep(0.3)
        assert sink.delivered == []
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


@dataclass(frozen=True)
class SlowLookup(Slow):
    """A filter that waits on the outside world (as dkim-verify waits on DNS)."""

    blocking: ClassVar[bool] = True


def test_a_policy_that_waits_runs_off_the_loop_under_the_timeout_even_for_small_mail() -> None:
    """A small message whose policy waits (DNS, gpg) runs in the pool: the other sessions
    are served meanwhile, and --processing-timeout answers 451 in time."""
    with SmtpSink() as sink, InProcess(Pipeline(filters=(SlowLookup(3.0),)), sink.port,
                                       processing_timeout=0.5) as serve:
        with serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("alice@corp.example")
            smtp.rcpt("bob@partner.example")
            smtp.putcmd("data")
            assert smtp.getreply()[0] == 354
            smtp.send(MESSAGE + b".\r\n")   # small: under the inline size
            started = time.monotonic()
            with serve.client(timeout=2.0) as other:   # greeted while the policy runs
                assert other.noop()[0] == 250
            greeted = time.monotonic() - started
            code, _ = smtp.getreply()
            answered = time.monotonic() - started
        assert sink.delivered == []
    assert code == 451
    assert greeted < 0.4
    assert answered < 2.0


@pytest.mark.parametrize("control", ["\x00", "\r", "\t", "\x1b", "\x7f"],
                         ids=["nul", "cr", "tab", "esc", "del"])
def test_an_address_with_a_control_character_is_refused_at_its_command(control: str) -> None:
    """A control character in MAIL or RCPT is no address: 553 there, nothing reaches the
    next hop; the session goes on. Found by the serve audit (NUL) and after it (CR and TAB
    had been read as spaces: another address went to the next hop)."""
    malformed = (553, b"5.1.3 Error: malformed address")
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, serve.client() as smtp:
        smtp.ehlo()
        smtp.send(f"MAIL FROM:<a{control}b@corp.example>\r\n")
        assert smtp.getreply() == malformed
        assert smtp.mail("alice@corp.example")[0] == 250
        smtp.send(f"RCPT TO:<bob@partner{control}.example>\r\n")
        assert smtp.getreply() == malformed
        smtp.send(f"RCPT TO:<b{control}ob@partner.example>\r\n")
        assert smtp.getreply() == malformed
        assert smtp.rcpt("bob@partner.example")[0] == 250
        assert smtp.data(MESSAGE)[0] == 250
        time.sleep(0.2)
    assert [c for c in sink.commands if c.startswith(("MAIL", "RCPT"))] == [
        "MAIL FROM:<alice@corp.example>", "RCPT TO:<bob@partner.example>"]
    assert [m.recipients for m in sink.delivered] == [["bob@partner.example"]]
