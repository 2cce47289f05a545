"""The milter adapter inside a real Postfix (Debian ``postfix``): one throwaway instance per
module on loopback high ports, the milter as ``mailroute milter`` on a unix socket (mode
0660, group postfix), a sink that keeps what Postfix relays.

Policy: marker-verify (the test name as the Exchange return path), disclaimer, marker-set.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import smtplib
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from mailroute.config.options import Options
from mailroute.pipeline import Pipeline
from mailroute.policy import build_filter
from mailroute.testing import build_message, write_fake_key_file
from tests.adapters.milter_recordings import Recorder
from tests.adapters.postfix_harness import (
    Postfix,
    SinkServer,
    free_port,
    postfix_available,
)
from tests.smime.pki import issue
from tests.smtpclient import reply_text

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(not postfix_available(), reason="Postfix not installed")]

EXO_NAME = "exo.test.example"
DISCLAIMER = "This message passed the corp.example gateway."
MAILROUTE = [sys.executable, "-m", "mailroute"]


@dataclass
class Rig:
    root: Path
    postfix: Postfix
    sink: SinkServer
    socket: Path
    policy: Path
    keys: Path
    client_cert: Path
    client_key: Path
    ca: Path
    milter: subprocess.Popen[bytes] | None = None

    def start_milter(self) -> None:
        """Start ``mailroute milter`` and wait for its socket."""
        self.socket.unlink(missing_ok=True)
        with (self.root / "milter.log").open("ab") as log:
            self.milter = subprocess.Popen(
                [*MAILROUTE, "-v", "milter", "--config", str(self.policy), "--socket",
                 f"unix:{self.socket}", "--socket-mode", "0660", "--socket-group", "postfix",
                 "--log", "stderr", "--log-format", "json"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            assert self.milter.poll() is None, "milter exited"
            assert time.monotonic() < deadline, "milter socket did not appear"
            time.sleep(0.05)

    def stop_milter(self, sig: int = signal.SIGTERM) -> int:
        """Stop the milter by PID; its exit status."""
        assert self.milter is not None
        self.milter.send_signal(sig)
        code = self.milter.wait(timeout=10)
        self.milter = None
        return code


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    yield from make_rig(POLICY)


POLICY = ('[[pipeline]]\nfilter = "marker-verify"\nkey_file = "keys.toml"\n'
          f'return_path_tls_names = ["{EXO_NAME}"]\n\n'
          '[[pipeline]]\nfilter = "disclaimer"\ntext = "d.txt"\n\n'
          '[[pipeline]]\nfilter = "marker-set"\nkey_file = "keys.toml"\n')


def make_rig(policy_text: str) -> Iterator[Rig]:
    """A Postfix with ``mailroute milter`` running ``policy_text`` (its files are beside it:
    ``keys.toml``, ``d.txt``), torn down after use."""
    # Not under pytest's basetemp: pytest resets /tmp/pytest-of-USER to 0700 whenever any
    # session starts, and the postfix user must traverse every parent directory.
    root = Path(tempfile.mkdtemp(prefix="mailroute-milter-"))
    os.chmod(root, 0o755)  # noqa: S103 - the postfix user must traverse it
    try:
        yield from _rig(root, policy_text)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _rig(root: Path, policy_text: str) -> Iterator[Rig]:
    pki = root / "pki"
    pki.mkdir()
    ca = issue(pki, "ca", issuer=None, ca=True)
    server = issue(pki, "mx", issuer=ca, eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    client = issue(pki, EXO_NAME, issuer=ca, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    os.chmod(server.key_path, 0o644)
    keys = write_fake_key_file(root / "keys.toml")
    (root / "d.txt").write_text(DISCLAIMER + "\n")
    policy = root / "policy.toml"
    policy.write_text(policy_text)
    sink = SinkServer(free_port()).start()
    socket_path = root / "milter.sock"
    postfix = Postfix(root / "pf", free_port(), sink.server_address[1], settings={
        "smtpd_milters": f"unix:{socket_path}",
        "milter_default_action": "tempfail",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": str(server.cert_path),
        "smtpd_tls_key_file": str(server.key_path),
        "smtpd_tls_CAfile": str(ca.cert_path),
        "smtpd_tls_ask_ccert": "yes",
    })
    rig = Rig(root, postfix, sink, socket_path, policy, keys, client.cert_path,
              client.key_path, ca.cert_path)
    rig.start_milter()
    try:
        postfix.start()
        yield rig
    finally:
        postfix.stop()
        if rig.milter is not None:
            rig.stop_milter(signal.SIGKILL)
        sink.stop()


@pytest.fixture
def sink(rig: Rig) -> SinkServer:
    if rig.milter is None:
        rig.start_milter()
    rig.sink.clear()
    return rig.sink


def fresh_message(headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A small message with a Message-ID of its own (the gateway remembers Message-IDs)."""
    return build_message(sender="alice@corp.example", to="bob@partner.example",
                         message_id=f"<{uuid.uuid4().hex}@corp.example>", headers=headers)


