"""The hand-on: one all-or-nothing SMTP transaction, or sendmail -G -i -f SENDER -- RCPT…"""

from __future__ import annotations

import os
import smtplib
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroute.adapters.reinject import (
    HandOnStatus,
    SendmailReinjector,
    SmtpReinjector,
    header_is_ascii,
    parse_reinject,
    wire_format,
    wire_pieces,
)
from tests.smtpsink import SmtpSink

MESSAGE = (b"From: a@corp.example\nTo: b@partner.example\nSubject: dots\n\n"
           b"first line\n.starts with a dot\n..two dots\n.\nlast line\n")
RCPTS = ("b@partner.example", "c@partner.example", "d@corp.example")


def test_every_recipient_in_one_transaction_with_crlf_and_dot_stuffing() -> None:
    with SmtpSink() as sink:
        handon = SmtpReinjector("127.0.0.1", sink.port).deliver(MESSAGE, "a@corp.example", RCPTS)
        assert handon.ok, handon.detail
        [tx] = sink.wait_for(1)
    assert tx.sender == "a@corp.example"
    assert tx.recipients == list(RCPTS)
    assert b"\n" not in tx.raw.replace(b"\r\n", b"")          # CRLF only on the wire
    assert b"\r\n..starts with a dot\r\n...two dots\r\n..\r\n" in tx.raw   # dot-stuffed
    assert tx.body == MESSAGE.replace(b"\n", b"\r\n")


def test_null_sender_is_sent_as_empty_path() -> None:
    with SmtpSink() as sink:
        assert SmtpReinjector("127.0.0.1", sink.port).deliver(MESSAGE, "", RCPTS[:1]).ok
        assert "MAIL FROM:<>" in " ".join(sink.commands)


@pytest.mark.parametrize(("replies", "status"), [
    ({"c@partner.example": "450 4.2.1 busy"}, HandOnStatus.TEMPORARY),
    ({"c@partner.example": "550 5.1.1 unknown"}, HandOnStatus.PERMANENT),
    ({"c@partner.example": "550 5.1.1 unknown", "d@corp.example": "451 4.3.0 later"},
     HandOnStatus.TEMPORARY),
])
def test_a_refused_recipient_hands_on_nothing(replies: dict[str, str],
                                              status: HandOnStatus) -> None:
    with SmtpSink(rcpt_replies=replies) as sink:
        handon = SmtpReinjector("127.0.0.1", sink.port).deliver(MESSAGE, "a@corp.example", RCPTS)
        assert handon.status is status
        assert "nothing handed on" in handon.detail
        assert sink.delivered == []
        assert "RSET" in sink.commands
        assert "DATA" not in sink.commands


def test_failure_after_data_is_temporary() -> None:
    with SmtpSink(data_reply="554 5.6.0 no thanks") as sink:
        handon = SmtpReinjector("127.0.0.1", sink.port).deliver(MESSAGE, "a@corp.example", RCPTS)
    assert handon.status is HandOnStatus.TEMPORARY


def test_data_refused_before_the_content_is_temporary() -> None:
    with SmtpSink(data_command_reply="451 4.3.0 not now") as sink:
        handon = SmtpReinjector("127.0.0.1", sink.port).deliver(MESSAGE, "a@corp.example", RCPTS)
    assert handon.status is HandOnStatus.TEMPORARY
    assert handon.detail == "DATA refused: 451 4.3.0 not now"
    assert sink.delivered == []


def test_no_listener_is_temporary() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handon = SmtpReinjector("127.0.0.1", port, timeout=5).deliver(MESSAGE, "a@x.example", RCPTS)
    assert handon.status is HandOnStatus.TEMPORARY


def test_wire_format_normalises_line_ends_only() -> None:
    assert wire_format(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\rd"


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sendmail"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_sendmail_gets_the_envelope_as_arguments_and_the_message_on_stdin(tmp_path: Path
                                                                           ) -> None:
    out = tmp_path / "out"
    script = _script(tmp_path, f'printf "%s\\n" "$@" > {out}.args; cat > {out}.eml\n')
    handon = SendmailReinjector(str(script)).deliver(MESSAGE, "", RCPTS)
    assert handon.ok
    args = Path(f"{out}.args").read_text().splitlines()
    assert args == ["-G", "-i", "-f", "<>", "--", *RCPTS]
    assert Path(f"{out}.eml").read_bytes() == MESSAGE


def test_sendmail_failure_or_timeout_is_temporary(tmp_path: Path) -> None:
    failing = _script(tmp_path, "echo 'postdrop: no way' >&2; exit 69\n")
    handon = SendmailReinjector(str(failing)).deliver(MESSAGE, "a@x.example", RCPTS)
    assert handon.status is HandOnStatus.TEMPORARY
    assert "postdrop: no way" in handon.detail
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o700)
    handon = SendmailReinjector(str(slow), timeout=0.5).deliver(MESSAGE, "a@x.example", RCPTS)
    assert handon.status is HandOnStatus.TEMPORARY
    assert "timed out" in handon.detail
    missing = SendmailReinjector(os.fspath(tmp_path / "absent")).deliver(MESSAGE, "", RCPTS)
    assert missing.status is HandOnStatus.TEMPORARY


@pytest.mark.parametrize("spec", ["smtp:127.0.0.1", "smtp::25", "smtp:h:99999", "lmtp:h:1",
                                  "sendmail:relative/path"])
def test_parse_reinject_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=r"sendmail|smtp"):
        parse_reinject(spec)


