"""A throwaway Postfix on loopback high ports in a temporary directory, and an SMTP sink.

Used by the milter integration tests and by ``benchmarks/milter.py``. Nothing here touches
``/etc/postfix`` or a system instance; every process started is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.mta.common import free_port as free_port  # one implementation for every test
from tests.mta.postfix import BASE_MASTER

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
LIBEXEC = Path("/usr/lib/postfix/sbin")

def postfix_available() -> bool:
    """True when the Postfix binaries are installed."""
    return Path(POSTFIX).exists() and (LIBEXEC / "smtpd").exists()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Wait until something accepts on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Delivered:
    """One message the sink received."""

    mail_from: str
    rcpt_to: list[str]
    data: bytes


class _SinkHandler(socketserver.StreamRequestHandler):
    server: SinkServer

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self._reply("220 sink ESMTP")
        mail_from, rcpts = "", list[str]()
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250-sink\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n")
                self.wfile.flush()
            elif verb == b"MAIL":
                mail_from, rcpts = line[10:].strip().decode().split(" ")[0].strip("<>"), []
                self._reply("250 2.1.0 ok")
            elif verb == b"RCPT":
                rcpts.append(line[8:].strip().decode().strip("<>"))
                self._reply("250 2.1.5 ok")
            elif verb == b"DATA":
                self._reply("354 go ahead")
                chunks = []
                while True:
                    data = self.rfile.readline()
                    if not data or data == b".\r\n":
                        break
                    chunks.append(data[1:] if data.startswith(b".") else data)
                self.server.add(Delivered(mail_from, rcpts, b"".join(chunks)))
                self._reply("250 2.0.0 queued")
            elif verb == b"QUIT":
                self._reply("221 2.0.0 bye")
                return
            else:
                self._reply("250 2.0.0 ok")


class SinkServer(socketserver.ThreadingTCPServer):
    """An SMTP sink on 127.0.0.1 that keeps every message in memory."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections when Postfix opens dozens at
    # once; the dropped ones wait for the greeting until Postfix's timeout and are deferred
    request_queue_size = 128

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _SinkHandler)
        self.messages: list[Delivered] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def add(self, message: Delivered) -> None:
        """Record one delivery."""
        with self.lock:
            self.messages.append(message)

    def start(self) -> SinkServer:
        """Serve in a thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.shutdown()
        self.server_close()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivered]:
        """The messages once at least ``count`` arrived (or what arrived by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self.lock:
            self.messages.clear()


@dataclass
class Postfix:
    """A throwaway Postfix instance: ``start()``, ``stop()``, ``set(main.cf lines)``."""

    root: Path
    smtpd_port: int
    relay_port: int
    settings: dict[str, str] = field(default_factory=dict)
    smtpd_options: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "etc"

    def write_config(self) -> None:
        """main.cf and master.cf from the fields."""
        spool, data = self.root / "spool", self.root / "data"
        for directory in (self.config, spool, data):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # noqa: S103 - the postfix user must traverse it
        shutil.chown(data, "postfix")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(spool),
            "data_directory": str(data),
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "mx.corp.example",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": "/dev/stdout",
            "in_flow_delay": "0",
            "message_size_limit": "52428800",
            "smtp_tls_security_level": "none",
            "milter_default_action": "tempfail",
            "smtpd_milters": "",
            "shlib_directory": "/usr/lib/postfix",
            "smtp_connection_cache_on_demand": "no",
            **self.settings,
        }
        (self.config / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in main.items()))
        options = "".join(f"  -o {option}\n" for option in self.smtpd_options)
        (self.config / "master.cf").write_text(
            f"127.0.0.1:{self.smtpd_port} inet n - n - - smtpd\n{options}" + BASE_MASTER)

    def start(self) -> Postfix:
        """Start ``postfix start-fg`` and wait for the smtpd port."""
        self.write_config()
        with (self.root / "fg.log").open("ab") as log:
            self.process = subprocess.Popen([POSTFIX, "-c", str(self.config), "start-fg"],
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.smtpd_port)
        return self

    def reload(self, **settings: str) -> None:
        """Change main.cf settings and reload."""
        self.settings.update(settings)
        self.write_config()
        subprocess.run([POSTFIX, "-c", str(self.config), "reload"], check=True,
                       capture_output=True, timeout=30)
        time.sleep(0.5)

    def master_pid(self) -> int | None:
        """The PID of the master process, from its pid file."""
        try:
            return int((self.root / "spool" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the master by its PID (its children exit with it), then the wrapper.

        ``postfix start-fg`` runs a shell script whose child is the master: signalling the
        script alone would leave the master running.
        """
        if self.process is None:
            return
        master = self.master_pid()
        if master is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(master, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(master) and time.monotonic() < deadline:
                time.sleep(0.05)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def queue_count(self) -> int:
        """Messages in the incoming, active, deferred and hold queues."""
        spool = self.root / "spool"
        return sum(1 for name in ("incoming", "active", "deferred", "hold", "maildrop")
                   for path in (spool / name).rglob("*") if path.is_file())

    def hold_count(self) -> int:
        """Messages in the hold queue."""
        return sum(1 for path in (self.root / "spool" / "hold").rglob("*") if path.is_file())

    def log_text(self) -> str:
        """The mail log so far."""
        path = self.root / "fg.log"
        return path.read_text(errors="replace") if path.exists() else ""
