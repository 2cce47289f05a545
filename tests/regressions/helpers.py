"""Shared pieces of the regression tests: the command as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MAILROUTE = [sys.executable, "-m", "mailroute"]


def big_message(size: int) -> bytes:
    """A plain message of about ``size`` bytes (lines of 76 characters)."""
    line = b"x" * 76 + b"\r\n"
    return b"From: a@example.org\r\nSubject: big\r\n\r\n" + line * (size // len(line))


def empty_policy(folder: Path) -> Path:
    """An empty policy file (no filters: the message is copied)."""
    path = folder / "empty.toml"
    path.write_bytes(b"")
    return path


def mailroute(args: list[str], *, unbuffered: bool = False,
              **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``mailroute ARGS``; ``unbuffered`` sets PYTHONUNBUFFERED=1 (a raw stdout)."""
    env = {**os.environ}
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([*MAILROUTE, *args], env=env, **kwargs)


def first_line(stderr: bytes) -> str:
    """The first line of standard error, decoded."""
    return stderr.decode("utf-8", "replace").split("\n", 1)[0]
