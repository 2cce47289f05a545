"""Reading secret files (key files, private keys, PKCS#12 bundles, passphrase files): the one
place that checks them.

A secret file must be a regular file (not a FIFO, device or directory), not a symbolic link,
and neither readable nor writable by group or others. It is opened with ``O_NOFOLLOW`` (the
last component cannot be swapped for a link between check and open) and ``O_NONBLOCK`` (a
FIFO put in its place cannot make the open hang), checked with ``fstat`` on the open
descriptor, and read up to a size cap. Errors are :class:`~mailroute.errors.ConfigError`
naming the file, never its content.

Public files (certificates) go through :func:`read_public_file`: the same non-blocking open,
regular-file check and size cap, without the mode and symbolic-link rules.
"""

from __future__ import annotations

import contextlib
import os
import stat

from mailroute.errors import ConfigError

__all__ = ["MAX_SECRET_FILE_BYTES", "read_public_file", "read_secret_file", "read_secret_line",
           "write_secret_file"]

MAX_SECRET_FILE_BYTES = 1 << 20
_OPEN_FLAGS = (os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_NOCTTY", 0))
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def read_secret_file(path: str | os.PathLike[str], *, what: str = "key file",
                     max_bytes: int = MAX_SECRET_FILE_BYTES) -> bytes:
    """The content of the secret file ``path``, after the checks above.

    ``what`` names the kind of file in error messages ("key file", "passphrase file" ...).

    Raises:
        ConfigError: missing or unreadable, a symbolic link, not a regular file, accessible
            by group or others, or larger than ``max_bytes``; ``source`` is the path.
    """
    return _read_checked(path, what, max_bytes, secret=True)


def read_secret_line(path: str | os.PathLike[str], *, what: str) -> str:
    """The first line of a secret file (a database DSN ...), without its line break.

    Raises:
        ConfigError: as :func:`read_secret_file`, or the file is not UTF-8.
    """
    try:
        text = read_secret_file(path, what=what).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8", source=str(path)) from None
    return text.strip().splitlines()[0] if text.strip() else ""


def read_public_file(path: str | os.PathLike[str], *, what: str = "certificate file",
                     max_bytes: int = MAX_SECRET_FILE_BYTES) -> bytes:
    """The content of a public file (a certificate): regular file, size cap, no blocking open;
    symbolic links and any mode allowed.

    Raises:
        ConfigError: missing or unreadable, not a regular file, or larger than ``max_bytes``.
    """
    return _read_checked(path, what, max_bytes, secret=False)


def _read_checked(path: str | os.PathLike[str], what: str, max_bytes: int, *,
                  secret: bool) -> bytes:
    source = str(path)
    try:
        if secret and stat.S_ISLNK(os.lstat(path).st_mode):
            raise ConfigError(f"{what} is a symbolic link; name the file itself",
                              source=source)
        fd = os.open(path, _OPEN_FLAGS | (_NOFOLLOW if secret else 0))
    except OSError as exc:
        raise ConfigError(f"cannot open {what} ({exc.strerror})", source=source) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what} is not a regular file", source=source)
        if secret and info.st_mode & 0o077:
            raise ConfigError(
                f"{what} is accessible by group or others (mode {info.st_mode & 0o777:04o}); "
                "chmod 600 it", source=source)
        if info.st_size > max_bytes:
            raise ConfigError(f"{what} is larger than {max_bytes} bytes", source=source)
        data = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} ({exc.strerror})", source=source) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError(f"{what} is larger than {max_bytes} bytes", source=source)
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_secret_file(path: str | os.PathLike[str], data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to the secret file ``path`` with mode 0600, all or nothing.

    A new file is created exclusively (an existing file, or a link in its place, is never
    followed). With ``replace`` the data goes to a temporary file in the same directory, is
    synced and renamed over ``path``, which keeps its owner and group (so a key file that
    root rotates stays readable by the service user that owns it).

    Raises:
        ConfigError: the file exists (without ``replace``) or cannot be written.
    """
    from pathlib import Path  # the key commands only; reading a key needs no pathlib

    target = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    owner: tuple[int, int] | None = None
    if replace:
        try:
            info = os.lstat(target)
        except OSError as exc:
            raise ConfigError(f"cannot read the key file ({exc.strerror})",
                              source=str(target)) from None
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("key file is not a regular file", source=str(target))
        owner = (info.st_uid, info.st_gid)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp") if replace else target
    try:
        fd = os.open(temp, flags, 0o600)
    except FileExistsError:
        raise ConfigError("exists already; not overwritten", source=str(temp)) from None
    except OSError as exc:
        raise ConfigError(f"cannot create ({exc.strerror})", source=str(temp)) from None
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, *owner)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise ConfigError(f"cannot write ({exc.strerror})", source=str(target)) from None
