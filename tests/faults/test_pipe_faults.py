"""Fault injection for the pipe adapter (``mailroute pipe``): every fault is a temporary failure
(exit 75, or 78 for a missing program, both deferred by Postfix and the shipped Exim recipe)
and nothing is handed on. tests/mta/test_postfix_faults.py shows the same faults behind a
real Postfix and the message delivered exactly once after the fault clears.

The next hop is a real SMTP listener (tests/smtpsink.py), a closed port, a listener that never
answers, or a sendmail script that fails or hangs; gpg is the real one or a script in its
place that hangs; DNS is a UDP socket that never answers, made the system resolver in a
private mount namespace.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import pytest

from mailroute.adapters.output import Chunks
from mailroute.adapters.reinject import HandOn, HandOnStatus, SendmailReinjector, SmtpReinjector
from mailroute.adapters.transport import TransportRun, run_pipe_transport
from mailroute.errors import MailrouteError
from mailroute.exitcodes import ExitCode
from mailroute.item import Context, Envelope, MailItem
from mailroute.pipeline import Pipeline
from mailroute.testing import build_message
from tests.mta.common import free_port
from tests.smtpsink import SmtpSink

MESSAGE = build_message(sender="a@corp.example", to="b@partner.example", subject="fault")
RCPTS = ["b@partner.example", "c@other.example"]


def _policy(folder: Path, body: str = "") -> Path:
    policy = folder / "policy.toml"
    policy.write_text('[gateway]\ninternal_domains = ["corp.example"]\n\n[[pipeline]]\n'
                      'filter = "headers"\nadd = { X-Processed = "mailroute" }\n' + body)
    return policy


def _pipe(policy: Path, reinject: str, *, env: dict[str, str] | None = None,
          prefix: tuple[str, ...] = (), timeout: float = 60,
          ) -> subprocess.CompletedProcess[bytes]:
    command = [*prefix, sys.executable, "-m", "mailroute", "pipe", "--config", str(policy),
               "--sender", "a@corp.example", "--queue-id", "QFAULT", "--log", "stderr",
               "--reinject", reinject, "--", *RCPTS]
    return subprocess.run(command, input=MESSAGE, capture_output=True, timeout=timeout,
                          check=False, env={**os.environ, **(env or {})})


def _deferred(done: subprocess.CompletedProcess[bytes], code: int = ExitCode.TEMPFAIL,
              status: bytes = b"4.") -> None:
    assert done.returncode == code, done.stderr
    assert done.stdout == b""
    assert done.stderr.startswith(status), done.stderr  # the status line first
    assert b"Traceback" not in done.stderr


def _script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


def test_a_healthy_run_hands_on_once_to_every_recipient(tmp_path: Path, sink: SmtpSink) -> None:
    done = _pipe(_policy(tmp_path), f"smtp:127.0.0.1:{sink.port}")
    assert (done.returncode, done.stdout) == (0, b"")
    [handed] = sink.wait_for(1)
    assert handed.recipients == RCPTS
    assert b"X-Processed: mailroute" in handed.body


# -- the next hop -----------------------------------------------------------------------------

def test_the_reinjection_port_closed_is_a_tempfail(tmp_path: Path) -> None:
    done = _pipe(_policy(tmp_path), f"smtp:127.0.0.1:{free_port()}")
    _deferred(done, status=b"4.3.0 hand-on failed")


def test_a_failing_sendmail_is_a_tempfail(tmp_path: Path) -> None:
    failing = _script(tmp_path / "sendmail", "cat >/dev/null; echo 'postdrop: queue full' >&2;"
                                             " exit 75\n")
    done = _pipe(_policy(tmp_path), f"sendmail:{failing}")
    _deferred(done, status=b"4.3.0 hand-on failed")
    assert b"exited 75: postdrop: queue full" in done.stderr


def test_a_missing_sendmail_is_a_tempfail(tmp_path: Path) -> None:
    done = _pipe(_policy(tmp_path), f"sendmail:{tmp_path / 'no-such-sendmail'}")
    _deferred(done, status=b"4.3.0 hand-on failed")


class _SilentServer:
    """Accepts connections and never says a word (a next hop that hangs)."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        try:
            while True:
                self._held.append(self._socket.accept()[0])
        except OSError:
            return

    def close(self) -> None:
        self._socket.close()
        for held in self._held:
            held.close()


