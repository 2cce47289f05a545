"""The one log line of pipe and process, written without logging (mailroute.adapters.linelog)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroute.adapters.linelog import SyslogLine, line_log
from mailroute.adapters.messagelog import MessageLog, MessageRecord
from mailroute.results import Reply
from mailroute.testing import build_message

RECORD = MessageRecord(verdict="accept", reply=Reply(250, "2.0.0", "message accepted"),
                       queue_id="Q1", message_id="<m1@example.net>",
                       sender="anna@example.net", recipients=2, direction="outbound",
                       exit_code=0, filters=(("disclaimer", "changed"),), duration=0.0035)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # unix socket paths are limited to 108 bytes: pytest's tmp_path can be longer
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ll") as name:
        yield Path(name)


def _datagram_server(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    return server


def test_a_line_is_the_datagram_syslog_handler_sends(short_dir: Path) -> None:
    path = short_dir / "log"
    with _datagram_server(path) as server:
        sink = SyslogLine(str(path))
        sink("accept 2.0.0 queued; queue_id=Q1 sender=<ä@example.net>")
        sink.close()
        ours = server.recv(4096)
        handler = logging.handlers.SysLogHandler(
            str(path), facility=logging.handlers.SysLogHandler.LOG_MAIL)
        handler.setFormatter(logging.Formatter("mailroute[%(process)d]: %(message)s"))
        logger = logging.Logger("linelog-test")
        logger.addHandler(handler)
        logger.info("%s", "accept 2.0.0 queued; queue_id=Q1 sender=<ä@example.net>")
        handler.close()
        theirs = server.recv(4096)
    assert ours == theirs
    assert ours.startswith(b"<22>mailroute[")
    assert ours.endswith(b"\0")


def test_a_stream_socket_is_used_when_there_is_no_datagram_one(short_dir: Path) -> None:
    path = short_dir / "log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        server.settimeout(5)
        sink = SyslogLine(str(path))
        connection, _ = server.accept()
        with connection:
            sink("one line")
            sink.close()
            connection.settimeout(5)
            assert connection.recv(4096).endswith(b"]: one line\0")


def test_the_sink_reconnects_after_the_syslog_daemon_restarted(short_dir: Path) -> None:
    path = short_dir / "log"
    with _datagram_server(path) as server:
        sink = SyslogLine(str(path))
        sink("first")
        assert server.recv(4096).endswith(b"first\0")
    path.unlink()
    with _datagram_server(path) as server:
        sink("second")
        sink.close()
        assert server.recv(4096).endswith(b"second\0")


def test_a_line_syslog_cannot_take_goes_to_stderr(short_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = short_dir / "log"
    with _datagram_server(path):
        sink = SyslogLine(str(path))
    path.unlink()  # the daemon went away for good
    sink("lost otherwise")
    sink.close()
    assert capsys.readouterr().err == "mailroute: lost otherwise\n"


@pytest.mark.parametrize("target", ["syslog", "auto"])
def test_without_a_syslog_socket_the_line_goes_to_stderr(
        short_dir: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    log = line_log(target, "text", syslog_socket=str(short_dir / "missing"))
    log.write(RECORD)
    assert capsys.readouterr().err.startswith("mailroute: accept 2.0.0 message accepted; "
                                              "queue_id=Q1 ")


def test_auto_uses_the_syslog_socket_when_it_exists(short_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = short_dir / "log"
    with _datagram_server(path) as server:
        log = line_log("auto", "json", syslog_socket=str(path))
        log.write(RECORD)
        assert isinstance(log.sink, SyslogLine)
        log.sink.close()
        assert b'"queue_id":"Q1"' in server.recv(4096)
    assert capsys.readouterr().err == ""


def test_none_writes_nothing(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line_log("none", "text", syslog_socket=str(short_dir / "log")).write(RECORD)
    assert capsys.readouterr() == ("", "")


def test_a_failing_sink_never_raises_from_the_log() -> None:
    def broken(line: str) -> None:
        raise ValueError("I/O operation on closed file")

    MessageLog("text", sink=broken).write(RECORD)  # must not raise


def test_pipe_writes_its_line_without_loading_logging(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    sendmail = tmp_path / "sendmail"
    sendmail.write_text("#!/bin/sh\ncat > /dev/null\n")
    sendmail.chmod(0o755)
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: sys.stderr.write('LOGGING ' + str('logging' in "
             "sys.modules) + '\\n'))\n"
             "sys.argv = ['mailroute', *sys.argv[1:]]\n"
             "from mailroute.cli import entry_point\nentry_point()\n")
    done = subprocess.run(
        [sys.executable, "-c", probe, "pipe", "--config", str(policy), "--sender",
         "anna@example.net", "--reinject", f"sendmail:{sendmail}", "--log", "stderr",
         "--queue-id", "4ABC", "--", "max@partner.example"],
        input=build_message(), capture_output=True, text=False, timeout=60, check=False)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "mailroute: accept 2.0.0 handed on" in err
    assert "queue_id=4ABC" in err
    assert err.rstrip().endswith("LOGGING False")


def test_each_line_carries_the_pid_of_the_process_that_writes_it(short_dir: Path) -> None:
    # milter --processes N: the log is made before the workers fork
    path = short_dir / "log"
    with _datagram_server(path) as server:
        sink = SyslogLine(str(path))
        child = os.fork()
        if child == 0:  # pragma: no cover - the child's coverage is not collected
            sink("from the worker")
            os._exit(0)
        os.waitpid(child, 0)
        sink.close()
        assert server.recv(4096) == f"<22>mailroute[{child}]: from the worker\0".encode()
