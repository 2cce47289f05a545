"""``mailroute pipe`` and ``mailroute quarantine`` as the MTA and the administrator run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailroute.adapters.quarantine import QuarantineStore
from tests.mta.common import pipe_policy
from tests.smtpsink import SmtpSink

MESSAGE = (b"Received: from client.partner.example by mx1.corp.example; Sun, 6 Dec 2026\n"
           b"From: a@partner.example\nTo: b@corp.example\nMessage-ID: <loop1@partner.example>\n"
           b"Subject: hello\n\nbody\n")
RCPTS = ["b@corp.example", "c@partner.example", "d@partner.example"]


def _policy(tmp_path: Path) -> Path:
    return pipe_policy(tmp_path)


def _pipe(policy: Path, port: int, data: bytes, *, sender: str = "a@partner.example",
          rcpts: list[str] = RCPTS, extra: tuple[str, ...] = ()
          ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailroute", "pipe", "--config", str(policy), "--sender", sender,
         "--queue-id", "4ABC", "--client-ip", "127.0.0.1", "--reinject",
         f"smtp:127.0.0.1:{port}", "--log", "stderr", *extra, "--", *rcpts],
        input=data, capture_output=True, timeout=60, check=False)


def test_accepted_mail_is_handed_on_to_every_recipient_and_nothing_on_stdout(tmp_path: Path
                                                                              ) -> None:
    policy = _policy(tmp_path)
    with SmtpSink() as sink:
        done = _pipe(policy, sink.port, MESSAGE)
        [tx] = sink.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert tx.recipients == RCPTS
    assert tx.body.count(b"X-Processed: mailroute") == 1
    assert b"X-Mailroute-Mark:" in tx.body
    log = done.stderr.decode()
    assert log.startswith("mailroute: accept 2.0.0 handed on")
    assert "queue_id=4ABC message_id=<loop1@partner.example> sender=<a@partner.example> " \
           "recipients=3 direction=inbound" in log


def test_the_second_pass_of_a_loop_is_refused_across_processes(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    with SmtpSink() as sink:
        first = _pipe(policy, sink.port, MESSAGE)
        [tx] = sink.wait_for(1)
        # The MTA retrying the same queue file (same Received fields) is not a loop.
        retry = _pipe(policy, sink.port, MESSAGE)
        assert len(sink.wait_for(2)) == 2
        # The handed-on message coming round again (one more Received field) is.
        looped = b"Received: from localhost by mx1.corp.example; Sun, 6 Dec 2026\n" + \
            tx.body.replace(b"\r\n", b"\n")
        second = _pipe(policy, sink.port, looped)
    assert (first.returncode, retry.returncode) == (0, 0)
    assert second.returncode == 69
    assert second.stderr.decode().startswith("5.4.6 ")
    assert len(sink.delivered) == 2
    database = (tmp_path / "state" / "processed.sqlite3").read_bytes()
    for address in (*RCPTS, "a@partner.example"):
        assert address.encode() not in database


def test_a_rejected_message_hands_on_nothing(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    with SmtpSink() as sink:
        done = _pipe(policy, sink.port, MESSAGE, sender="reject-me@partner.example")
    assert done.returncode == 69
    assert done.stderr.decode().startswith("5.7.1 ")
    assert sink.transactions == []


def test_a_message_refused_while_parsing_logs_its_direction_from_pipe_and_process(
        tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    ambiguous = MESSAGE.replace(b"To:", b"From: c@partner.example\nTo:")
    with SmtpSink() as sink:
        piped = _pipe(policy, sink.port, ambiguous, rcpts=["b@corp.example"])
    processed = subprocess.run(
        [sys.executable, "-m", "mailroute", "process", "--config", str(policy), "--mail-from",
         "a@partner.example", "--rcpt", "b@corp.example", "--log", "stderr"],
        input=ambiguous, capture_output=True, timeout=60, check=False)
    for done in (piped, processed):
        assert done.returncode == 65
        assert "mailroute: reject 5.6.0 ambiguous message" in done.stderr.decode()
        assert " recipients=1 direction=inbound " in done.stderr.decode()
    assert sink.transactions == []


def test_a_refused_recipient_at_the_next_hop_defers_everything(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    with SmtpSink(rcpt_replies={"d@partner.example": "452 4.2.2 full"}) as sink:
        done = _pipe(policy, sink.port, MESSAGE)
    assert done.returncode == 75
    assert done.stderr.decode().startswith("4.3.0 hand-on failed")
    assert sink.delivered == []


def test_a_bad_policy_is_78_with_a_temporary_status_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nstate_dirr = 1\n")
    done = _pipe(bad, 9, MESSAGE)
    assert done.returncode == 78
    assert done.stderr.decode().startswith("4.3.5 ")


def test_addresses_in_angle_brackets_are_the_addresses(tmp_path: Path) -> None:
    """Found by the CLI audit: ``--sender '<a@b>'`` was taken as ``<<a@b>>``."""
    with SmtpSink() as sink:
        done = _pipe(_policy(tmp_path), sink.port, MESSAGE, sender="<a@partner.example>",
                     rcpts=[f"<{r}>" for r in RCPTS])
        [tx] = sink.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert (tx.sender, tx.recipients) == ("a@partner.example", RCPTS)
    assert "sender=<a@partner.example>" in done.stderr.decode()


def test_null_sender_and_usage() -> None:
    no_rcpt = subprocess.run([sys.executable, "-m", "mailroute", "pipe", "--config", "x",
                              "--sender", "<>"], capture_output=True, timeout=30, check=False)
    assert no_rcpt.returncode == 2


@pytest.fixture
def held(tmp_path: Path) -> tuple[Path, QuarantineStore, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[gateway]\nquarantine_dir = "{tmp_path / "q"}"\n')
    store = QuarantineStore(tmp_path / "q")
    entry = store.store(MESSAGE, sender="a@partner.example", recipients=tuple(RCPTS),
                        reply="250 2.7.0 held", queue_id="4ABC", now=1_765_000_000.0)
    return policy, store, entry


def _quarantine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailroute", "quarantine", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_quarantine_list_release_delete(held: tuple[Path, QuarantineStore, str]) -> None:
    policy, store, entry = held
    listing = _quarantine("list", "--config", str(policy))
    assert listing.returncode == 0
    assert listing.stdout.startswith(f"{entry} 2025-")
    assert "<a@partner.example> b@corp.example,c@partner.example,d@partner.example" in \
        listing.stdout
    with SmtpSink() as sink:
        released = _quarantine("release", entry, "--config", str(policy), "--reinject",
                               f"smtp:127.0.0.1:{sink.port}")
        [tx] = sink.wait_for(1)
    assert released.returncode == 0, released.stderr
    assert tx.sender == "a@partner.example"
    assert tx.recipients == RCPTS
    assert tx.body == MESSAGE.replace(b"\n", b"\r\n")
    assert list(store.entries()) == []
    again = _quarantine("release", entry, "--config", str(policy))
    assert again.returncode == 1


def test_quarantine_release_failure_keeps_the_message(held: tuple[Path, QuarantineStore, str]
                                                      ) -> None:
    policy, store, entry = held
    with SmtpSink(data_reply="451 4.3.0 later") as sink:
        failed = _quarantine("release", entry, "--config", str(policy), "--reinject",
                             f"smtp:127.0.0.1:{sink.port}")
    assert failed.returncode == 75
    assert [e.id for e in store.entries()] == [entry]
    assert _quarantine("delete", entry, "--config", str(policy)).returncode == 0
    assert list(store.entries()) == []
    assert _quarantine("delete", "../../etc/passwd", "--config", str(policy)).returncode == 1


def test_sender_from_the_environment_as_exim_sets_it(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    command = [sys.executable, "-m", "mailroute", "pipe", "--config", str(policy),
               "--sender-env", "SENDER", "--log", "none", "--reinject"]
    with SmtpSink() as sink:
        done = subprocess.run([*command, f"smtp:127.0.0.1:{sink.port}", "--", *RCPTS],
                              input=MESSAGE, capture_output=True, timeout=60, check=False,
                              env={**os.environ, "SENDER": "env-sender@partner.example"})
        [tx] = sink.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert tx.sender == "env-sender@partner.example"
    unset = {k: v for k, v in os.environ.items() if k != "SENDER"}
    missing = subprocess.run([*command, "smtp:127.0.0.1:9", "--", *RCPTS], input=MESSAGE,
                             capture_output=True, timeout=60, check=False, env=unset)
    assert missing.returncode == 78
    assert missing.stderr.decode().startswith("4.3.5 ")
