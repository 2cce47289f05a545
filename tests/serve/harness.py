"""Run ``mailroute serve`` in-process (a thread with its own event loop) or as a process."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mailroute.adapters.serve import GatewayService, NextHop, ServeSettings
from mailroute.pipeline import Pipeline
from tests.mta.common import free_port

MESSAGE = (b"From: Alice <alice@corp.example>\r\nTo: bob@partner.example\r\n"
           b"Subject: hello\r\nMessage-ID: <m1@corp.example>\r\n\r\nHello Bob.\r\n"
           b".leading dot line\r\n")


class InProcess:
    """``GatewayService`` on 127.0.0.1, a free port, in a background thread."""

    def __init__(self, pipeline: Pipeline, next_hop_port: int, **settings: Any) -> None:
        base = ServeSettings(next_hop=NextHop("127.0.0.1", next_hop_port), workers=2)
        self.settings = replace(base, **settings)
        self.service = GatewayService(pipeline, self.settings)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> InProcess:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.service.start("127.0.0.1", 0), self.loop)
        self.port = future.result(10)
        return self

    def stop_service(self) -> None:
        """Stop the service (idempotent): its connections to next hops close."""
        if not self.service.stopping:
            asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop).result(15)

    def __exit__(self, *exc: object) -> None:
        self.stop_service()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def client(self, timeout: float = 30.0) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test",
                            timeout=timeout)

    def send(self, message: bytes = MESSAGE, sender: str = "alice@corp.example",
             recipients: Sequence[str] = ("bob@partner.example",)) -> dict[str, Any]:
        with self.client() as smtp:
            return smtp.sendmail(sender, list(recipients), message)


class Process:
    """``python -m mailroute serve`` as a child process, stopped by its PID."""

    def __init__(self, policy: Path, next_hop_port: int, *extra: str,
                 env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.argv = [sys.executable, "-m", "mailroute", "-v", "serve", "--config", str(policy),
                     "--listen", f"127.0.0.1:{self.port}",
                     "--next-hop", f"127.0.0.1:{next_hop_port}", "--log", "stderr", *extra]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Process:
        self.proc = subprocess.Popen(self.argv, stderr=subprocess.PIPE, env=self.env)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"serve exited {self.proc.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("serve did not start listening")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float = 15.0) -> tuple[int, str]:
        assert self.proc is not None
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode("utf-8", "replace")

    def stop(self) -> tuple[int, str]:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait()

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.communicate(timeout=10)   # closes the stderr pipe