def send(rig: Rig, data: bytes, *, tls_client_cert: bool = False,
         rcpt: str = "bob@partner.example", sender: str = "alice@corp.example") -> None:
    """One SMTP transaction to the Postfix under test (raises on refusal)."""
    with smtplib.SMTP("127.0.0.1", rig.postfix.smtpd_port, timeout=60) as client:
        if tls_client_cert:
            context = ssl.create_default_context(cafile=str(rig.ca))
            context.check_hostname = False
            context.load_cert_chain(str(rig.client_cert), str(rig.client_key))
            client.starttls(context=context)
        client.sendmail(sender, [rcpt], data)


def refusal_code(rig: Rig, data: bytes, *, tls_client_cert: bool = False,
                 sender: str = "alice@corp.example") -> tuple[int, bytes]:
    """The SMTP code and text a refused transaction got."""
    try:
        send(rig, data, tls_client_cert=tls_client_cert, sender=sender)
    except smtplib.SMTPDataError as error:
        return error.smtp_code, reply_text(error)
    except smtplib.SMTPSenderRefused as error:
        return error.smtp_code, error.smtp_error
    except smtplib.SMTPRecipientsRefused as error:
        code, text = next(iter(error.recipients.values()))
        return code, text
    raise AssertionError("the transaction was accepted")


def test_disclaimer_arrives_once_and_headers_survive(rig: Rig, sink: SinkServer) -> None:
    message = fresh_message().replace(
        b"Subject: test\r\n", b"Subject: test\r\nX-Folded: one\r\n two\r\n")
    send(rig, message)
    [delivered] = sink.wait_for(1)
    assert delivered.data.count(DISCLAIMER.encode()) == 1
    assert b"X-Folded: one\r\n two\r\n" in delivered.data
    assert b"Hello.\r\n" in delivered.data
    lines = delivered.data.split(b"\r\n")
    # Postfix's own Received stays on top; our marker field is inserted right below it.
    assert lines[0].startswith(b"Received: from ")
    first_after = next(line for line in lines[1:] if not line[:1].isspace())
    assert first_after.startswith(b"X-Mailroute-Mark: ")


def test_forged_results_of_this_gateway_are_removed_from_what_postfix_delivers(
        rig: Rig, sink: SinkServer) -> None:
    """RFC 8601 5: Authentication-Results fields claiming this gateway's authserv-id
    (``mailroute`` by default) come from someone else. The session removes them before the
    filters run; the milter must tell Postfix so (they were delivered: the edits were
    computed from the message after that removal)."""
    send(rig, fresh_message(headers=(
        ("Authentication-Results", "mailroute; dkim=pass header.d=bank.example"),
        ("Authentication-Results", "other.example; spf=none"),
        ("Authentication-Results", "MAILROUTE; dmarc=pass header.from=bank.example"))))
    [delivered] = sink.wait_for(1)
    fields = [line for line in delivered.data.split(b"\r\n\r\n")[0].split(b"\r\n")
              if line.lower().startswith(b"authentication-results:")]
    assert fields == [b"Authentication-Results: other.example; spf=none"]
    assert delivered.data.count(DISCLAIMER.encode()) == 1


