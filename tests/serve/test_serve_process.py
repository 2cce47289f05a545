"""``mailroute serve`` as a process: SIGTERM under load, SIGKILL mid-message, a policy
whose gpg is missing, the ``--check`` probe."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.serve.harness import MESSAGE, Process
from tests.smtpsink import SmtpSink


def numbered(n: int) -> bytes:
    return MESSAGE.replace(b"<m1@corp.example>", f"<load-{n}@corp.example>".encode())


def message_ids(sink: SmtpSink) -> list[str]:
    ids = []
    for transaction in sink.delivered:
        for line in transaction.body.split(b"\r\n"):
            if line.startswith(b"Message-ID: "):
                ids.append(line[12:].decode())
    return ids


@pytest.fixture
def empty_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "empty.toml"
    policy.write_text("")
    return policy


def test_sigterm_under_load_exits_in_time_and_loses_nothing(empty_policy: Path) -> None:
    accepted: list[int] = []
    failed: list[int] = []
    lock = threading.Lock()
    counter = iter(range(100_000))
    stop = threading.Event()

    def client(serve_port: int) -> None:
        while not stop.is_set():
            with lock:
                n = next(counter)
            try:
                with smtplib.SMTP("127.0.0.1", serve_port, timeout=20) as smtp:
                    smtp.sendmail("alice@corp.example", ["bob@partner.example"], numbered(n))
                with lock:
                    accepted.append(n)
            except (smtplib.SMTPException, OSError):
                with lock:
                    failed.append(n)
                time.sleep(0.05)

    with SmtpSink(data_delay=0.2) as sink:
        serve = Process(empty_policy, sink.port).start()
        threads = [threading.Thread(target=client, args=(serve.port,)) for _ in range(10)]
        for thread in threads:
            thread.start()
        sink.wait_for(20)
        started = time.monotonic()
        serve.signal(signal.SIGTERM)
        code, err = serve.wait(timeout=15)
        took = time.monotonic() - started
        stop.set()
        for thread in threads:
            thread.join(30)
        time.sleep(0.5)
        delivered = message_ids(sink)
        # Retry what was refused once the service is back: each arrives exactly once.
        with Process(empty_policy, sink.port) as again:
            for n in failed:
                with smtplib.SMTP("127.0.0.1", again.port, timeout=20) as smtp:
                    smtp.sendmail("alice@corp.example", ["bob@partner.example"], numbered(n))
            sink.wait_for(len(delivered) + len(failed))
        final = message_ids(sink)
    assert code == 0, err
    assert took < 5.0                # CLI.md: exit within 5 s of SIGTERM
    assert failed, "the load did not overlap the shutdown"
    assert sorted(delivered) == sorted(f"<load-{n}@corp.example>" for n in accepted)
    assert len(final) == len(set(final)) == len(accepted) + len(failed)


def test_killed_mid_message_delivers_nothing_and_the_retry_arrives_once(
        empty_policy: Path) -> None:
    with SmtpSink() as sink:
        serve = Process(empty_policy, sink.port).start()
        with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as raw:
            reader = raw.makefile("rb")
            reader.readline()
            for command in (b"EHLO client.test", b"MAIL FROM:<alice@corp.example>",
                            b"RCPT TO:<bob@partner.example>", b"DATA"):
                raw.sendall(command + b"\r\n")
                while (line := reader.readline())[3:4] == b"-":
                    pass
            assert line.startswith(b"354")
            raw.sendall(MESSAGE[:40])
            time.sleep(0.3)
            serve.signal(signal.SIGKILL)
            serve.wait()
            assert reader.read() == b""         # no 250 ever came
        time.sleep(0.3)
        assert sink.delivered == []
        with Process(empty_policy, sink.port) as again, \
                smtplib.SMTP("127.0.0.1", again.port, timeout=20) as smtp:
            smtp.sendmail("alice@corp.example", ["bob@partner.example"], MESSAGE)
            sink.wait_for(1)
            time.sleep(0.3)
            assert len(sink.delivered) == 1


def _gnupghome(tmp_path: Path) -> Path:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    return home


def test_a_pgp_policy_without_gpg_refuses_to_start(tmp_path: Path) -> None:
    home = _gnupghome(tmp_path)
    policy = tmp_path / "pgp.toml"
    policy.write_text(f'[[pipeline]]\nfilter = "pgp-encrypt"\ngnupghome = "{home}"\n'
                      'on_missing_key = "tempfail"\n')
    bindir = tmp_path / "bin"
    bindir.mkdir()   # a PATH with python but without gpg
    os.symlink(shutil.which("python3") or "/usr/bin/python3", bindir / "python3")
    env = {**os.environ, "PATH": str(bindir)}
    serve = Process(policy, 1, env=env).start(wait=False)
    code, err = serve.wait(timeout=30)
    assert code == 78
    assert err.startswith("4.3.5 configuration error")


def test_gpg_vanishing_while_running_is_451_and_the_retry_arrives_once(
        tmp_path: Path) -> None:
    home = _gnupghome(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    gpg = bindir / "gpg"
    os.symlink(shutil.which("gpg") or "/usr/bin/gpg", gpg)
    policy = tmp_path / "pgp.toml"
    policy.write_text(f'[[pipeline]]\nfilter = "pgp-encrypt"\ngnupghome = "{home}"\n'
                      f'on_missing_key = "pass"\n')
    env = {**os.environ, "PATH": f"{bindir}:/usr/local/bin:/usr/sbin:/sbin"}
    with SmtpSink() as sink, Process(policy, sink.port, env=env) as serve:
        gpg.unlink()
        with smtplib.SMTP("127.0.0.1", serve.port, timeout=30) as smtp:
            smtp.ehlo()
            smtp.mail("alice@corp.example")
            smtp.rcpt("bob@partner.example")
            code, text = smtp.data(MESSAGE)
        assert code == 451, text
        assert sink.delivered == []
        os.symlink(shutil.which("gpg") or "/usr/bin/gpg", gpg)
        with smtplib.SMTP("127.0.0.1", serve.port, timeout=30) as smtp:
            assert smtp.sendmail("alice@corp.example", ["bob@partner.example"], MESSAGE) == {}
        assert len(sink.wait_for(1)) == 1


def test_check_reports_a_healthy_service_and_a_dead_next_hop(empty_policy: Path) -> None:
    import subprocess
    import sys

    with SmtpSink() as sink, Process(empty_policy, sink.port) as serve:
        argv = [sys.executable, "-m", "mailroute", "serve", "--check", "--config",
                str(empty_policy), "--listen", f"127.0.0.1:{serve.port}"]
        healthy = subprocess.run([*argv, "--next-hop", f"127.0.0.1:{sink.port}"],
                                 capture_output=True, text=True, timeout=60, check=False)
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            dead_port = unused.getsockname()[1]
        dead = subprocess.run([*argv, "--next-hop", f"127.0.0.1:{dead_port}"],
                              capture_output=True, text=True, timeout=60, check=False)
    assert healthy.returncode == 0, healthy.stderr
    assert dead.returncode == 75
    assert dead.stderr.startswith(f"4.4.1 next hop 127.0.0.1:{dead_port} not healthy")
