"""`mailroute try`: verdict, reply, each filter's result and a diff, without side effects."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from mailroute.cli import main
from mailroute.dryrun import message_diff
from mailroute.gateway.sqlite_store import PROCESSED_FILE
from tests.marker.helpers import MESSAGE, write_key_file


def _policy(tmp_path: Path, body: str) -> Path:
    policy = tmp_path / "policy.toml"
    policy.write_text(body)
    return policy


def _try(capsys: pytest.CaptureFixture[str], tmp_path: Path, policy: Path, *extra: str,
         data: bytes = MESSAGE) -> tuple[int, str]:
    source = tmp_path / "in.eml"
    source.write_bytes(data)
    code = main(["try", "--config", str(policy), "--in", str(source), *extra])
    captured = capsys.readouterr()
    if code in (65, 69, 75):   # docs/cli.md: the status line first on standard error
        reply = json.loads(captured.out)["reply"] if "--json" in extra else (
            captured.out.splitlines()[1].removeprefix("reply: "))
        assert captured.err.splitlines()[0] == reply.split(" ", 1)[1]
    else:
        assert captured.err == ""
    return code, captured.out


def test_accept_shows_the_filters_and_the_diff(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path, '[[pipeline]]\nfilter = "headers"\nremove = ["Received"]\n'
                               '[[pipeline]]\nfilter = "headers"\nadd = { X-Seen = "yes" }\n'
                               '[pipeline.when]\ndirection = ["inbound"]\n')
    code, out = _try(capsys, tmp_path, policy, "--direction", "outbound")
    assert code == 0
    assert out.splitlines()[:5] == [
        "verdict: accept", "reply: 250 2.0.0 message accepted",
        "filters: headers: changed, headers: skipped", "", "@@ -1,2 +1 @@"]
    assert "-Received: from client.example.net ([192.0.2.1]) by mx.example.net" in out


def test_json_and_a_refusal_exit_as_process_would(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    keys = write_key_file(tmp_path)
    policy = _policy(tmp_path, '[[pipeline]]\nfilter = "marker-verify"\n'
                               f'key_file = "{keys.name}"\non_missing = "reject"\n')
    code, out = _try(capsys, tmp_path, policy, "--json")
    assert code == 69
    report = json.loads(out)
    assert report == {"action": "reject", "reply": report["reply"],
                      "filters": [{"name": "marker-verify", "result": "reject"}],
                      "changed": False, "diff": []}
    assert report["reply"].startswith("554 5.7.1 ")
    code, out = _try(capsys, tmp_path, policy, data=b"From: a\r\nFrom : b\r\n\r\nx\r\n")
    assert code == 65
    assert out.startswith("verdict: reject\nreply: 554 5.6.0 ")


def test_trying_never_records_the_message_as_processed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = write_key_file(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    policy = _policy(tmp_path, f'[gateway]\nstate_dir = "{state}"\n'
                               '[[pipeline]]\nfilter = "marker-verify"\n'
                               f'key_file = "{keys.name}"\n'
                               '[[pipeline]]\nfilter = "marker-set"\n'
                               f'key_file = "{keys.name}"\n')
    for _ in range(3):
        code, out = _try(capsys, tmp_path, policy, "--direction", "outbound")
        assert (code, out.splitlines()[0]) == (0, "verdict: accept")
    assert _processed_rows(state) == 0
    source = tmp_path / "in.eml"
    assert main(["process", "--config", str(policy), "--in", str(source), "--out",
                 str(tmp_path / "out.eml"), "--direction", "outbound"]) == 0
    assert _processed_rows(state) == 1      # a real pass records it: the count is live
    # the same message back after a lap (one more Received field): process would refuse it
    # as a loop, and so does try (found by the CLI audit: try said accept), still
    # recording nothing
    code, out = _try(capsys, tmp_path, policy, "--direction", "outbound",
                     data=b"Received: from exo.example by gw.example\r\n" + MESSAGE)
    assert (code, out.splitlines()[0]) == (69, "verdict: reject")
    assert "5.4.6" in out
    assert _processed_rows(state) == 1


def test_a_quarantine_is_the_temporary_failure_process_answers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the CLI audit: try exited 75 with the status line 2.7.0 (process: 4.7.0)."""
    (tmp_path / "dns.txt").write_text("_dmarc.example.net v=DMARC1; p=reject\n")
    policy = _policy(tmp_path, '[[pipeline]]\nfilter = "dkim-verify"\ndns_file = "dns.txt"\n'
                               'spf = false\naccepted_domains = ["example.net"]\n'
                               'on_spoof = "quarantine"\n')
    spoof = (b"From: CEO <ceo@example.net>\r\nTo: anna@example.net\r\nSubject: wire\r\n"
             b"Message-ID: <s1@attacker.example>\r\n\r\npay now\r\n")
    source = tmp_path / "in.eml"
    source.write_bytes(spoof)
    code = main(["try", "--config", str(policy), "--in", str(source), "--mail-from",
                 "x@attacker.example", "--rcpt", "anna@example.net", "--direction", "inbound"])
    captured = capsys.readouterr()
    assert code == 75
    assert captured.out.splitlines()[0] == "verdict: quarantine"
    assert captured.err.splitlines()[0].startswith("4.7.0 ")
    done = main(["process", "--config", str(policy), "--in", str(source), "--mail-from",
                 "x@attacker.example", "--rcpt", "anna@example.net", "--direction", "inbound"])
    assert (done, capsys.readouterr().err.splitlines()[0]) == (75, captured.err.splitlines()[0])


def _processed_rows(state: Path) -> int:
    path = state / PROCESSED_FILE
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM processed").fetchone()
    return int(rows)


def test_message_diff_is_empty_for_equal_messages_and_shows_changed_lines() -> None:
    assert message_diff(MESSAGE, MESSAGE) == []
    changed = MESSAGE.replace(b"Subject: quarterly report", b"Subject: [ext] quarterly report")
    assert message_diff(MESSAGE, changed) == [
        "@@ -3,3 +3,3 @@", " To: bob@example.org", "-Subject: quarterly report",
        "+Subject: [ext] quarterly report", " Message-ID: <20260921.abc123@Mail.Example.NET>"]
