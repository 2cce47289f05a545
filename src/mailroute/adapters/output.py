"""Writing results: every byte or an :class:`~mailroute.errors.OutputError`, never a silent
short write.

A raw standard output (``PYTHONUNBUFFERED=1``, ``python -u``) is an unbuffered ``FileIO``
whose ``write`` may write fewer bytes than asked and say so only in its return value;
``TextIOWrapper`` ignores that value. So output goes straight to the file descriptor with
``os.write`` until nothing is left, after flushing whatever Python had buffered. ``--out``
files are written to a temporary file in the same directory, synced, and renamed over the
target, so a failure leaves no partial file and the old one untouched; a device or FIFO is
written through.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO

from mailroute.errors import OutputError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Chunks", "pieces_of", "write_all", "write_file_atomically", "write_stdout_text"]

# How long a non-blocking descriptor may stay full before the write is given up.
_STALL_SECONDS = 300.0
# Pieces of a message are gathered into writes of at least this size.
_WRITE_SIZE = 64 * 1024
#: A message as pieces to be written in order (see :meth:`mailroute.session.Result.chunks`).
Chunks = Sequence[bytes | memoryview]


def write_all(stream: BinaryIO, data: bytes | Chunks) -> None:
    """Write all of ``data`` (bytes, or pieces written in order) to ``stream``, flush it.

    Raises:
        OutputError: the bytes could not all be written (the reason is in the text).
    """
    try:
        fd = _fileno(stream)
        if fd is None:
            for piece in pieces_of(data):
                _write_loop(stream, piece)
        else:
            stream.flush()
            for piece in pieces_of(data):
                _write_fd(fd, piece)
    except OSError as exc:
        raise OutputError(f"cannot write the result: {_reason(exc)}") from exc


def write_stdout_text(text: str) -> None:
    """Write ``text`` to standard output in its encoding, all of it (see :func:`write_all`).

    Raises:
        OutputError: standard output took less than all of it.
    """
    try:
        sys.stdout.flush()
    except OSError as exc:
        raise OutputError(f"cannot write the result: {_reason(exc)}") from exc
    encoding = sys.stdout.encoding or "utf-8"
    write_all(sys.stdout.buffer, text.encode(encoding, sys.stdout.errors or "strict"))


def write_file_atomically(path: Path, data: bytes | Chunks) -> None:
    """Write ``data`` to ``path`` as ``> path`` in a shell would, but never half.

    A regular file (or a symbolic link to one, which stays a link) is replaced by a synced
    temporary file in its directory, renamed over it with the old file's mode and owner; a
    new one gets the mode the umask allows. Anything else that exists (a device such as
    ``/dev/null``, a FIFO, ``/proc/self/fd/1``) is written through, never replaced.

    Raises:
        OutputError: anything failed; no temporary file is left behind and a regular
            ``path`` is as it was.
    """
    import stat

    try:
        existing: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise OutputError(f"cannot write the output file: {_reason(exc)}") from exc
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        _write_through(path, data)
        return
    _replace(os.path.realpath(path), data, existing)


def _write_through(path: Path, data: bytes | Chunks) -> None:
    try:
        handle = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as exc:
        raise OutputError(f"cannot write the output file: {_reason(exc)}") from exc
    try:
        for piece in pieces_of(data):
            _write_fd(handle, piece)
    except OSError as exc:
        raise OutputError(f"cannot write the output file: {_reason(exc)}") from exc
    finally:
        os.close(handle)


def _replace(target: str, data: bytes | Chunks, existing: os.stat_result | None) -> None:
    import tempfile  # only --out needs it (start-up: it loads random, shutil, bz2, lzma)

    folder, name = os.path.split(target)
    try:
        handle, temp = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}.")
    except OSError as exc:
        raise OutputError(f"cannot write the output file: {_reason(exc)}") from exc
    try:
        try:
            for piece in pieces_of(data):
                _write_fd(handle, piece)
            if existing is None:
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(handle, 0o666 & ~umask)
            else:
                os.fchmod(handle, existing.st_mode & 0o7777)
                with contextlib.suppress(PermissionError):  # only root gives files away
                    os.fchown(handle, existing.st_uid, existing.st_gid)
            os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write the output file: {_reason(exc)}") from exc
        raise


def pieces_of(data: bytes | Chunks) -> Iterator[bytes | memoryview]:
    """``data`` in writes of at least ``_WRITE_SIZE`` bytes (small pieces, such as header
    fields, are gathered; large ones are written as they are, without a copy)."""
    if isinstance(data, bytes):
        yield data
        return
    pending: list[bytes | memoryview] = []
    size = 0
    for chunk in data:
        if len(chunk) >= _WRITE_SIZE:
            if pending:
                yield b"".join(pending)
                pending, size = [], 0
            yield chunk
            continue
        pending.append(chunk)
        size += len(chunk)
        if size >= _WRITE_SIZE:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _write_fd(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # a non-blocking descriptor that is full: wait, bounded
            import select  # only when the reader stalls: start-up

            if not select.select([], [fd], [], _STALL_SECONDS)[1]:
                raise OSError(errno.ETIMEDOUT, "output stalled") from None
            continue
        if written <= 0:
            raise OSError(errno.EIO, "output accepted no bytes")
        view = view[written:]


def _write_loop(stream: BinaryIO, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if not written or written < 0:
            raise OSError(errno.EIO, "output accepted no bytes")
        view = view[written:]
    stream.flush()


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__