def test_with_milter_protocol_2_added_fields_have_one_space(rig: Rig, sink: SinkServer) -> None:
    """Before protocol 6 Postfix adds a space to every value it is given (there is no
    SMFIP_HDR_LEADSPC): the marker arrived as "X-Mailroute-Mark:  v1..."."""
    rig.postfix.reload(milter_protocol="2")
    try:
        send(rig, fresh_message())
        [delivered] = sink.wait_for(1)
    finally:
        rig.postfix.reload(milter_protocol="6")
    [mark] = [line for line in delivered.data.split(b"\r\n")
              if line.startswith(b"X-Mailroute-Mark:")]
    assert mark.startswith(b"X-Mailroute-Mark: v1.")
    assert delivered.data.count(DISCLAIMER.encode()) == 1


def test_the_log_line_has_postfix_queue_id_and_each_filter(rig: Rig, sink: SinkServer) -> None:
    message_id = f"<{uuid.uuid4().hex}@corp.example>"
    send(rig, build_message(sender="alice@corp.example", to="bob@partner.example",
                            message_id=message_id))
    [delivered] = sink.wait_for(1)
    found = re.search(rb"\(Postfix\) with E?SMTPS? id ([0-9A-Za-z]+)", delivered.data)
    assert found, delivered.data[:400]
    queue_id = found.group(1).decode()
    deadline = time.monotonic() + 10
    while True:   # the line is written after the reply, so it may follow the delivery
        records = [json.loads(line.removeprefix("mailroute: ")) for line
                   in (rig.root / "milter.log").read_text().splitlines()
                   if line.startswith("mailroute: {")]
        mine = [r for r in records if r["message_id"] == message_id]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    [record] = mine
    assert (record["verdict"], record["status"], record["queue_id"], record["sender"],
            record["recipients"]) == ("accept", "2.0.0", queue_id, "alice@corp.example", 1)
    assert [f["name"] for f in record["filters"]] == ["marker-verify", "disclaimer",
                                                       "marker-set"]
    assert record["filters"][1]["result"] == "changed"
    assert record["client"] == "127.0.0.1"


def macro_packets(recorder: Recorder) -> list[tuple[bytes, list[bytes]]]:
    """The macro packets Postfix sent: (stage, names of the macros with a value)."""
    found = []
    for talk in recorder.conversations:
        data = b"".join(chunk for from_mta, chunk in talk if from_mta)
        while len(data) >= 4:
            length = struct.unpack(">I", data[:4])[0]
            command, payload, data = data[4:5], data[5:4 + length], data[4 + length:]
            if command == b"D":
                names = payload[1:].split(b"\0")[:-1][::2]
                found.append((payload[:1], names))
    return found


def test_postfix_sends_only_the_macros_we_ask_for(rig: Rig, sink: SinkServer) -> None:
    """An empty macro list would make Postfix send its main.cf defaults (address resolutions
    per recipient, the queue id before every header line); the milter asks for nothing at
    the stages it needs nothing from, and Postfix sends empty macro packets there."""
    proxy = Recorder(rig.root / "proxy.sock", rig.socket)
    rig.postfix.reload(smtpd_milters=f"unix:{proxy.path}")
    try:
        send(rig, fresh_message())
        [delivered] = sink.wait_for(1)
    finally:
        rig.postfix.reload(smtpd_milters=f"unix:{rig.socket}")
        proxy.close()
    assert delivered.data.count(DISCLAIMER.encode()) == 1
    packets = macro_packets(proxy)
    stages = {stage for stage, _ in packets}
    assert {b"C", b"H", b"M", b"R", b"T", b"L", b"E"} <= stages, packets
    for stage, names in packets:
        if stage == b"M":
            assert b"{client_addr}" in names
        elif stage in (b"B", b"E"):
            assert names == [b"i"], (stage, names)
        else:
            assert names == [], (stage, names)


def test_disclaimer_not_added_twice_on_a_second_pass(rig: Rig, sink: SinkServer) -> None:
    send(rig, fresh_message())
    [first] = sink.wait_for(1)
    sink.clear()
    header, _, body = first.data.partition(b"\r\n\r\n")
    kept = b"\r\n".join(b"Message-ID: <second.pass@corp.example>"
                        if line.lower().startswith(b"message-id:") else line
                        for line in header.split(b"\r\n")
                        if not line.startswith(b"X-Mailroute-Mark"))
    send(rig, kept + b"\r\n\r\n" + body)
    [second] = sink.wait_for(1)
    assert second.data.count(DISCLAIMER.encode()) == 1