def test_parse_reinject_forms() -> None:
    assert parse_reinject("sendmail") == SendmailReinjector()
    assert parse_reinject("sendmail:/opt/sm") == SendmailReinjector("/opt/sm")
    assert parse_reinject("smtp:[::1]:10026") == SmtpReinjector("::1", 10026)


def test_addresses_go_to_the_next_hop_as_the_mta_gave_them() -> None:
    """Found by the CLI audit: smtplib parsed them as header addresses, so the comment in
    ``a(b)@partner.example`` was dropped (another mailbox) and ``x@y, z@w`` lost a part."""
    odd = ["a(b)@partner.example", '"john doe"@partner.example', "x@y.example, z@w.example"]
    with SmtpSink() as sink:
        handon = SmtpReinjector("127.0.0.1", sink.port).deliver(MESSAGE, "s(x)@corp.example",
                                                                odd)
        assert handon.ok, handon.detail
        sink.wait_for(1)
    assert [c for c in sink.commands if c.split()[0] in ("MAIL", "RCPT")] == [
        "MAIL FROM:<s(x)@corp.example> BODY=8BITMIME",
        *(f"RCPT TO:<{address}>" for address in odd)]


def test_internationalised_addresses_go_with_smtputf8_in_utf_8() -> None:
    with SmtpSink(smtputf8=True) as sink:
        handon = SmtpReinjector("127.0.0.1", sink.port).deliver(MESSAGE, "jörg@corp.example",
                                                                ["zoë@partner.example"])
        assert handon.ok, handon.detail
        [tx] = sink.wait_for(1)
    assert (tx.sender, tx.recipients) == ("jörg@corp.example", ["zoë@partner.example"])
    assert "MAIL FROM:<jörg@corp.example> BODY=8BITMIME SMTPUTF8" in sink.commands


def test_internationalised_addresses_need_smtputf8() -> None:
    with SmtpSink() as sink:       # the sink does not offer SMTPUTF8
        handon = SmtpReinjector("127.0.0.1", sink.port).deliver(MESSAGE, "a@corp.example",
                                                                ["jörg@partner.example"])
        assert handon.status is HandOnStatus.PERMANENT
        assert sink.transactions == []


UTF8_HEADER = MESSAGE.replace(b"Subject: dots", "Subject: Grüße".encode())


@pytest.mark.parametrize(("utf8_next_hop", "message", "expected"), [
    (True, UTF8_HEADER, ["SMTPUTF8"]), (True, MESSAGE, []), (False, UTF8_HEADER, [])],
    ids=["utf8-header", "ascii-header", "next-hop-without-smtputf8"])
def test_a_header_with_utf8_goes_with_smtputf8_when_the_next_hop_offers_it(
        utf8_next_hop: bool, message: bytes, expected: list[str]) -> None:
    with SmtpSink(smtputf8=utf8_next_hop) as sink:
        handon = SmtpReinjector("127.0.0.1", sink.port).deliver(message, "a@corp.example",
                                                                ["b@partner.example"])
        assert handon.ok, handon.detail
        [tx] = sink.wait_for(1)
    mail = next(c for c in sink.commands if c.startswith("MAIL"))
    assert mail.split()[2:] == ["BODY=8BITMIME", *expected]
    assert tx.body == message.replace(b"\n", b"\r\n")


@given(st.lists(st.binary(max_size=6).map(lambda b: bytes(b"a\xc3\r\n"[x % 4] for x in b)),
                max_size=10))
def test_header_is_ascii_reads_the_header_across_pieces(pieces: list[bytes]) -> None:
    whole = b"".join(pieces)
    lines = whole.replace(b"\r\n", b"\n").split(b"\n")
    header = lines[:lines.index(b"")] if b"" in lines[:-1] else lines
    assert header_is_ascii(pieces) is header_is_ascii(whole) is b"".join(header).isascii()


def _what_smtplib_sends(whole: bytes) -> bytes:
    """smtplib's ``data`` content for ``whole`` (CRLF line ends as wire_format makes them)."""
    # smtplib's own (private, so typeshed has no stub for it)
    quote_periods: Callable[[bytes], bytes] = vars(smtplib)["_quote_periods"]
    quoted = quote_periods(wire_format(whole))
    return quoted if quoted.endswith(b"\r\n") else quoted + b"\r\n"


@given(st.lists(st.binary(max_size=12).map(lambda b: bytes(b"ab.\r\n"[x % 5] for x in b)),
                max_size=8),
       st.integers(min_value=1, max_value=9))
def test_the_pieces_are_what_smtplib_sends_for_the_whole(chunks: list[bytes],
                                                         window: int) -> None:
    pieces = list(wire_pieces(chunks, window=window))
    assert b"".join(pieces) == _what_smtplib_sends(b"".join(chunks))
    # every piece comes from at most one window of the message (plus a CR held over and
    # the dots and CRs added), never from the whole message at once
    assert all(len(piece) <= 3 * (window + 1) for piece in pieces)


def test_a_large_message_goes_out_in_pieces_and_arrives_whole() -> None:
    body = b"".join(b".line %d\n" % n for n in range(300_000))  # 4 MB, every line dotted
    message = MESSAGE + body
    chunks = [memoryview(message)[i:i + 700_000] for i in range(0, len(message), 700_000)]
    assert max(len(p) for p in wire_pieces(chunks)) < 2 * (1 << 20)
    with SmtpSink() as sink:
        handon = SmtpReinjector("127.0.0.1", sink.port).deliver(chunks, "a@corp.example",
                                                                 RCPTS[:1])
        assert handon.ok, handon.detail
        [tx] = sink.wait_for(1)
    assert tx.body == message.replace(b"\n", b"\r\n")
