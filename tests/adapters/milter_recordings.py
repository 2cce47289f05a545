"""Recorded milter conversations of a real Postfix 3.7 with ``mailroute milter``, and the
policies they were recorded with.

A conversation is what Postfix wrote and what the milter answered, read by read, for one
SMTP session of ``smtp-source`` with one 10 KB message (benchmarks/milter_cpu.py records
them: ``--save DIR``). The files in ``data/postfix-3.7-milter`` were recorded before the
milter's per-message CPU was cut, so replaying them checks that the answers did not change.
Used by the adapter tests and by the benchmarks (which start the milter with the same
policies).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from pathlib import Path

__all__ = ["RECORDED", "Conversation", "Recorder", "load_conversations", "save_conversations",
           "write_policies"]

#: One conversation: (True for what the MTA wrote, the bytes of one read), in order.
Conversation = list[tuple[bool, bytes]]
#: The recordings kept in the repository, one file per policy.
RECORDED = Path(__file__).with_name("data") / "postfix-3.7-milter"
DISCLAIMER_TEXT = "-- \nVertraulich / Confidential. mailroute-disclaimer-v1\n"


def write_policies(root: Path) -> None:
    """``empty.toml`` and ``disclaimer.toml`` (one disclaimer filter) in ``root``."""
    (root / "empty.toml").write_text("")
    (root / "d.txt").write_text(DISCLAIMER_TEXT)
    (root / "disclaimer.toml").write_text('[[pipeline]]\nfilter = "disclaimer"\ntext = "d.txt"\n')


def save_conversations(directory: Path, talks: dict[str, Conversation]) -> None:
    """Write each policy's conversation to ``directory/POLICY.json`` (hex per read)."""
    directory.mkdir(parents=True, exist_ok=True)
    for policy, talk in talks.items():
        (directory / f"{policy}.json").write_text(json.dumps(
            [["mta" if from_mta else "milter", data.hex()] for from_mta, data in talk]))


def load_conversations(directory: Path, policies: list[str]) -> dict[str, Conversation]:
    """The conversations :func:`save_conversations` wrote."""
    return {policy: [(who == "mta", bytes.fromhex(data)) for who, data in
                     json.loads((directory / f"{policy}.json").read_text())]
            for policy in policies}


class Recorder:
    """A unix socket between Postfix and the milter that keeps each connection's reads."""

    def __init__(self, path: Path, target: Path) -> None:
        self.path, self.target = path, target
        self.conversations: list[Conversation] = []
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        os.chmod(path, 0o666)  # noqa: S103 - Postfix's smtpd and cleanup connect to it
        self.listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                mta, _ = self.listener.accept()
                milter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                milter.connect(str(self.target))
                talk: Conversation = []
                with self.lock:
                    self.conversations.append(talk)
                pumps = [threading.Thread(target=self._pump, args=(source, sink, from_mta, talk),
                                          daemon=True)
                         for source, sink, from_mta in ((mta, milter, True), (milter, mta, False))]
                for pump in pumps:
                    pump.start()
                threading.Thread(target=self._close_after, args=(pumps, mta, milter),
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_mta: bool,
              talk: Conversation) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 20):
                with self.lock:
                    talk.append((from_mta, data))
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)  # the other direction may still be talking

    @staticmethod
    def _close_after(pumps: list[threading.Thread], *ends: socket.socket) -> None:
        for pump in pumps:
            pump.join()
        for end in ends:
            end.close()

    def close(self) -> None:
        self.listener.close()
