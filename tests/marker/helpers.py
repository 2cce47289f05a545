"""Shared test data for the marker tests: key files, rings, messages and a fixed clock."""

from __future__ import annotations

import base64
import datetime as dt
import tomllib
from collections.abc import Callable
from pathlib import Path

from mailroute.marker import KeyRing, parse_key_ring

TAG = "g7k2qd"
OTHER_TAG = "zz3y7a"
ORG = "example.net"
NOW = 1_790_000_000  # 2026-09-21, a fixed clock for every test
HOUR = 3600
DAY = 24 * HOUR

# Distinctive secrets, so that a leak into a repr, a log line or an error is easy to spot.
SECRET_A = b"A-secret-that-must-never-leak-01"  # 32 bytes
SECRET_B = b"B-secret-that-must-never-leak-02"
SECRET_A_B64 = base64.b64encode(SECRET_A).decode()
SECRET_B_B64 = base64.b64encode(SECRET_B).decode()

MESSAGE = (
    b"Received: from client.example.net ([192.0.2.1]) by mx.example.net\r\n"
    b"From: Alice Example <Alice@Example.NET>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: quarterly report\r\n"
    b"Message-ID: <20260921.abc123@Mail.Example.NET>\r\n"
    b"Date: Mon, 21 Sep 2026 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Bob,\r\nthe figures are attached.\r\n"
)

OTHER_MESSAGE = (
    b"From: Mallory <mallory@example.org>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: urgent\r\n"
    b"Message-ID: <other.999@example.org>\r\n"
    b"\r\n"
    b"Click here.\r\n"
)


def stamp(seconds: float) -> dt.datetime:
    """A UTC datetime for UNIX ``seconds``."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def toml_time(seconds: float) -> str:
    """A TOML offset datetime for UNIX ``seconds``."""
    return stamp(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_file_text(*, tag: str = TAG, org_id: str = ORG,
                  keys: tuple[dict[str, object], ...] | None = None) -> str:
    """A key file; each key dict has ``id``, ``secret`` and optional UNIX-second windows."""
    if keys is None:
        keys = ({"id": "k1", "secret": SECRET_A_B64},)
    lines = [f'tag = "{tag}"', f'org_id = "{org_id}"']
    for key in keys:
        lines.append("[[key]]")
        for name, value in key.items():
            if isinstance(value, (int, float)) and name != "id":
                lines.append(f"{name} = {toml_time(value)}")
            else:
                lines.append(f'{name} = "{value}"')
    return "\n".join(lines) + "\n"


def write_key_file(directory: Path, text: str | None = None, *, mode: int = 0o600,
                   name: str = "keys.toml") -> Path:
    """Write a key file with ``mode``."""
    path = directory / name
    path.write_text(text if text is not None else key_file_text())
    path.chmod(mode)
    return path


def ring(*, tag: str = TAG, org_id: str = ORG,
         keys: tuple[dict[str, object], ...] | None = None) -> KeyRing:
    """A key ring built like a key file would build it."""
    return parse_key_ring(tomllib.loads(key_file_text(tag=tag, org_id=org_id, keys=keys)))


def counter_random() -> Callable[[int], bytes]:
    """A deterministic random source (distinct bytes per call)."""
    state = {"n": 0}

    def random(size: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(4, "big").rjust(size, b"\x5a")

    return random
