"""``mailroute quarantine``: list, delete, and a reader that stops early."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mailroute.adapters.quarantine import QuarantineStore

MAILROUTE = [sys.executable, "-m", "mailroute"]


def _held(tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    """A policy whose quarantine holds ``count`` messages; their ids, oldest first."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[gateway]\nstate_dir = "state"\n')
    store = QuarantineStore(tmp_path / "state" / "quarantine")
    ids = [store.store(b"Subject: held\r\n\r\nbody\r\n", sender="a@corp.example",
                       recipients=("b@partner.example", "c@partner.example"),
                       reply="250 2.7.0 held", queue_id=None, now=1_780_000_000.0 + n)
           for n in range(count)]
    return policy, ids


def test_list_shows_one_line_per_held_message(tmp_path: Path) -> None:
    policy, ids = _held(tmp_path, 2)
    done = subprocess.run([*MAILROUTE, "quarantine", "list", "--config", str(policy)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(ids)
    assert all(" <a@corp.example> b@partner.example,c@partner.example 250 2.7.0 held" in line
               for line in lines)


def test_delete_of_an_unknown_id_is_exit_1(tmp_path: Path) -> None:
    policy, _ = _held(tmp_path, 1)
    done = subprocess.run([*MAILROUTE, "quarantine", "delete", "0" * 32, "--config",
                           str(policy)], capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 1
    assert "no quarantined message" in done.stderr


def test_list_into_a_closed_pipe_says_so_instead_of_an_internal_error(tmp_path: Path) -> None:
    """``quarantine list | head -1`` on a long list: the pipe closes before the listing is
    written (CLI.md: ``4.3.0 cannot write the result``, exit 75)."""
    policy, _ = _held(tmp_path, 3)
    read_end, write_end = os.pipe()
    os.close(read_end)   # the reader is gone before the first line
    try:
        done = subprocess.run([*MAILROUTE, "quarantine", "list", "--config", str(policy)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True,
                              check=False, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 75
    assert done.stderr.startswith("4.3.0 cannot write the result: "), done.stderr
    assert "internal error" not in done.stderr


def test_a_damaged_entry_is_reported_and_the_others_still_listed(tmp_path: Path) -> None:
    """Found by the CLI audit: one unreadable ID.json made list and release internal
    errors for every entry."""
    policy, (damaged, kept) = _held(tmp_path, 2)
    (tmp_path / "state" / "quarantine" / f"{damaged}.json").write_text('{"sender": ')
    listed = subprocess.run([*MAILROUTE, "quarantine", "list", "--config", str(policy)],
                            capture_output=True, text=True, check=False, timeout=60)
    assert listed.returncode == 1
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [kept]
    assert f"quarantine entry {damaged} is damaged" in listed.stderr
    released = subprocess.run([*MAILROUTE, "quarantine", "release", damaged, "--config",
                               str(policy), "--reinject", "smtp:127.0.0.1:9"],
                              capture_output=True, text=True, check=False, timeout=60)
    assert released.returncode == 1
    assert "internal error" not in released.stderr
    assert (tmp_path / "state" / "quarantine" / f"{damaged}.eml").exists()
    deleted = subprocess.run([*MAILROUTE, "quarantine", "delete", damaged, "--config",
                              str(policy)], capture_output=True, text=True, check=False,
                             timeout=60)
    assert deleted.returncode == 0, deleted.stderr
    assert not (tmp_path / "state" / "quarantine" / f"{damaged}.eml").exists()
