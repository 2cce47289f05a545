"""One gpg process per call, through python-gnupg's plumbing, with the hygiene a gateway needs.

* A private home: ``--homedir`` plus ``--no-options``, so a ``gpg.conf`` in the home (ours or
  an administrator's) cannot switch anything on; every option is on the command line.
* No network: ``--disable-dirmngr``, ``--no-auto-key-retrieve``, ``--no-auto-key-import``,
  ``--auto-key-locate local``.
* Passphrases go through stdin (loopback pinentry, ``--passphrase-fd 0``), never argv, and
  are refused when they contain CR, LF or NUL.
* A timeout on every call (the process is killed) and a bound on the output size.
* One lock per home: parallel gpg processes on one home contend on its lock files and were
  measured ten times slower than taking turns.
* Status lines only: gpg's log goes to ``/dev/null``, so what python-gnupg reads on fd 2 is
  nothing but ``[GNUPG:]`` lines.

Under the command line, python-gnupg's own log records ("gpg returned a non-zero error code",
a traceback for a broken pipe when gpg stops reading) are kept out of the root logger: the
outcome of every call is decided here from the status lines, and a stray line on standard
error would break the pipe adapter's rule that the first line carries the enhanced status
code. A program that imports mailroute keeps the ``gnupg`` logger as it set it up.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gnupg

from mailroute.errors import ConfigError, LimitExceededError, TemporaryError
from mailroute.logs import configured
from mailroute.pgp.status import StatusLog
from mailroute.records import record

__all__ = ["BASE_OPTIONS", "GpgRun", "GpgRunner", "check_passphrase"]

BASE_OPTIONS: tuple[str, ...] = (
    "--no-options", "--log-file", os.devnull, "--disable-dirmngr", "--no-auto-key-retrieve",
    "--no-auto-key-import", "--auto-key-locate", "local", "--no-auto-check-trustdb",
    "--trust-model", "always", "--pinentry-mode", "loopback", "--no-symkey-cache",
    "--no-greeting", "--no-allow-multiple-messages", "--exit-on-status-write-error",
)

_GNUPG_LOG = logging.getLogger("gnupg")
if configured() and all(isinstance(h, logging.NullHandler) for h in _GNUPG_LOG.handlers):
    # only the command line's own logging: a program that imports mailroute may use
    # python-gnupg itself and keeps its warnings
    _GNUPG_LOG.propagate = False

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _home_lock(home: Path) -> threading.Lock:
    key = os.path.realpath(home)
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def check_passphrase(passphrase: str | None) -> None:
    """Refuse a passphrase gpg would read as more than one line (CVE-2019-6690).

    Raises:
        ConfigError: the passphrase contains CR, LF or NUL.
    """
    if passphrase is not None and any(ch in passphrase for ch in "\r\n\0"):
        raise ConfigError("passphrase contains CR, LF or NUL")


@record(frozen=True)
class GpgRun:
    """What one gpg call produced: its status lines, its output and its exit status."""

    status: StatusLog
    data: bytes
    returncode: int | None


class _Collector:
    """The result object python-gnupg fills: status pairs, stdout, return code."""

    def __init__(self, gpg: object) -> None:
        self.pairs: list[tuple[str, str]] = []
        self.data = b""
        self.stderr = ""
        self.returncode: int | None = None

    def handle_status(self, key: str, value: str) -> None:
        self.pairs.append((key, value))


class _BoundedGPG(gnupg.GPG):  # type: ignore[misc]  # python-gnupg ships no type hints
    """python-gnupg with a kill timer and an output bound on every process."""

    def __init__(self, *, timeout: float, **kwargs: Any) -> None:
        self.timeout = timeout
        self.max_output = 0
        self.timed_out = False
        self.overflowed = False
        self.process: subprocess.Popen[bytes] | None = None
        self.received = 0
        super().__init__(**kwargs)

    def _open_subprocess(self, args: list[str], passphrase: bool = False) -> Any:
        process = super()._open_subprocess(args, passphrase)
        self.process = process
        self.received = 0
        return process

    def _count(self, chunk: bytes) -> bool:
        self.received += len(chunk)
        if self.max_output and self.received > self.max_output:
            self.overflowed = True
            if self.process is not None:
                self.process.kill()
            return False
        return True

    def _collect_output(self, process: Any, result: Any, writer: Any = None,
                        stdin: Any = None) -> Any:
        def expire() -> None:
            self.timed_out = True
            process.kill()

        timer = threading.Timer(self.timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            return super()._collect_output(process, result, writer, stdin)
        finally:
            timer.cancel()


class GpgRunner:
    """Runs gpg on one home, one call at a time.

    Args:
        home: the GnuPG home directory (must exist, owner-only permissions).
        timeout: seconds one gpg call may take before it is killed.
        max_output: bytes of output one call may produce (decompression bombs).
        gpg_binary: the gpg executable.

    Raises:
        ConfigError: the home is missing or open to others, or gpg cannot be run.
    """

    def __init__(self, home: Path, *, timeout: float = 30.0, max_output: int = 64 << 20,
                 gpg_binary: str = "gpg") -> None:
        if not home.is_dir():
            raise ConfigError("GnuPG home is not a directory", source=str(home))
        if home.stat().st_mode & 0o077:
            raise ConfigError("GnuPG home must be accessible by its owner only",
                              source=str(home))
        self.home = home
        self.max_output = max_output
        self._lock = _home_lock(home)
        env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C",
               "GNUPGHOME": str(home)}
        try:
            with self._lock:
                self._gpg = _BoundedGPG(timeout=timeout, gpgbinary=gpg_binary,
                                        gnupghome=str(home), options=list(BASE_OPTIONS),
                                        env=env)
        except (OSError, ValueError) as exc:
            raise ConfigError("cannot run gpg", source=str(home)) from exc
        self._gpg.on_data = self._gpg._count

    def run(self, args: Sequence[str], data: bytes = b"", *,
            passphrase: str | None = None) -> GpgRun:
        """Run ``gpg [base options] args`` with ``data`` on stdin.

        Raises:
            TemporaryError: gpg timed out or could not be started.
            LimitExceededError: gpg produced more than ``max_output`` bytes.
            ConfigError: the passphrase is unsafe.
        """
        check_passphrase(passphrase)
        passphrase = passphrase or None  # "" would make gpg read the data as passphrase
        result = _Collector(self._gpg)
        with self._lock:
            gpg = self._gpg
            gpg.timed_out = gpg.overflowed = False
            gpg.max_output = self.max_output
            try:
                gpg._handle_io(list(args), io.BytesIO(data), result,
                               passphrase=passphrase, binary=True)
            except OSError as exc:  # a broken pipe once gpg stopped reading
                if not (gpg.timed_out or gpg.overflowed or result.returncode is not None):
                    raise TemporaryError("gpg could not be run") from exc
            timed_out, overflowed = gpg.timed_out, gpg.overflowed
            gpg.process = None
        if timed_out:
            raise TemporaryError("gpg timed out")
        if overflowed:
            raise LimitExceededError("gpg output larger than the limit", limit="pgp_output")
        return GpgRun(StatusLog.of(result.pairs), result.data, result.returncode)

    def close(self) -> None:
        """Stop the gpg-agent of this home (started by gpg on first use)."""
        with self._lock:
            subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                           check=False, capture_output=True, timeout=10,
                           env={"PATH": os.environ.get("PATH", os.defpath)})
