"""A throwaway PostgreSQL server for the store tests (Debian ``postgresql``; initdb + pg_ctl).

The cluster lives in a temporary directory owned by an unprivileged user (``initdb`` refuses
root: as root the server runs as ``nobody``), listens on 127.0.0.1 at a free port, trusts
local connections and is stopped by ``pg_ctl stop`` at the end of the session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "mailroute"


def binaries() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl`` of the newest installed PostgreSQL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_owner(owner: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@contextmanager
def running_server() -> Iterator[str]:
    """Start a server; yield the DSN of its ``postgres`` database; stop it."""
    bindir = binaries()
    assert bindir is not None
    owner = "nobody" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="mailroute-pg-"))
    base.chmod(0o700)
    if owner:
        entry = pwd.getpwnam(owner)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    data, log = base / "data", base / "log"
    port = _free_port()
    subprocess.run(_as_owner(owner, [str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                                     "-U", USER, "--no-sync"]),
                   check=True, capture_output=True, timeout=120)
    options = f"-k {base} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_owner(owner, [str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
                                     "-l", str(log), "-w", "-t", "60", "start"]),
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"host=127.0.0.1 port={port} user={USER} dbname=postgres"
    finally:
        subprocess.run(_as_owner(owner, [str(bindir / "pg_ctl"), "-D", str(data), "-m",
                                         "fast", "-w", "stop"]),
                       capture_output=True, timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server_dsn: str) -> str:
    """Create an empty database on the server; its DSN."""
    import psycopg
    from psycopg import sql
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server_dsn.replace("dbname=postgres", f"dbname={name}")
