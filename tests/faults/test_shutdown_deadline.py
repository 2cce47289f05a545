"""CLI.md: ``milter`` and ``serve`` finish in-flight messages and exit on SIGTERM within 5
seconds. Measured from the signal to the process's exit, with the worst in flight: a policy
run stuck in a worker thread (the MTA or client gets a temporary failure, nothing is
accepted) and, for ``serve``, a client idle in the middle of a transaction."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.adapters.postfix_harness import free_port
from tests.protocols.helpers import optneg, pkt
from tests.serve.test_serve_tls import Pki, client_context
from tests.serve.test_serve_topology import SMART_HOST, T1
from tests.smtpclient import smtp_as
from tests.smtpsink import SmtpSink

REPO = Path(__file__).resolve().parents[2]
#: The contract's limit.
LIMIT = 5.0
#: A line of a message bigger than the adapters' inline size: its policy run goes to the pool.
LINE = b"y" * 78 + b"\r\n"


@pytest.fixture
def stuck_policy(tmp_path: Path) -> Path:
    """A policy whose one filter sleeps 30 s (tests/faults/faulty.py)."""
    (tmp_path / "control").write_text("sleep 30")
    policy = tmp_path / "stuck.toml"
    policy.write_text('[[pipeline]]\nfilter = "fault"\ncontrol = "control"\n')
    return policy


def start(args: list[str], log: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.faults.faulty", *args],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})


def seconds_to_exit(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM ``process``; its exit status and the seconds it took."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
    return code, time.monotonic() - started


def connected(connect: Callable[[], socket.socket], timeout: float = 20.0) -> socket.socket:
    """``connect()`` once the server listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_milter_with_a_stuck_policy_run_tempfails_and_exits_in_time(
        tmp_path: Path, stuck_policy: Path, processes: str) -> None:
    path = tmp_path / "milter.sock"
    milter = start(["milter", "--config", str(stuck_policy), "--socket", f"unix:{path}",
                    "--processes", processes], tmp_path / "milter.log")

    def connect() -> socket.socket:
        mta = socket.socket(socket.AF_UNIX)
        try:
            mta.connect(str(path))
        except OSError:
            mta.close()
            raise
        return mta

    with connected(connect) as mta:
        mta.sendall(optneg())
        assert mta.recv(4096)[4:5] == b"O"
        mta.sendall(pkt(b"C", b"client\x004\x00\x19192.0.2.1\x00") + pkt(b"H", b"x\x00")
                    + pkt(b"M", b"<a@corp.example>\x00") + pkt(b"R", b"<b@partner.example>\x00")
                    + pkt(b"L", b"Subject\x00 hi\x00") + pkt(b"N") + pkt(b"B", LINE * 1000)
                    + pkt(b"E"))
        time.sleep(1.0)  # the policy run is in its thread
        code, took = seconds_to_exit(milter)
        mta.settimeout(5)
        answer = b""
        while chunk := mta.recv(4096):
            answer += chunk
    assert code == 0, (tmp_path / "milter.log").read_text()[-2000:]
    assert took < LIMIT
    assert b"y451 4.3.0" in answer   # the MTA tempfails: nothing half-processed goes on


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def serve_session(tmp_path: Path, policy: Path, sink: SmtpSink
                  ) -> tuple[subprocess.Popen[bytes], socket.socket]:
    port = free_port()
    serve = start(["serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}",
                   "--next-hop", f"127.0.0.1:{sink.port}"], tmp_path / "serve.log")
    client = connected(lambda: socket.create_connection(("127.0.0.1", port), timeout=10))
    return serve, client


def command(client: socket.socket, reader: BinaryIO, line: bytes) -> bytes:
    """Send ``line``; the last line of the reply."""
    client.sendall(line + b"\r\n")
    while (reply := reader.readline())[3:4] == b"-":
        pass
    return reply


@pytest.mark.parametrize("case", ["stuck-policy", "idle-client"])
def test_serve_exits_in_time_and_says_421(tmp_path: Path, stuck_policy: Path, sink: SmtpSink,
                                          case: str) -> None:
    serve, client = serve_session(tmp_path, stuck_policy, sink)
    with client, client.makefile("rb") as reader:
        assert reader.readline().startswith(b"220")
        command(client, reader, b"EHLO client.test")
        assert command(client, reader, b"MAIL FROM:<a@corp.example>").startswith(b"250")
        if case == "stuck-policy":
            assert command(client, reader, b"RCPT TO:<b@partner.example>").startswith(b"250")
            assert command(client, reader, b"DATA").startswith(b"354")
            client.sendall(b"Subject: x\r\n\r\n" + LINE * 2000 + b".\r\n")
        time.sleep(1.0)
        code, took = seconds_to_exit(serve)
        last = reader.readline()
    assert code == 0, (tmp_path / "serve.log").read_text()[-2000:]
    assert took < LIMIT
    assert last.startswith(b"421 4.3.2 ")
    assert sink.delivered == []


@pytest.fixture
def silent_dns() -> Iterator[int]:
    """A UDP port that takes DNS queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        yield int(server.getsockname()[1])


def test_serve_exits_in_time_with_a_dns_lookup_hanging(tmp_path: Path, stuck_policy: Path,
                                                       sink: SmtpSink, silent_dns: int) -> None:
    """``serve --topology`` looks up the recipient domain's MX in a thread at RCPT; a lookup
    that hangs (here for up to its 30 s timeout) must not keep the process alive."""
    (tmp_path / "control").write_text("ok")
    pki = Pki(tmp_path)
    topology = tmp_path / "t1.toml"   # this machine's addresses count as Exchange Online
    topology.write_text(T1.read_text().replace(
        "[gateway]\n", '[gateway]\nexo_ip_ranges = ["127.0.0.0/8"]\n', 1))
    port = free_port()
    serve = start(["serve", "--config", str(stuck_policy), "--listen", f"127.0.0.1:{port}",
                   "--topology", str(topology), "--dns-timeout", "30",
                   "--route", f"{SMART_HOST}=127.0.0.1:{sink.port}",
                   "--tls-cert", str(pki.gateway.cert_path),
                   "--tls-key", str(pki.gateway.key_path), "--client-ca", str(pki.ca.cert_path)],
                  tmp_path / "serve.log", env={"MAILROUTE_TEST_DNS": f"127.0.0.1:{silent_dns}"})
    connected(lambda: socket.create_connection(("127.0.0.1", port), timeout=10)).close()
    with smtp_as("mailroute.corp.example", port, local_hostname="exo.test") as client:
        client.ehlo()
        client.starttls(context=client_context(pki, pki.exo))
        client.ehlo()
        assert client.mail("a@corp.example")[0] == 250
        client.putcmd("rcpt", "TO:<b@partner.example>")   # the MX lookup hangs
        time.sleep(1.0)
        code, took = seconds_to_exit(serve)
        reply, _ = client.getreply()
    assert code == 0, (tmp_path / "serve.log").read_text()[-2000:]
    assert took < LIMIT
    assert reply == 421
    assert sink.delivered == []
