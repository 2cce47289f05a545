"""What the MTA tests share: free ports and a ``mailroute`` command the filter user can run."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
from pathlib import Path

#: The unprivileged account the MTAs run ``mailroute pipe`` as (they refuse root).
FILTER_USER = "nobody"


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def interpreter_wrapper(root: Path) -> Path:
    """A ``mailroute`` command the filter user can run (the venv may sit under /root)."""
    python = sys.executable
    runnable = os.access(python, os.X_OK) and all(
        os.stat(parent).st_mode & stat.S_IXOTH for parent in Path(python).resolve().parents)
    if not runnable:
        python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or python
    paths = ":".join(p for p in sys.path if p and Path(p).is_dir())
    wrapper = root / "mailroute"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{paths}" exec {python} -m mailroute "$@"\n')
    wrapper.chmod(0o755)
    return wrapper
