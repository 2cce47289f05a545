"""H5: every output path writes all bytes or fails with exit 75 and a ``4.3.0`` status line.

With ``PYTHONUNBUFFERED=1`` standard output is a raw ``FileIO`` whose short writes used to be
ignored: a 3 MB message on a 1 MiB tmpfs, or a reader that closed after 100 bytes, ended in
exit 0 with truncated output and nothing on standard error.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from mailroute.adapters.output import write_all, write_file_atomically
from mailroute.errors import OutputError
from tests.marker.helpers import MESSAGE as MARKED
from tests.marker.helpers import NOW, write_key_file
from tests.regressions.helpers import big_message, empty_policy, first_line, mailroute

MESSAGE = big_message(3 * 1024 * 1024)


def _tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted on ``folder`` (needs root, as the test machines run), then unmounted."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs."""
    yield from _tmpfs(tmp_path / "small", "size=1m")


@pytest.fixture
def read_only_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs (root may write into any directory that is not read-only)."""
    yield from _tmpfs(tmp_path / "ro", "ro,size=1m")


@pytest.mark.parametrize("unbuffered", [True, False], ids=["raw-stdout", "buffered-stdout"])
def test_a_reader_that_closes_early_gives_75_and_a_status_line(tmp_path: Path,
                                                               unbuffered: bool) -> None:
    process = mailroute(["process", "--config", str(empty_policy(tmp_path))],
                        unbuffered=unbuffered, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdin.write(MESSAGE)
    process.stdin.close()
    assert len(process.stdout.read(100)) == 100
    process.stdout.close()
    stderr = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 75
    assert first_line(stderr) == "4.3.0 cannot write the result: Broken pipe"
    assert b"Traceback" not in stderr
    assert b"Exception ignored" not in stderr


def _copy_to(stdout: BinaryIO, tmp_path: Path, unbuffered: bool) -> tuple[int, bytes]:
    """Run ``process`` with an empty policy over MESSAGE, standard output on ``stdout``."""
    process = mailroute(["process", "--config", str(empty_policy(tmp_path))],
                        unbuffered=unbuffered, stdin=subprocess.PIPE, stdout=stdout,
                        stderr=subprocess.PIPE)
    _, stderr = process.communicate(MESSAGE, timeout=60)
    return process.returncode, stderr


@pytest.mark.parametrize("unbuffered", [True, False], ids=["raw-stdout", "buffered-stdout"])
def test_stdout_on_a_full_device_gives_75(tmp_path: Path, unbuffered: bool) -> None:
    with open("/dev/full", "wb") as full:
        code, stderr = _copy_to(full, tmp_path, unbuffered)
    assert code == 75
    assert first_line(stderr) == "4.3.0 cannot write the result: No space left on device"


def test_raw_stdout_into_a_small_tmpfs_gives_75(tmp_path: Path, small_tmpfs: Path) -> None:
    with (small_tmpfs / "stdout.eml").open("wb") as out:
        code, stderr = _copy_to(out, tmp_path, unbuffered=True)
    assert code == 75
    assert first_line(stderr) == "4.3.0 cannot write the result: No space left on device"


def test_out_file_on_a_full_tmpfs_leaves_the_old_file_and_no_temp_file(
        tmp_path: Path, small_tmpfs: Path) -> None:
    target = small_tmpfs / "result.eml"
    target.write_bytes(b"the previous result\r\n")
    process = mailroute(["process", "--config", str(empty_policy(tmp_path)), "--out",
                         str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    stdout, stderr = process.communicate(MESSAGE, timeout=60)
    assert process.returncode == 75
    assert first_line(stderr) == "4.3.0 cannot write the output file: No space left on device"
    assert stdout == b""
    assert target.read_bytes() == b"the previous result\r\n"
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["result.eml"]


def test_out_file_in_a_read_only_directory_gives_75(tmp_path: Path,
                                                    read_only_tmpfs: Path) -> None:
    process = mailroute(["process", "--config", str(empty_policy(tmp_path)), "--out",
                         str(read_only_tmpfs / "result.eml")], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.communicate(b"Subject: x\r\n\r\nbody\r\n", timeout=60)
    assert process.returncode == 75
    assert first_line(stderr) == "4.3.0 cannot write the output file: Read-only file system"
    assert stdout == b""
    assert list(read_only_tmpfs.iterdir()) == []


def test_out_file_in_a_missing_directory_gives_75(tmp_path: Path) -> None:
    process = mailroute(["process", "--config", str(empty_policy(tmp_path)), "--out",
                         str(tmp_path / "absent" / "result.eml")], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.communicate(b"Subject: x\r\n\r\nbody\r\n", timeout=60)
    assert process.returncode == 75
    assert first_line(stderr) == "4.3.0 cannot write the output file: No such file or directory"
    assert stdout == b""


def test_out_file_is_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "result.eml"
    process = mailroute(["process", "--config", str(empty_policy(tmp_path)), "--out",
                         str(target)], unbuffered=True, stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.communicate(MESSAGE, timeout=60)
    assert process.returncode == 0, stderr
    assert stdout == b""
    assert target.read_bytes() == MESSAGE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.toml", "result.eml"]


@pytest.mark.parametrize("unbuffered", [True, False], ids=["raw-stdout", "buffered-stdout"])
def test_json_output_into_a_closed_pipe_gives_75(tmp_path: Path, unbuffered: bool) -> None:
    key_file = write_key_file(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    process = mailroute(["marker", "verify", "--json", "--key-file", str(key_file), "--now",
                         str(NOW)], unbuffered=unbuffered, stdin=subprocess.PIPE,
                        stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    _, stderr = process.communicate(MARKED, timeout=60)
    assert process.returncode == 75
    assert first_line(stderr) == "4.3.0 cannot write the result: Broken pipe"
    assert b"Exception ignored" not in stderr


class _Trickle(io.RawIOBase):
    """A raw stream that takes at most ``step`` bytes per write, like a full pipe."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.taken = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        chunk = bytes(memoryview(data))[:self.step]  # type: ignore[arg-type]
        self.taken += chunk
        return len(chunk)


def test_write_all_retries_short_writes() -> None:
    stream = _Trickle(7)
    write_all(stream, MESSAGE[:10_000])  # type: ignore[arg-type]
    assert bytes(stream.taken) == MESSAGE[:10_000]


def test_write_all_refuses_a_stream_that_takes_nothing() -> None:
    with pytest.raises(OutputError, match="accepted no bytes"):
        write_all(_Trickle(0), b"data")  # type: ignore[arg-type]


def test_write_file_atomically_cleans_up_after_a_failed_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.eml"
    target.write_bytes(b"old")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OutputError, match="No space left on device"):
        write_file_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.eml"]
