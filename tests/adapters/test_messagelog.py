"""The one log line per message: its text and JSON formats, the filter trace it reports, and
that no secret reaches it from any adapter (process, pipe, milter)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from mailroute.adapters.messagelog import (
    MESSAGE_LOG,
    MessageLog,
    MessageRecord,
    format_json,
    format_text,
    record_for,
)
from mailroute.cli import main
from mailroute.item import Envelope
from mailroute.policy import load_policy
from mailroute.results import Reply
from tests.marker.helpers import SECRET_A, SECRET_A_B64, key_file_text, write_key_file
from tests.smime.pki import build_pki

MESSAGE = (b"From: Anna <anna@corp.example>\r\nTo: max@partner.example\r\n"
           b"Message-ID: <m1@corp.example>\r\nSubject: hi\r\n\r\nHello\r\n")
RECORD = MessageRecord(
    verdict="reject", reply=Reply(554, "5.7.1", "refused by policy"), queue_id="4XyZ1",
    message_id="<m1@corp.example>", sender="anna@corp.example", recipients=2,
    direction="outbound", filters=(("marker-verify", "unchanged"), ("headers", "skipped"),
                                   ("disclaimer", "reject")),
    duration=0.01234, sasl_user="anna", client_address="192.0.2.7", exit_code=69)


def test_text_line_puts_verdict_and_status_first_then_every_fact() -> None:
    assert format_text(RECORD) == (
        "reject 5.7.1 refused by policy; queue_id=4XyZ1 message_id=<m1@corp.example> "
        "sender=<anna@corp.example> recipients=2 direction=outbound exit=69 "
        "filters=marker-verify:unchanged,headers:skipped,disclaimer:reject sasl_user=anna "
        "client=192.0.2.7 duration_ms=12.3")


def test_text_line_marks_unknown_values_and_leaves_out_optional_ones() -> None:
    record = MessageRecord(verdict="accept", reply=Reply(250, "2.0.0", "message accepted"))
    assert format_text(record) == (
        "accept 2.0.0 message accepted; queue_id=- message_id=- sender=<> recipients=0 "
        "direction=- filters=- duration_ms=0.0")


def test_json_line_has_the_same_facts_as_one_object() -> None:
    document = json.loads(format_json(RECORD))
    assert document == {
        "verdict": "reject", "code": 554, "status": "5.7.1", "reply": "refused by policy",
        "queue_id": "4XyZ1", "message_id": "<m1@corp.example>", "sender": "anna@corp.example",
        "recipients": 2, "direction": "outbound", "exit": 69,
        "filters": [{"name": "marker-verify", "result": "unchanged"},
                    {"name": "headers", "result": "skipped"},
                    {"name": "disclaimer", "result": "reject"}],
        "sasl_user": "anna", "client": "192.0.2.7", "helo": None, "client_name": None,
        "duration_ms": 12.3}
    assert "\n" not in format_json(RECORD)


def test_text_and_json_lines_name_the_same_facts_in_the_same_order() -> None:
    every = MessageRecord(
        verdict="accept", reply=Reply(250, "2.0.0", "ok"), queue_id="Q", message_id="<m@x>",
        sender="a@x", recipients=1, direction="inbound", filters=(("f", "changed"),),
        duration=0.5, sasl_user="u", client_address="192.0.2.1", helo="h.example",
        client_name="c.example", exit_code=0)
    text_keys = [pair.split("=", 1)[0] for pair in format_text(every).split("; ", 1)[1].split()]
    json_keys = [key for key in json.loads(format_json(every))
                 if key not in ("verdict", "code", "status", "reply")]
    assert text_keys == json_keys


def test_hostile_message_id_stays_one_quoted_value_on_one_line() -> None:
    data = (b"Message-ID: <a b=\"c\";\r\n\tsneaky=1@x>\r\nFrom: a@b\r\n\r\nbody\r\n")
    record = record_for(None, Envelope(mail_from="a@b"), data=data, verdict="reject",
                        reply=Reply(554, "5.6.0", "malformed message"))
    assert record.message_id == '<a b="c"; sneaky=1@x>'
    line = format_text(record)
    assert "\n" not in line
    assert "\r" not in line
    assert 'message_id="<a b=\\"c\\"; sneaky=1@x>" sender=<a@b>' in line
    assert json.loads(format_json(record))["message_id"] == '<a b="c"; sneaky=1@x>'


@given(st.text(min_size=1, max_size=40))
def test_a_value_is_quoted_exactly_when_it_holds_space_quote_equals_semicolon_or_backslash(
        value: str) -> None:
    record = MessageRecord(verdict="accept", reply=Reply(250, "2.0.0", "ok"), helo=value)
    line = format_text(record)
    quoted = re.search(r'[\s"=;\\]', value) is not None
    shown = json.dumps(value, ensure_ascii=False) if quoted else value
    assert f" helo={shown} duration_ms=" in line
    assert "\n" not in line


def test_long_values_are_cut_to_200_characters() -> None:
    data = b"Message-ID: <" + b"x" * 5000 + b"@y>\r\n\r\nbody\r\n"
    record = record_for(None, Envelope(), data=data, verdict="reject",
                        reply=Reply(554, "5.6.0", "x"))
    assert record.message_id is not None
    assert len(record.message_id) == 200


def test_record_from_a_real_pipeline_reports_each_filter(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[gateway]\ninternal_domains = ["corp.example"]\n'
        '[[pipeline]]\nfilter = "headers"\nremove = ["X-Nothing"]\n'
        '[[pipeline]]\nfilter = "headers"\nadd = { X-Seen = "yes" }\n'
        '[[pipeline]]\nfilter = "headers"\nadd = { X-In = "yes" }\n'
        '[pipeline.when]\ndirection = ["inbound"]\n')
    pipeline = load_policy(policy)
    envelope = Envelope(mail_from="anna@corp.example", rcpt_to=("max@partner.example",))
    result = pipeline.process(MESSAGE, envelope)
    record = record_for(result, envelope, data=MESSAGE, queue_id="Q1", duration=0.002)
    assert record.filters == (("headers", "unchanged"), ("headers", "changed"),
                              ("headers", "skipped"))
    assert record.direction == "outbound"
    assert format_text(record).startswith(
        "accept 2.0.0 message accepted; queue_id=Q1 message_id=<m1@corp.example> "
        "sender=<anna@corp.example> recipients=1 direction=outbound "
        "filters=headers:unchanged,headers:changed,headers:skipped ")


def test_message_log_writes_in_its_format_to_the_message_logger(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        MessageLog("json").write(RECORD)
        MessageLog("text").write(RECORD)
    lines = [r.getMessage() for r in caplog.records if r.name == MESSAGE_LOG]
    assert json.loads(lines[0])["verdict"] == "reject"
    assert lines[1].startswith("reject 5.7.1 ")
    with pytest.raises(ValueError, match="text, json"):
        MessageLog("xml")  # type: ignore[arg-type]


def test_the_log_record_is_the_line_itself_from_message_log_write(
        caplog: pytest.LogCaptureFixture) -> None:
    """The record is made without a search of the stack: it names MessageLog.write as its
    caller and carries the line as its message, no arguments (a % stays a %)."""
    record = MessageRecord(verdict="accept", reply=Reply(250, "2.0.0", "100% fine"),
                           message_id="<%s@x>")
    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        MessageLog("text").write(record)
    [logged] = [r for r in caplog.records if r.name == MESSAGE_LOG]
    assert logged.getMessage() == format_text(record)
    assert "100% fine;" in logged.getMessage()
    assert "message_id=<%s@x>" in logged.getMessage()
    assert logged.args == ()
    assert (logged.levelno, logged.funcName, logged.filename) == (
        logging.INFO, "write", "messagelog.py")
    assert logged.lineno == MessageLog.write.__code__.co_firstlineno


def test_a_disabled_message_log_makes_no_line(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("tests.messagelog.off")
    logger.setLevel(logging.WARNING)
    monkeypatch.setattr(MessageLog, "render", lambda self, record: pytest.fail("rendered"))
    MessageLog("text", logger).write(RECORD)


# --- no secret reaches the log line, whatever the adapter and the format ----------------

PASSPHRASE = b"passphrase-that-must-never-leak-77"


def _secret_policy(tmp_path: Path) -> tuple[Path, list[str]]:
    """A policy that signs with an encrypted S/MIME key and sets a marker; the secrets."""
    pki = build_pki(tmp_path / "pki")
    key = serialization.load_pem_private_key(pki.alice.key_path.read_bytes(), None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(PASSPHRASE))
    key_path = tmp_path / "alice-enc.key"
    key_path.write_bytes(encrypted)
    key_path.chmod(0o600)
    passphrase = tmp_path / "pass.txt"
    passphrase.write_bytes(PASSPHRASE + b"\n")
    passphrase.chmod(0o600)
    write_key_file(tmp_path, key_file_text())
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[pipeline]]\nfilter = "smime-sign"\n'
        f'cert = "{pki.alice.cert_path}"\nkey = "{key_path}"\npassphrase_file = "pass.txt"\n'
        '[[pipeline]]\nfilter = "marker-set"\nkey_file = "keys.toml"\n')
    secrets = [PASSPHRASE.decode(), SECRET_A_B64, SECRET_A.decode(),
               *encrypted.decode().splitlines()[1:-1]]
    return policy, secrets


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_in_the_process_log_line(tmp_path: Path, fmt: str,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    policy, secrets = _secret_policy(tmp_path)
    source = tmp_path / "in.eml"
    source.write_bytes(MESSAGE)
    out = tmp_path / "out.eml"
    code = main(["process", "--config", str(policy), "--in", str(source), "--out", str(out),
                 "--mail-from", "anna@corp.example", "--rcpt", "max@partner.example",
                 "--queue-id", "4ABC", "--log", "stderr", "--log-format", fmt])
    err = capsys.readouterr().err
    assert code == 0, err
    assert b"X-Mailroute-Mark:" in out.read_bytes()       # both secrets were really used
    assert b"application/pkcs7-signature" in out.read_bytes()
    # (a thread another test left running may log too: this message's line has its queue id)
    [line] = [line for line in err.splitlines() if "4ABC" in line]
    payload = line.removeprefix("mailroute: ")
    if fmt == "json":
        assert json.loads(payload)["filters"] == [{"name": "smime-sign", "result": "changed"},
                                                  {"name": "marker-set", "result": "changed"}]
    else:
        assert "filters=smime-sign:changed,marker-set:changed" in payload
    for secret in secrets:
        assert secret not in err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_in_the_pipe_log_line_when_the_hand_on_fails(
        tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    policy, secrets = _secret_policy(tmp_path)
    monkeypatch.setattr("sys.stdin", _Stdin(MESSAGE))
    code = main(["pipe", "--config", str(policy), "--sender", "anna@corp.example",
                 "--queue-id", "4ABC", "--sasl-user", "anna", "--reinject", "smtp:127.0.0.1:9",
                 "--log", "stderr", "--log-format", fmt, "--", "max@partner.example"])
    err = capsys.readouterr().err
    assert code == 75
    status, line = [line for line in err.splitlines() if "4ABC" in line or "4.3.0" in line]
    assert status.startswith("4.3.0 hand-on failed")
    if fmt == "json":
        document = json.loads(line.removeprefix("mailroute: "))
        assert (document["verdict"], document["status"], document["sasl_user"],
                document["queue_id"], document["exit"]) == ("accept-deferred", "4.3.0", "anna",
                                                            "4ABC", 75)
    else:
        assert line.startswith("mailroute: accept-deferred 4.3.0 hand-on failed")
        assert "sasl_user=anna" in line
    for secret in secrets:
        assert secret not in err


class _Stdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)


def test_log_none_makes_no_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailroute.adapters.linelog import line_log

    def never(self: MessageLog, record: MessageRecord) -> str:
        raise AssertionError("a line was made for --log none")

    log = line_log("none", "text", syslog_socket="/nonexistent")
    monkeypatch.setattr(MessageLog, "render", never)
    log.write(RECORD)  # nothing made, nothing raised