def _transport(reinjector: SmtpReinjector | SendmailReinjector) -> TransportRun:
    return TransportRun(envelope=Envelope(mail_from="a@corp.example", rcpt_to=tuple(RCPTS)),
                        reinjector=reinjector, queue_id="QSLOW")


def test_a_next_hop_that_never_answers_is_a_tempfail_after_the_timeout() -> None:
    silent = _SilentServer()
    try:
        stderr = io.StringIO()
        start = time.monotonic()
        code = run_pipe_transport(Pipeline(), _bytes_io(MESSAGE), stderr,
                                  _transport(SmtpReinjector("127.0.0.1", silent.port, timeout=1)))
        assert time.monotonic() - start < 10
    finally:
        silent.close()
    assert code == ExitCode.TEMPFAIL
    assert stderr.getvalue().startswith("4.3.0 hand-on failed: 127.0.0.1:")


def test_a_sendmail_that_hangs_is_killed_and_a_tempfail(tmp_path: Path) -> None:
    hanging = _script(tmp_path / "sendmail", "exec sleep 30\n")
    handon = SendmailReinjector(str(hanging), timeout=1).deliver(MESSAGE, "a@corp.example",
                                                                 RCPTS)
    assert handon.status is HandOnStatus.TEMPORARY
    assert "timed out after 1 s" in handon.detail


def _bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


# -- the filters ------------------------------------------------------------------------------

class _Recorder:
    """A next hop that records what it is given (to show that nothing is)."""

    def __init__(self) -> None:
        self.calls = 0

    def deliver(self, data: bytes | Chunks, sender: str, recipients: Sequence[str]) -> HandOn:
        self.calls += 1
        raise AssertionError("nothing may be handed on")


class _Broken:
    name = "broken"

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        if self.error is None:
            bytearray(1 << 46)  # a real MemoryError: 64 TiB is refused at once
            raise AssertionError("64 TiB were allocated")
        raise self.error


@pytest.mark.parametrize("fault", [KeyError("oops"), ZeroDivisionError(), RecursionError(),
                                   None], ids=["KeyError", "ZeroDivisionError",
                                               "RecursionError", "MemoryError"])
def test_a_filter_that_raises_anything_is_a_tempfail_and_nothing_is_handed_on(
        fault: BaseException | None) -> None:
    recorder = _Recorder()
    stderr = io.StringIO()
    run = TransportRun(envelope=Envelope(mail_from="a@corp.example", rcpt_to=tuple(RCPTS)),
                       reinjector=recorder)
    code = run_pipe_transport(Pipeline(filters=(_Broken(fault),)),
                              _bytes_io(MESSAGE), stderr, run)
    assert code == ExitCode.TEMPFAIL
    assert recorder.calls == 0
    assert stderr.getvalue().startswith("4.3.0 internal error, reference ")


# -- gpg --------------------------------------------------------------------------------------

