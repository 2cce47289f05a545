"""``mailroute milter --processes N``: workers share one socket, a dead worker is replaced,
SIGTERM stops them all and removes the socket, and a policy that needs a shared store is
refused."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from tests.protocols.helpers import optneg

MAILROUTE = [sys.executable, "-m", "mailroute"]


def children(pid: int) -> set[int]:
    """The PIDs of ``pid``'s child processes."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def wait_until(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    assert callable(check)
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def negotiate(path: Path) -> bytes:
    """One MTA connection's option negotiation; the filter's reply code."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(optneg())
        head = sock.recv(4, socket.MSG_WAITALL)
        body = sock.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL)
        return body[:1]


def test_workers_share_the_socket_are_replaced_and_stop_together(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("")
    path = tmp_path / "m.sock"
    milter = subprocess.Popen([*MAILROUTE, "milter", "--config", str(policy), "--socket",
                               f"unix:{path}", "--socket-mode", "0660", "--processes", "2"])
    try:
        wait_until(lambda: path.exists() and len(children(milter.pid)) == 2)
        assert path.stat().st_mode & 0o777 == 0o660
        assert [negotiate(path) for _ in range(8)] == [b"O"] * 8
        first = children(milter.pid)
        victim = min(first)   # young: one early death (an OOM kill) is replaced too
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        wait_until(lambda: len(children(milter.pid)) == 2 and victim not in
                   children(milter.pid))
        assert negotiate(path) == b"O"
        workers = children(milter.pid)
        milter.send_signal(signal.SIGTERM)
        assert milter.wait(timeout=15) == 0
        assert not path.exists()
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)   # reaped
    finally:
        if milter.poll() is None:
            milter.kill()
            milter.wait()


def test_workers_that_keep_dying_at_once_stop_the_milter_with_75(tmp_path: Path) -> None:
    """Three deaths in a row within a worker's first 5 s: the workers cannot run (the
    supervisor would otherwise restart them for ever); the MTA tempfails meanwhile."""
    policy = tmp_path / "p.toml"
    policy.write_text("")
    path = tmp_path / "m.sock"
    log = tmp_path / "milter.log"
    with log.open("wb") as out:
        milter = subprocess.Popen([*MAILROUTE, "milter", "--config", str(policy), "--socket",
                                   f"unix:{path}", "--processes", "2"], stderr=out)
    try:
        killed: set[int] = set()
        deadline = time.monotonic() + 20
        while milter.poll() is None and time.monotonic() < deadline:
            for pid in children(milter.pid) - killed:
                subprocess.run(["kill", "-KILL", str(pid)], check=False)
                killed.add(pid)
            time.sleep(0.05)
        assert milter.wait(timeout=15) == 75
        assert 3 <= len(killed) <= 4
        assert "the 3. worker in a row to die within 5 s: stopping" in log.read_text()
        assert not path.exists()
    finally:
        if milter.poll() is None:
            milter.kill()
            milter.wait()


def test_marker_policy_without_a_shared_store_is_refused(tmp_path: Path) -> None:
    from mailroute.testing import write_fake_key_file

    keys = write_fake_key_file(tmp_path / "keys.toml")
    policy = tmp_path / "p.toml"
    policy.write_text(f'[[pipeline]]\nfilter = "marker-set"\nkey_file = "{keys}"\n')
    done = subprocess.run([*MAILROUTE, "milter", "--config", str(policy), "--socket",
                           f"unix:{tmp_path / 'm.sock'}", "--processes", "2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78
    assert "state_dir" in done.stderr
    assert not (tmp_path / "m.sock").exists()
    shared = tmp_path / "shared.toml"
    shared.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n\n'
                      f'[[pipeline]]\nfilter = "marker-set"\nkey_file = "{keys}"\n')
    (tmp_path / "state").mkdir(mode=0o700)
    milter = subprocess.Popen([*MAILROUTE, "milter", "--config", str(shared), "--socket",
                               f"unix:{tmp_path / 'm.sock'}", "--processes", "2"])
    try:
        wait_until(lambda: (tmp_path / "m.sock").exists())
        assert negotiate(tmp_path / "m.sock") == b"O"
        milter.send_signal(signal.SIGTERM)
        assert milter.wait(timeout=15) == 0
    finally:
        if milter.poll() is None:
            milter.kill()
            milter.wait()
