"""How ``mailroute serve`` talks to the next hop: MAIL answered here and sent with the first
RCPT (pipelined when the next hop offers PIPELINING), pooled connections and their limits."""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mailroute.pipeline import Pipeline
from tests.mta.common import free_port
from tests.serve.harness import MESSAGE, InProcess
from tests.smtpsink import SmtpSink


def test_mail_refused_by_the_next_hop_is_the_answer_to_every_recipient() -> None:
    with SmtpSink(mail_reply="550 5.7.1 sender not allowed here") as sink, \
            InProcess(Pipeline(), sink.port) as serve, serve.client() as smtp:
        smtp.ehlo()
        assert smtp.mail("alice@corp.example")[0] == 250     # answered by us
        for rcpt in ("bob@partner.example", "carol@partner.example", "dan@partner.example"):
            assert smtp.rcpt(rcpt) == (550, b"5.7.1 sender not allowed here")
        assert smtp.docmd("DATA")[0] == 503                   # no recipient accepted
    assert sink.delivered == []
    assert [c for c in sink.commands if c.startswith("MAIL")] == \
        ["MAIL FROM:<alice@corp.example>"]                    # asked once, not per RCPT


def test_a_temporary_mail_refusal_is_a_temporary_refusal_of_each_recipient() -> None:
    with SmtpSink(mail_reply="451 4.3.0 try later") as sink, \
            InProcess(Pipeline(), sink.port) as serve, \
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        serve.send(recipients=["bob@partner.example", "carol@partner.example"])
    assert refused.value.recipients == {"bob@partner.example": (451, b"4.3.0 try later"),
                                        "carol@partner.example": (451, b"4.3.0 try later")}


def test_without_pipelining_at_the_next_hop_mail_and_rcpt_go_one_by_one() -> None:
    with SmtpSink(pipelining=False) as sink, InProcess(Pipeline(), sink.port) as serve:
        assert serve.send(recipients=["bob@partner.example", "carol@partner.example"]) == {}
        delivered = sink.wait_for(1)
    assert delivered[0].recipients == ["bob@partner.example", "carol@partner.example"]


