"""Routing facts from real messages, and `route`/`simulate --in FILE`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailroute.cli import main
from mailroute.mime import parse
from mailroute.routing import MessageFlag, message_facts
from tests.routing.support import EXAMPLES, FILES, NOW

T2 = str(EXAMPLES / FILES["t2"])

PLAIN = (b"Received: from a by b; Mon, 30 Nov 2026 10:00:00 +0000\r\n"
         b"Received: from c by d; Mon, 30 Nov 2026 10:00:01 +0000\r\n"
         b"From: =?utf-8?q?J=C3=BCrgen?= <Juergen@Example.NET>\r\n"
         b"To: x@partner.example\r\n"
         b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
         b"Message-ID: <m1@example.net>\r\n"
         b"\r\nhello\r\n")


def facts_of(data: bytes) -> frozenset[MessageFlag]:
    return message_facts(parse(data), size=len(data)).flags


def test_headers_ids_and_counts_come_from_the_message() -> None:
    facts = message_facts(parse(PLAIN), size=len(PLAIN))
    assert facts.message_id == "<m1@example.net>"
    assert facts.from_addrs == ("juergen@example.net",)
    assert facts.received_count == 2
    assert facts.size == len(PLAIN)
    assert ("Subject", "Grüße") in facts.headers
    assert facts.flags == frozenset()


@pytest.mark.parametrize(("head", "flag"), [
    (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=b',
     MessageFlag.SIGNED),
    (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data", MessageFlag.ENCRYPTED),
    (b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=b',
     MessageFlag.ENCRYPTED),
    (b"Content-Type: multipart/report; report-type=delivery-status; boundary=b",
     MessageFlag.DSN),
    (b"Content-Type: multipart/report; report-type=disposition-notification; boundary=b",
     MessageFlag.READ_RECEIPT),
    (b"Auto-Submitted: auto-replied", MessageFlag.OOF),
    (b"Content-Class: urn:content-classes:calendarmessage", MessageFlag.CALENDARING),
    (b"Content-Type: text/calendar; method=REQUEST", MessageFlag.CALENDARING),
    (b"X-MS-Journal-Report: ", MessageFlag.JOURNAL_REPORT),
])
def test_mime_facts(head: bytes, flag: MessageFlag) -> None:
    data = b"From: a@example.net\r\n" + head + b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"
    assert facts_of(data) == {flag}


def test_auto_generated_is_not_an_auto_reply() -> None:
    assert facts_of(b"Auto-Submitted: auto-generated\r\n\r\nx") == frozenset()


def route(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["route", "--config", T2, "--mail-from", "alice@example.net", "--rcpt",
                 "x@partner.example", "--direction", "outbound", "--json", "--now", str(NOW),
                 *argv])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def test_route_in_file_matches_the_same_facts_given_as_flags(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: alice@example.net\r\nAuto-Submitted: auto-replied\r\n"
                        b"Message-ID: <oof@example.net>\r\n\r\nout of office\r\n")
    from_file = route(capsys, "--in", str(message))
    from_flags = route(capsys, "--header", "From: alice@example.net", "--header",
                       "Auto-Submitted: auto-replied", "--message-id", "<oof@example.net>",
                       "--flag", "oof")
    assert from_file == from_flags
    plain = route(capsys)
    assert from_file[1]["rules"] != plain[1]["rules"]


def test_route_in_file_that_cannot_be_read_or_parsed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", "--config", T2, "--rcpt", "x@partner.example", "--in",
                 str(tmp_path / "missing.eml")]) == 2
    ambiguous = tmp_path / "a.eml"
    ambiguous.write_bytes(b"From: a@example.net\r\nFrom: b@example.net\r\n\r\nx")
    assert main(["route", "--config", T2, "--rcpt", "x@partner.example", "--in",
                 str(ambiguous)]) == 65
    _, err = capsys.readouterr()
    assert "5.6.0" in err


def test_simulate_reads_a_message_file(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(PLAIN.replace(b"Juergen@Example.NET", b"alice@example.net"))
    code = main(["simulate", "--config", T2, "--mail-from", "alice@example.net", "--rcpt",
                 "x@partner.example", "--in", str(message), "--json", "--now", str(NOW)])
    out, _ = capsys.readouterr()
    assert code == 0
    hops = json.loads(out)["hops"]
    assert [h["at"] for h in hops][:2] == ["EXO pass 1", "gateway pass 1"]


@pytest.mark.parametrize("command", ["route", "simulate"])
@pytest.mark.parametrize("omit", ["--config", "--rcpt"])
def test_route_and_simulate_without_a_topology_or_a_recipient_are_usage_errors(
        command: str, omit: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the CLI and routing audits: without --rcpt both printed a decision about
    nobody and exited 0; without --config they exited 78 (a bad topology)."""
    given = {"--config": T2, "--rcpt": "bob@example.net"}
    del given[omit]
    argv = [command, "--mail-from", "alice@example.net", "--json"]
    for option, value in given.items():
        argv += [option, value]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{omit} required" in captured.err


@pytest.mark.parametrize("scl", ["99", "-2", "x"])
def test_an_scl_exchange_cannot_have_is_a_usage_error(scl: str) -> None:
    assert main(["route", "--config", T2, "--rcpt", "bob@example.net", "--scl", scl]) == 2


def test_route_at_the_gateway_takes_no_source(capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the routing audit: --source was ignored there without a word."""
    assert main(["route", "--config", T2, "--rcpt", "bob@example.net", "--at", "gateway",
                 "--source", "exo"]) == 2
    assert "--source is for --at exo" in capsys.readouterr().err