def test_locally_submitted_mail_passes_the_milter_listed_in_non_smtpd_milters(
        rig: Rig, sink: SinkServer) -> None:
    """docs/integrations/milter.md: mail from ``sendmail`` (pickup, no SMTP session, so no
    client address, HELO or TLS facts) is filtered when the milter is listed there too."""
    rig.postfix.reload(non_smtpd_milters=f"unix:{rig.socket}")
    try:
        subprocess.run(["/usr/sbin/sendmail", "-C", str(rig.postfix.config), "-f",
                        "alice@corp.example", "bob@partner.example"], input=fresh_message(),
                       check=True, timeout=30)
        [delivered] = sink.wait_for(1, timeout=60)
    finally:
        rig.postfix.reload(non_smtpd_milters="")
    assert delivered.data.count(DISCLAIMER.encode()) == 1
    assert b"\r\nX-Mailroute-Mark: v1." in delivered.data


def test_twenty_megabyte_message_is_processed(rig: Rig, sink: SinkServer) -> None:
    payload = os.urandom(15 * 1024 * 1024)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    message = (b"From: alice@corp.example\r\nTo: bob@partner.example\r\nSubject: big\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
               b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee attached.\r\n"
               b"--b1\r\nContent-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b1--\r\n")
    assert len(message) > 20_000_000
    send(rig, message)
    [delivered] = sink.wait_for(1, timeout=120)
    assert delivered.data.count(DISCLAIMER.encode()) == 1
    assert encoded in delivered.data


def test_policy_rejection_reaches_the_client_as_5xx(rig: Rig, sink: SinkServer) -> None:
    ambiguous = fresh_message(headers=(("Content-Type", "text/html"),))
    code, text = refusal_code(rig, ambiguous)
    assert 500 <= code <= 599, text
    assert text.startswith(b"5.6.0")
    assert sink.wait_for(1, timeout=1) == []


def test_marker_loop_over_verified_tls_is_refused(rig: Rig, sink: SinkServer) -> None:
    marked = Pipeline(filters=(build_filter("marker-set", Options(
        {"key_file": str(rig.keys)}, source="test")),)).process(
        fresh_message())
    assert marked.data is not None
    code, text = refusal_code(rig, marked.data, tls_client_cert=True)
    assert (code, text[:5]) == (554, b"5.4.6"), text
    # The same message from a client without the Exchange certificate is not a loop.
    send(rig, marked.data)
    assert len(sink.wait_for(1)) == 1


def test_milter_down_means_4xx_and_nothing_delivered(rig: Rig, sink: SinkServer) -> None:
    started = time.monotonic()
    assert rig.stop_milter() == 0
    assert time.monotonic() - started < 5.0  # CLI.md: exit within 5 s of SIGTERM
    assert not rig.socket.exists()
    code, text = refusal_code(rig, build_message(sender="alice@corp.example",
                                                 to="bob@partner.example"))
    assert 400 <= code <= 499, text
    assert sink.wait_for(1, timeout=2) == []


def test_milter_killed_mid_message_delivers_nothing_unprocessed(rig: Rig,
                                                                  sink: SinkServer) -> None:
    payload = base64.encodebytes(os.urandom(12 * 1024 * 1024)).replace(b"\n", b"\r\n")
    message = (b"From: alice@corp.example\r\nTo: bob@partner.example\r\nSubject: kill\r\n"
               b"\r\n" + payload)
    outcome: list[object] = []

    def client() -> None:
        try:
            send(rig, message)
            outcome.append("accepted")
        except smtplib.SMTPException as error:
            outcome.append(error)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.3)
    assert rig.milter is not None
    rig.stop_milter(signal.SIGKILL)
    thread.join(timeout=120)
    delivered = sink.wait_for(1, timeout=3)
    if outcome == ["accepted"]:  # the milter finished before the kill: processed
        assert all(m.data.count(DISCLAIMER.encode()) == 1 for m in delivered)
    else:
        [error] = outcome
        assert isinstance(error, smtplib.SMTPResponseException), error
        assert 400 <= error.smtp_code <= 499, error
        assert delivered == []
