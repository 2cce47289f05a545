"""Fault injection for the milter inside a real Postfix (issue 11): whatever breaks, the SMTP
client gets a 4xx and nothing is delivered; once the fault clears, the message sent again is
delivered exactly once, processed.

Faults: a filter raising an unexpected exception, a MemoryError, gpg missing and gpg hanging
(``pgp-sign``), DNS timing out (``dkim-verify`` against a loopback server that never answers),
the milter killed mid-message, SIGTERM under load, and a milter slower than Postfix's milter
timeouts (a stopped process; a filter that sleeps). Postfix runs with
``milter_default_action = tempfail`` and 3-second milter timeouts.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailroute.testing import build_message
from tests.adapters.postfix_harness import Postfix, SinkServer, free_port, postfix_available
from tests.smtpclient import reply_text

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(not postfix_available(), reason="Postfix not installed")]

REPO = Path(__file__).resolve().parents[2]
GPG = shutil.which("gpg") or "/usr/bin/gpg"
SIGNER = "Gateway <gateway@corp.example>"


class SilentDns:
    """A DNS server on loopback UDP: ``answer = False`` drops every query (a timeout),
    ``answer = True`` says NXDOMAIN to everything."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.answer = False
        self.queries = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode

        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.queries += 1
            if self.answer:
                reply = dns.message.make_response(dns.message.from_wire(data))
                reply.set_rcode(dns.rcode.NXDOMAIN)
                self.sock.sendto(reply.to_wire(), peer)

    def stop(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


@dataclass
class Rig:
    root: Path
    postfix: Postfix
    sink: SinkServer
    dns: SilentDns
    socket: Path
    control: Path
    gpg_dir: Path
    milter: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start_milter(self, policy: str) -> None:
        """``mailroute milter`` (with the ``fault`` filter known) on ``policy``'s text."""
        self.stop_milter()
        path = self.root / "policy.toml"
        path.write_text(policy)
        self.socket.unlink(missing_ok=True)
        env = {**os.environ, "PATH": str(self.gpg_dir),
               "MAILROUTE_TEST_DNS": f"127.0.0.1:{self.dns.port}"}
        log = self.root / "milter.log"
        with log.open("ab") as out:
            self.milter = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.faulty", "-v", "milter", "--config",
                 str(path), "--socket", f"unix:{self.socket}", "--socket-mode", "0660",
                 "--socket-group", "postfix"],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            assert self.milter.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "milter socket did not appear"
            time.sleep(0.05)

    def stop_milter(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the milter by its PID; its exit status."""
        if self.milter is None:
            return None
        if self.milter.poll() is None:
            self.milter.send_signal(sig)
        code = self.milter.wait(timeout=15)
        self.milter = None
        return code

    def gpg(self, script: str | None) -> None:
        """What ``gpg`` on the milter's PATH is: a shell script, or nothing."""
        target = self.gpg_dir / "gpg"
        target.unlink(missing_ok=True)
        if script is not None:
            target.write_text("#!/bin/sh\n" + script + "\n")
            target.chmod(0o755)

    def fault(self, order: str) -> None:
        """What the ``fault`` filter does with the next messages."""
        self.control.write_text(order)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    # Not under pytest's basetemp (reset to 0700): the postfix user must reach the socket.
    root = Path(tempfile.mkdtemp(prefix="mailroute-faults-"))
    os.chmod(root, 0o755)  # noqa: S103 - the postfix user must traverse it
    sink = SinkServer(free_port()).start()
    dns = SilentDns()
    gpg_dir = root / "bin"
    gpg_dir.mkdir()
    socket_path = root / "milter.sock"
    postfix = Postfix(root / "pf", free_port(), sink.server_address[1], settings={
        "smtpd_milters": f"unix:{socket_path}",
        "milter_default_action": "tempfail",
        "milter_connect_timeout": "3s",
        "milter_command_timeout": "3s",
        "milter_content_timeout": "3s",
    })
    rig = Rig(root, postfix, sink, dns, socket_path, root / "control", gpg_dir)
    rig.gpg(f'exec {GPG} "$@"')
    try:
        postfix.start()
        yield rig
    finally:
        postfix.stop()
        rig.stop_milter(signal.SIGKILL)
        dns.stop()
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sink(rig: Rig) -> SinkServer:
    rig.sink.clear()
    rig.fault("ok")
    return rig.sink


def message(sender: str = "alice@corp.example") -> tuple[str, bytes]:
    """A small message with a Message-ID of its own."""
    message_id = f"<{uuid.uuid4().hex}@corp.example>"
    return message_id, build_message(sender=sender, to="bob@partner.example",
                                     message_id=message_id)


def send(rig: Rig, data: bytes, sender: str = "alice@corp.example") -> tuple[int, str]:
    """One SMTP transaction: 250 and the text, or the refusal's code and text."""
    try:
        with smtplib.SMTP("127.0.0.1", rig.postfix.smtpd_port, timeout=60) as client:
            client.sendmail(sender, ["bob@partner.example"], data)
    except smtplib.SMTPResponseException as error:
        return error.smtp_code, reply_text(error).decode(errors="replace")
    except smtplib.SMTPRecipientsRefused as error:
        code, text = next(iter(error.recipients.values()))
        return code, text.decode(errors="replace")
    except smtplib.SMTPServerDisconnected as error:
        return 421, f"disconnected: {error}"
    return 250, "accepted"


def copies(sink: SinkServer, message_id: str) -> list[bytes]:
    """The messages with ``message_id`` the sink received."""
    needle = f"Message-ID: {message_id}".encode()
    return [m.data for m in sink.wait_for(0, timeout=0) if needle in m.data]


def delivered_once(sink: SinkServer, message_id: str, timeout: float = 20.0) -> bytes:
    """The one copy of ``message_id`` (waits for it; fails on none or two)."""
    deadline = time.monotonic() + timeout
    while not copies(sink, message_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)   # a second copy would follow at once
    found = copies(sink, message_id)
    assert len(found) == 1, f"{len(found)} copies of {message_id}"
    return found[0]


def deferred_then_once(rig: Rig, sink: SinkServer, clear: object, *,
                       sender: str = "alice@corp.example", expect: str = "") -> bytes:
    """Send one message under the fault: a 4xx, nothing delivered. Clear the fault (call
    ``clear``), send it again: delivered exactly once. Returns that copy."""
    message_id, data = message(sender)
    code, text = send(rig, data, sender)
    assert 400 <= code <= 499, (code, text)
    assert expect in text, text
    time.sleep(1.0)
    assert copies(sink, message_id) == []
    assert callable(clear)
    clear()
    code, text = send(rig, data, sender)
    assert code == 250, (code, text)
    return delivered_once(sink, message_id)


FAULT_POLICY = '[[pipeline]]\nfilter = "fault"\ncontrol = "control"\n'


def test_a_filter_raising_an_unexpected_exception(rig: Rig, sink: SinkServer) -> None:
    rig.start_milter(FAULT_POLICY)
    rig.fault("raise")
    copy = deferred_then_once(rig, sink, lambda: rig.fault("ok"), expect="4.3.0")
    assert b"X-Fault: passed" in copy
    assert rig.milter is not None
    assert rig.milter.poll() is None   # it kept running


def test_a_memory_error_in_a_filter(rig: Rig, sink: SinkServer) -> None:
    rig.start_milter(FAULT_POLICY)
    rig.fault("memory")
    copy = deferred_then_once(rig, sink, lambda: rig.fault("ok"), expect="4.3.0")
    assert b"X-Fault: passed" in copy


@pytest.fixture(scope="module")
def pgp_policy(rig: Rig) -> str:
    home = rig.root / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run([GPG, "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", "", "--quick-gen-key", SIGNER, "ed25519", "sign", "1y"],
                   check=True, capture_output=True, timeout=120)
    return (f'[[pipeline]]\nfilter = "pgp-sign"\ngnupghome = "{home}"\n'
            f'signer = "gateway@corp.example"\ntimeout = 2\n')


def test_gpg_missing(rig: Rig, sink: SinkServer, pgp_policy: str) -> None:
    rig.gpg(f'exec {GPG} "$@"')
    rig.start_milter(pgp_policy)
    rig.gpg(None)
    copy = deferred_then_once(rig, sink, lambda: rig.gpg(f'exec {GPG} "$@"'))
    assert b"multipart/signed" in copy


def test_gpg_hanging(rig: Rig, sink: SinkServer, pgp_policy: str) -> None:
    rig.gpg(f'exec {GPG} "$@"')
    rig.start_milter(pgp_policy)
    rig.gpg("exec /bin/sleep 600")
    copy = deferred_then_once(rig, sink, lambda: rig.gpg(f'exec {GPG} "$@"'))
    assert b"multipart/signed" in copy


def test_gpg_failing(rig: Rig, sink: SinkServer, pgp_policy: str) -> None:
    # gpg runs but fails without output (a broken install or agent): not "no key", which
    # would refuse the mail for good
    rig.gpg(f'exec {GPG} "$@"')
    rig.start_milter(pgp_policy)
    rig.gpg("exit 2")
    copy = deferred_then_once(rig, sink, lambda: rig.gpg(f'exec {GPG} "$@"'))
    assert b"multipart/signed" in copy


def test_dns_timing_out(rig: Rig, sink: SinkServer) -> None:
    # Internet mail claiming our own domain must be checked (DMARC); DNS never answers.
    rig.start_milter('[[pipeline]]\nfilter = "dkim-verify"\ndns_timeout = 1\nspf = false\n'
                     'arc = false\naccepted_domains = ["corp.example"]\n'
                     'spoof_requires_policy = true\n')
    rig.dns.answer = False
    before = rig.dns.queries

    def clear() -> None:
        rig.dns.answer = True

    try:
        copy = deferred_then_once(rig, sink, clear, expect="4.7.5")
    finally:
        rig.dns.answer = False
    assert rig.dns.queries > before
    assert b"dmarc=none" in copy


def test_milter_killed_mid_message(rig: Rig, sink: SinkServer) -> None:
    rig.start_milter(FAULT_POLICY)
    rig.fault("sleep 2")
    message_id, data = message()
    result: list[tuple[int, str]] = []
    client = threading.Thread(target=lambda: result.append(send(rig, data)))
    client.start()
    time.sleep(1.0)
    rig.stop_milter(signal.SIGKILL)
    client.join(timeout=60)
    [(code, text)] = result
    assert 400 <= code <= 499, (code, text)
    time.sleep(1.0)
    assert copies(sink, message_id) == []
    rig.fault("ok")
    rig.start_milter(FAULT_POLICY)
    assert send(rig, data)[0] == 250
    assert b"X-Fault: passed" in delivered_once(sink, message_id)


def test_milter_stopped_longer_than_postfix_waits(rig: Rig, sink: SinkServer) -> None:
    rig.start_milter(FAULT_POLICY)
    assert rig.milter is not None
    pid = rig.milter.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        copy = deferred_then_once(rig, sink, lambda: os.kill(pid, signal.SIGCONT))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert b"X-Fault: passed" in copy


def test_filter_slower_than_postfix_waits(rig: Rig, sink: SinkServer) -> None:
    rig.start_milter(FAULT_POLICY)
    rig.fault("sleep 5")    # milter_content_timeout is 3 s
    copy = deferred_then_once(rig, sink, lambda: rig.fault("ok"))
    assert b"X-Fault: passed" in copy


def test_sigterm_under_load(rig: Rig, sink: SinkServer) -> None:
    rig.start_milter(FAULT_POLICY)
    rig.fault("sleep 0.02")
    messages = [message() for _ in range(60)]
    refused: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def client(share: list[tuple[str, bytes]]) -> None:
        for message_id, data in share:
            code, _ = send(rig, data)
            assert code == 250 or 400 <= code <= 499, code
            if code != 250:
                with lock:
                    refused.append((message_id, data))

    clients = [threading.Thread(target=client, args=(messages[i::6],)) for i in range(6)]
    for thread in clients:
        thread.start()
    time.sleep(1.0)
    stopping = time.monotonic()
    assert rig.stop_milter(signal.SIGTERM) == 0    # graceful: exit 0 within the grace
    assert time.monotonic() - stopping < 5.0
    for thread in clients:
        thread.join(timeout=120)
    assert refused, "SIGTERM came after the load: nothing was refused"
    rig.fault("ok")
    rig.start_milter(FAULT_POLICY)
    for _, data in refused:
        assert send(rig, data)[0] == 250
    for message_id, _ in messages:
        assert b"X-Fault: passed" in delivered_once(rig.sink, message_id, timeout=30)