def _pgp_policy(folder: Path) -> Path:
    home = folder / "gnupg"
    home.mkdir(mode=0o700)
    return _policy(folder, f'\n[[pipeline]]\nfilter = "pgp-encrypt"\ngnupghome = "{home}"\n'
                           'recipient = ["nobody@partner.example"]\n'
                           'on_missing_key = "pass"\ntimeout = 2\n')


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_with_gpg_working_the_message_passes(tmp_path: Path, sink: SmtpSink) -> None:
    done = _pipe(_pgp_policy(tmp_path), f"smtp:127.0.0.1:{sink.port}")
    assert done.returncode == 0, done.stderr
    assert len(sink.wait_for(1)) == 1


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_gpg_that_hangs_is_killed_and_a_tempfail(tmp_path: Path, sink: SmtpSink) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = shutil.which("gpg")
    _script(bin_dir / "gpg", f'case "$*" in *--version*|*--list-config*) exec {real} "$@";; esac\n'
                             "exec sleep 60\n")
    start = time.monotonic()
    done = _pipe(_pgp_policy(tmp_path), f"smtp:127.0.0.1:{sink.port}",
                 env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    _deferred(done)
    assert time.monotonic() - start < 30
    assert sink.delivered == []


def test_gpg_missing_is_a_configuration_error_the_mta_defers(tmp_path: Path,
                                                              sink: SmtpSink) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = _pipe(_pgp_policy(tmp_path), f"smtp:127.0.0.1:{sink.port}", env={"PATH": str(empty)})
    # 78 with a 4.3.5 status: Postfix defers it, the Exim recipe lists it in temp_errors.
    _deferred(done, code=ExitCode.CONFIG, status=b"4.3.5 configuration error")
    assert sink.delivered == []


# -- DNS --------------------------------------------------------------------------------------

def _blackhole_dns() -> tuple[socket.socket, str]:
    """A UDP socket on 127.0.0.1:53 that reads queries and never answers."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.1", 53))
    except OSError as exc:
        udp.close()
        pytest.skip(f"cannot listen on 127.0.0.1:53 ({exc.strerror})")
    return udp, "127.0.0.1"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare (a private /etc/resolv.conf)")
def test_a_dns_timeout_in_dkim_verify_is_a_tempfail(tmp_path: Path, sink: SmtpSink) -> None:
    pytest.importorskip("dns.resolver")
    udp, address = _blackhole_dns()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {address}\noptions timeout:1 attempts:1\n")
    policy = _policy(tmp_path, '\n[[pipeline]]\nfilter = "dkim-verify"\ndns_timeout = 2\n'
                               'accepted_domains = ["corp.example"]\n')
    try:
        start = time.monotonic()
        # mail from the internet whose From claims our own domain needs DNS to be judged
        done = _pipe(policy, f"smtp:127.0.0.1:{sink.port}",
                     prefix=("unshare", "-m", "sh", "-c",
                             f'mount --bind {resolv} /etc/resolv.conf && exec "$@"', "sh"))
        elapsed = time.monotonic() - start
    finally:
        udp.close()
    _deferred(done)
    assert elapsed < 30
    assert sink.delivered == []


# -- signals ----------------------------------------------------------------------------------

def _message_file(folder: Path) -> BinaryIO:
    path = folder / "message.eml"
    path.write_bytes(MESSAGE)
    return path.open("rb")


def _slow_gpg_pipe(tmp_path: Path, sink: SmtpSink) -> subprocess.Popen[bytes]:
    """``mailroute pipe`` busy in a filter (a gpg that sleeps 60 s, timeout 120 s)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = shutil.which("gpg")
    started = tmp_path / "gpg-started"
    _script(bin_dir / "gpg", f'case "$*" in *--version*|*--list-config*) exec {real} "$@";; esac\n'
                             f"touch {started}; exec sleep 60\n")
    policy = _pgp_policy(tmp_path)
    policy.write_text(policy.read_text().replace("timeout = 2", "timeout = 120"))
    with _message_file(tmp_path) as stdin:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailroute", "pipe", "--config", str(policy), "--sender",
             "a@corp.example", "--log", "stderr", "--reinject", f"smtp:127.0.0.1:{sink.port}",
             "--", *RCPTS], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "gpg was never called"
    return process


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_sigterm_while_filtering_is_a_tempfail_and_nothing_is_handed_on(
        tmp_path: Path, sink: SmtpSink) -> None:
    process = _slow_gpg_pipe(tmp_path, sink)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == ExitCode.TEMPFAIL, stderr
    assert stdout == b""
    assert stderr.startswith(b"4.3.0 terminated by a signal"), stderr
    assert sink.delivered == []


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_sigkill_while_filtering_hands_nothing_on(tmp_path: Path, sink: SmtpSink) -> None:
    process = _slow_gpg_pipe(tmp_path, sink)
    process.kill()
    stdout, _ = process.communicate(timeout=30)
    assert (process.returncode, stdout) == (-signal.SIGKILL, b"")
    time.sleep(0.5)
    assert sink.transactions == []  # the MTA sees a death by signal and defers


def test_sigterm_while_handing_on_waits_for_the_next_hop_and_exits_0(tmp_path: Path) -> None:
    """Once the next hop is taking the message, a SIGTERM must not turn it into a retry (the
    message would arrive twice): the hand-on finishes and the run reports it."""
    took = tmp_path / "took"
    started = tmp_path / "started"
    slow = _script(tmp_path / "sendmail", f"touch {started}; sleep 2; cat > {took}; exit 0\n")
    with _message_file(tmp_path) as stdin:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailroute", "pipe", "--config", str(_policy(tmp_path)),
             "--sender", "a@corp.example", "--log", "stderr", "--reinject", f"sendmail:{slow}",
             "--", *RCPTS], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert b"X-Processed: mailroute" in took.read_bytes()


def test_the_error_hierarchy_types_the_signal_as_temporary() -> None:
    from mailroute.commands.pipe import TerminatedError

    assert issubclass(TerminatedError, MailrouteError)
    assert TerminatedError("x").retryable
