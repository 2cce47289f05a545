"""The milter adapter inside a real Sendmail 8.17 (Debian ``sendmail-bin``, extracted beside
Postfix): ``mailroute milter`` on ``inet:`` as ``INPUT_MAIL_FILTER``, a sink as smart host.

Policy: disclaimer, then marker-set (a header inserted at the top).
"""

from __future__ import annotations

import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailroute.testing import build_message, write_fake_key_file
from tests.adapters.postfix_harness import SinkServer
from tests.mta.common import free_port, wait_for_ports
from tests.mta.sendmail import SendmailInstance, sendmail_root
from tests.smtpclient import reply_text

PACKAGES = sendmail_root()
pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(PACKAGES is None, reason="Sendmail packages not available")]

DISCLAIMER = "This message passed the corp.example gateway."


@dataclass
class Rig:
    root: Path
    sendmail: SendmailInstance
    sink: SinkServer
    milter: subprocess.Popen[bytes]

    def milter_log(self) -> str:
        return (self.root / "milter.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    assert PACKAGES is not None
    root = Path(tempfile.mkdtemp(prefix="mailroute-sendmail-"))
    keys = write_fake_key_file(root / "keys.toml")
    (root / "d.txt").write_text(DISCLAIMER + "\n")
    policy = root / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "disclaimer"\ntext = "d.txt"\n\n'
                      f'[[pipeline]]\nfilter = "marker-set"\nkey_file = "{keys}"\n')
    sink = SinkServer(free_port()).start()
    milter_port = free_port()
    with (root / "milter.log").open("ab") as log:
        milter = subprocess.Popen(
            [sys.executable, "-m", "mailroute", "-v", "milter", "--config", str(policy),
             "--socket", f"inet:{milter_port}@127.0.0.1"], stdout=log, stderr=subprocess.STDOUT)
    sendmail = SendmailInstance(PACKAGES, root, port=free_port(),
                                relay=sink.server_address[1], milter=milter_port)
    try:
        wait_for_ports(milter, (milter_port,), 30.0, lambda: "milter did not listen")
        sendmail.start()
        yield Rig(root, sendmail, sink, milter)
    finally:
        sendmail.stop()
        milter.send_signal(signal.SIGTERM)
        milter.wait(timeout=15)
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)


def send(rig: Rig, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", rig.sendmail.port, timeout=60) as client:
        client.sendmail("alice@corp.example", ["bob@partner.example"], data)


def fresh() -> bytes:
    return build_message(sender="alice@corp.example", to="bob@partner.example",
                         message_id=f"<{uuid.uuid4().hex}@corp.example>")


def test_disclaimer_once_and_marker_below_sendmails_received(rig: Rig) -> None:
    rig.sink.clear()
    send(rig, fresh())
    [delivered] = rig.sink.wait_for(1, timeout=30)
    assert delivered.data.count(DISCLAIMER.encode()) == 1, rig.sendmail.log()
    lines = delivered.data.split(b"\r\n")
    assert lines[0].startswith(b"Received: from ")
    fields = [line.split(b":")[0] for line in lines[:lines.index(b"")]
              if line and not line[:1].isspace()]
    assert fields[:2] == [b"Received", b"X-Mailroute-Mark"], fields
    # the queue id ({i}) reached mailroute's log line
    queue_id = lines[1].split(b" id ")[1].split()[0].decode()
    deadline = time.monotonic() + 5
    while f"queue id {queue_id}" not in rig.milter_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"queue_id={queue_id} " in rig.milter_log()


def test_policy_rejection_reaches_the_client_as_5xx(rig: Rig) -> None:
    rig.sink.clear()
    ambiguous = build_message(sender="alice@corp.example", to="bob@partner.example",
                              headers=(("Content-Type", "text/html"),))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(rig, ambiguous)
    assert refused.value.smtp_code == 554
    assert reply_text(refused.value).startswith(b"5.6.0")
    assert rig.sink.wait_for(1, timeout=2) == []


def test_repeated_fields_are_all_deleted_and_forged_results_too(rig: Rig) -> None:
    """Sendmail keeps a deleted field in the occurrences it counts: deleting "occurrence 1"
    twice deleted one field (a forged second marker was delivered). The edits now go from
    the bottom up, and the forged Authentication-Results of this gateway go as well."""
    rig.sink.clear()
    send(rig, build_message(
        sender="alice@corp.example", to="bob@partner.example",
        message_id=f"<{uuid.uuid4().hex}@corp.example>",
        headers=(("X-Mailroute-Mark", "v1.forged-one"), ("x-mailroute-mark", "forged-two"),
                 ("Authentication-Results", "mailroute; dkim=pass header.d=bank.example"),
                 ("Authentication-Results", "other.example; spf=none"),
                 ("X-MAILROUTE-MARK", "forged-three"))))
    [delivered] = rig.sink.wait_for(1, timeout=30)
    head = delivered.data.split(b"\r\n\r\n")[0].split(b"\r\n")
    marks = [line for line in head if line.lower().startswith(b"x-mailroute-mark:")]
    assert len(marks) == 1, head
    assert b"forged" not in marks[0]
    results = [line for line in head if line.lower().startswith(b"authentication-results:")]
    assert results == [b"Authentication-Results: other.example; spf=none"], head
    assert delivered.data.count(DISCLAIMER.encode()) == 1