class HoldsMailReply:
    """A next hop that offers PIPELINING and answers MAIL only once the RCPT that follows
    it has arrived too: a client that waits for the MAIL reply before sending RCPT gets
    nothing (and its command timeout)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.before_mail_reply = b""
        self.delivered = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as reader:
            conn.sendall(b"220 hold.test ESMTP\r\n")
            reader.readline()                                    # EHLO
            conn.sendall(b"250-hold.test\r\n250 PIPELINING\r\n")
            mail, rcpt = reader.readline(), reader.readline()    # both before any reply
            self.before_mail_reply = mail + rcpt
            conn.sendall(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n")
            reader.readline()                                    # DATA
            conn.sendall(b"354 go\r\n")
            while reader.readline() not in (b".\r\n", b""):
                pass
            conn.sendall(b"250 2.0.0 queued as H1\r\n")
            self.delivered.set()
            reader.readline()

    @contextmanager
    def running(self) -> Iterator[HoldsMailReply]:
        self._thread.start()
        try:
            yield self
        finally:
            self.listener.close()


def test_mail_and_the_first_rcpt_reach_a_pipelining_next_hop_in_one_flight() -> None:
    from mailroute.adapters.smtp_client import NextHopTimeouts

    with HoldsMailReply().running() as hop, \
            InProcess(Pipeline(), hop.port, timeouts=NextHopTimeouts(command=3.0)) as serve:
        assert serve.send() == {}
        assert hop.delivered.wait(5)
    assert hop.before_mail_reply == (b"MAIL FROM:<alice@corp.example>\r\n"
                                     b"RCPT TO:<bob@partner.example>\r\n")


def test_after_a_421_the_next_hops_connection_is_dropped_not_used_again_or_pooled() -> None:
    replies = {"closing@partner.example": "421 4.3.2 shutting down"}
    with SmtpSink(rcpt_replies=replies) as sink, InProcess(Pipeline(), sink.port) as serve:
        with serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("alice@corp.example")
            assert smtp.rcpt("closing@partner.example") == (421, b"4.3.2 shutting down")
            assert smtp.rcpt("bob@partner.example")[0] == 451   # that connection is gone
            assert smtp.rset()[0] == 250
        assert serve.send() == {}
        assert len(sink.wait_for(1)) == 1
    assert sink.commands.count("EHLO mailroute.localdomain") == 2


def test_a_next_hop_that_timed_out_is_not_pooled() -> None:
    from mailroute.adapters.smtp_client import NextHopTimeouts

    quick = NextHopTimeouts(data_end=0.5)
    with SmtpSink(data_delay=1.5) as sink, \
            InProcess(Pipeline(), sink.port, timeouts=quick) as serve:
        with serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("alice@corp.example")
            smtp.rcpt("bob@partner.example")
            assert smtp.data(MESSAGE)[0] == 451
        sink.data_delay = 0.0
        assert serve.send() == {}
        assert len(sink.wait_for(2)) == 2     # the slow one was confirmed late: a duplicate
    assert sink.commands.count("EHLO mailroute.localdomain") == 2


def test_a_next_hop_that_is_down_is_tried_once_per_transaction_not_per_recipient() -> None:
    accepted = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def refuse() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                accepted.append(conn)
                conn.close()                     # no greeting: the next hop is broken

        threading.Thread(target=refuse, daemon=True).start()
        with InProcess(Pipeline(), listener.getsockname()[1]) as serve, \
                pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            serve.send(recipients=["a@partner.example", "b@partner.example",
                                   "c@partner.example"])
    assert {code for code, _ in refused.value.recipients.values()} == {451}
    assert len(refused.value.recipients) == 3
    assert len(accepted) == 1


def test_a_next_hop_that_is_down_is_logged_once_per_attempt(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="mailroute.serve")
    with InProcess(Pipeline(), free_port()) as serve, \
            pytest.raises(smtplib.SMTPRecipientsRefused):
        serve.send(recipients=["a@partner.example", "b@partner.example"])
    warnings = [r.getMessage() for r in caplog.records if r.name == "mailroute.serve"]
    assert len(warnings) == 1
    assert warnings[0].startswith("next hop 127.0.0.1:")
    assert "cannot connect" in warnings[0]


def test_xforward_facts_belong_to_their_transaction_not_to_the_pooled_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mailroute.messages")
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve:
        with serve.client() as smtp:
            smtp.ehlo()
            assert smtp.docmd("XFORWARD", "ADDR=192.0.2.7 HELO=first.example")[0] == 250
            smtp.sendmail("alice@corp.example", ["bob@partner.example"], MESSAGE)
            smtp.sendmail("alice@corp.example", ["carol@partner.example"], MESSAGE)
        with serve.client() as smtp:          # the same next-hop connection, another client
            smtp.ehlo()
            assert smtp.docmd("XFORWARD", "ADDR=192.0.2.8 HELO=second.example")[0] == 250
            smtp.sendmail("alice@corp.example", ["dan@partner.example"], MESSAGE)
        sink.wait_for(3)
    lines = [r.getMessage() for r in caplog.records if r.name == "mailroute.messages"]
    assert len(lines) == 3
    assert "client=192.0.2.7 helo=first.example" in lines[0]
    assert "client=127.0.0.1 helo=client.test" in lines[1]     # XFORWARD was for one
    assert "client=192.0.2.8 helo=second.example" in lines[2]
    assert sink.commands.count("EHLO mailroute.localdomain") == 1


UTF8_SUBJECT = MESSAGE.replace(b"Subject: hello", "Subject: Grüße".encode())


def _mail_commands(sink: SmtpSink) -> list[str]:
    return [c for c in sink.commands if c.startswith("MAIL")]


@pytest.mark.parametrize("utf8_next_hop", [False, True], ids=["without", "with"])
def test_smtputf8_for_ascii_mail_reaches_a_next_hop_with_or_without_smtputf8(
        utf8_next_hop: bool) -> None:
    """Some clients ask for SMTPUTF8 whenever it is offered: ASCII mail still goes on."""
    with SmtpSink(smtputf8=utf8_next_hop) as sink, InProcess(Pipeline(), sink.port) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        assert smtp.mail("alice@corp.example", ["SMTPUTF8"])[0] == 250
        assert smtp.rcpt("bob@partner.example")[0] == 250
        assert smtp.data(MESSAGE)[0] == 250
        delivered = sink.wait_for(1)
    assert len(delivered) == 1
    assert b"Hello Bob." in delivered[0].body
    expected = " SMTPUTF8" if utf8_next_hop else ""
    assert _mail_commands(sink) == [f"MAIL FROM:<alice@corp.example>{expected}"]


def test_a_utf8_header_towards_a_next_hop_without_smtputf8_is_refused_at_the_dot() -> None:
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        smtp.mail("alice@corp.example", ["SMTPUTF8"])
        assert smtp.rcpt("bob@partner.example")[0] == 250
        code, text = smtp.data(UTF8_SUBJECT)
    assert (code, text[:6]) == (554, b"5.6.9 ")
    assert sink.delivered == []
    assert "RSET" in sink.commands                     # the next hop's transaction ended


def test_a_utf8_header_reaches_a_next_hop_with_smtputf8() -> None:
    with SmtpSink(smtputf8=True) as sink, InProcess(Pipeline(), sink.port) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        smtp.mail("alice@corp.example", ["SMTPUTF8"])
        smtp.rcpt("bob@partner.example")
        assert smtp.data(UTF8_SUBJECT)[0] == 250
        delivered = sink.wait_for(1)
    assert "Subject: Grüße".encode() in delivered[0].body


def test_a_utf8_body_needs_no_smtputf8() -> None:
    body = MESSAGE.replace(b"Hello Bob.", "Grüße, Bob.".encode())
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, \
            serve.client() as smtp:
        smtp.ehlo()
        smtp.mail("alice@corp.example", ["SMTPUTF8", "BODY=8BITMIME"])
        smtp.rcpt("bob@partner.example")
        assert smtp.data(body)[0] == 250
        delivered = sink.wait_for(1)
    assert "Grüße, Bob.".encode() in delivered[0].body
    assert _mail_commands(sink) == ["MAIL FROM:<alice@corp.example> BODY=8BITMIME"]


def test_non_ascii_addresses_towards_a_next_hop_without_smtputf8_are_refused_alone() -> None:
    """The sender: every recipient refused; a later recipient: that one alone."""
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve:
        with serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("jürgen@corp.example", ["SMTPUTF8"])
            assert smtp.rcpt("bob@partner.example")[0] == 553
        with serve.client() as smtp:
            smtp.ehlo()
            smtp.mail("alice@corp.example", ["SMTPUTF8"])
            assert smtp.rcpt("bob@partner.example")[0] == 250
            code, text = smtp.rcpt("zoë@partner.example")
            assert (code, text[:6]) == (553, b"5.6.7 ")
            assert smtp.data(MESSAGE)[0] == 250
        delivered = sink.wait_for(1)
    assert [t.recipients for t in delivered] == [["bob@partner.example"]]
