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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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


def wait_until(check: object, timeout: float = 20.0, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    assert callable(check)
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)


def negotiation(path: Path) -> bytes:
    """One MTA connection's option negotiation (a full offer); the filter's reply packet."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(optneg())
        head = sock.recv(4, socket.MSG_WAITALL)
        return sock.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL)


def negotiate(path: Path) -> bytes:
    """The reply code of one MTA connection's option negotiation."""
    return negotiation(path)[:1]


@contextmanager
def milter_process(argv: list[str], **options: Any) -> Iterator[subprocess.Popen[bytes]]:
    """``mailroute ARGV`` running; killed at the end if the test did not stop it."""
    milter = subprocess.Popen([*MAILROUTE, *argv], **options)
    try:
        yield milter
    finally:
        if milter.poll() is None:
            milter.kill()
            milter.wait()


def stop_gracefully(milter: subprocess.Popen[bytes]) -> None:
    milter.send_signal(signal.SIGTERM)
    assert milter.wait(timeout=15) == 0


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
    with milter_process(["milter", "--config", str(shared), "--socket",
                         f"unix:{tmp_path / 'm.sock'}", "--processes", "2"]) as milter:
        wait_until(lambda: (tmp_path / "m.sock").exists())
        assert negotiate(tmp_path / "m.sock") == b"O"
        stop_gracefully(milter)


def negotiated_protocol(path: Path) -> int:
    """The protocol flags the filter answers a full offer with."""
    body = negotiation(path)
    assert body[:1] == b"O"
    return int(struct.unpack(">III", body[1:13])[2])


NO_BODY = 0x10   # SMFIP_NOBODY: asked for by a policy without filters only


@dataclass
class Reloadable:
    """A running ``mailroute -v milter`` on an empty policy, and the files to change it."""

    milter: subprocess.Popen[bytes]
    policy: Path
    socket: Path
    log: Path

    def reload_with_disclaimer(self) -> None:
        self.policy.write_text(f'[[pipeline]]\nfilter = "disclaimer"\n'
                               f'text = "{self.policy.parent}/d.txt"\n')
        self.milter.send_signal(signal.SIGHUP)

    def logged(self, text: str) -> int:
        return self.log.read_text().count(text)


@contextmanager
def reloadable_milter(tmp_path: Path, processes: str) -> Iterator[Reloadable]:
    policy = tmp_path / "p.toml"
    policy.write_text("")
    (tmp_path / "d.txt").write_text("-- footer\n")
    path = tmp_path / "m.sock"
    log = tmp_path / "milter.log"
    with log.open("wb") as out, milter_process(
            ["-v", "milter", "--config", str(policy), "--socket", f"unix:{path}",
             "--processes", processes], stderr=out) as milter:
        yield Reloadable(milter, policy, path, log)
        stop_gracefully(milter)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_sighup_loads_the_policy_again_and_keeps_it_when_broken(
        tmp_path: Path, processes: str) -> None:
    with reloadable_milter(tmp_path, processes) as running:
        milter, path = running.milter, running.socket
        wait_until(lambda: path.exists() and (processes == "1"
                                              or len(children(milter.pid)) == 2))
        assert negotiated_protocol(path) & NO_BODY
        running.reload_with_disclaimer()
        wait_until(lambda: running.logged("policy reloaded") == int(processes))
        assert all(not negotiated_protocol(path) & NO_BODY for _ in range(6))
        running.policy.write_text("[[pipeline]]\nfilter = 'no-such-filter'\n")
        milter.send_signal(signal.SIGHUP)
        wait_until(lambda: running.logged("policy not reloaded") == int(processes))
        assert milter.poll() is None
        assert all(not negotiated_protocol(path) & NO_BODY for _ in range(6))


def test_a_sighup_while_the_workers_start_is_held_not_lost(tmp_path: Path) -> None:
    """Found by the suite on a slow machine: a worker ignored SIGHUP until its event loop
    ran, so a reload sent meanwhile left it on the old policy for good."""
    with reloadable_milter(tmp_path, "2") as running:
        pid = running.milter.pid
        task_children = Path(f"/proc/{pid}/task/{pid}/children")
        wait_until(lambda: len(task_children.read_text().split()) == 2, poll=0.0)  # forked
        running.reload_with_disclaimer()
        wait_until(lambda: running.logged("policy reloaded") == 2)
        assert all(not negotiated_protocol(running.socket) & NO_BODY for _ in range(8))


def test_a_killed_supervisor_takes_its_workers_with_it(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("")
    path = tmp_path / "m.sock"
    milter = subprocess.Popen([*MAILROUTE, "milter", "--config", str(policy), "--socket",
                               f"unix:{path}", "--processes", "2"])
    workers: set[int] = set()
    try:
        wait_until(lambda: path.exists() and len(children(milter.pid)) == 2)
        workers = children(milter.pid)
        milter.kill()
        milter.wait()
        # orphans are adopted by init (or a subreaper) and reaped there once they exit
        wait_until(lambda: not any(alive(pid) for pid in workers))
    finally:
        for pid in workers:
            if alive(pid):
                subprocess.run(["kill", "-KILL", str(pid)], check=False)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
