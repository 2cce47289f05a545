"""The real gpg as the test oracle: key generation, status-line runs, RFC 1847 splitting.

The splitter below deliberately does not use mailroute's parser: it cuts the first part of a
multipart/signed at the delimiters the way notes/smime-pgp.md section 9 does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GpgOut:
    """One gpg run: exit code, stdout bytes and the status keywords."""

    returncode: int
    stdout: bytes
    status: tuple[str, ...]

    def has(self, keyword: str) -> bool:
        return any(line.split()[0] == keyword for line in self.status if line)

    def line(self, keyword: str) -> str:
        return next(line for line in self.status if line.split()[0] == keyword)


def gpg(home: Path, *args: str, data: bytes = b"", passphrase: str | None = None) -> GpgOut:
    """Run gpg on ``home`` with status lines on a pipe of their own (fd 3)."""
    read_fd, write_fd = os.pipe()
    cmd = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--status-fd", str(write_fd),
           "--trust-model", "always", "--pinentry-mode", "loopback"]
    if passphrase is not None:
        cmd += ["--passphrase", passphrase]
    proc = subprocess.Popen([*cmd, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, pass_fds=(write_fd,))
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as status_pipe:
        import threading
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.append(status_pipe.read()))
        reader.start()
        out, _ = proc.communicate(data, timeout=60)
        reader.join(60)
    lines = tuple(line[9:] for line in b"".join(chunks).decode("latin-1").splitlines()
                  if line.startswith("[GNUPG:] "))
    return GpgOut(proc.returncode, out, lines)


def fingerprint(home: Path, uid: str) -> str:
    out = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys", uid],
                         check=True, capture_output=True).stdout.decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))


def new_home(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True)
    return path


def kill_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                   capture_output=True, timeout=20)


def copy_home(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"))
    target.chmod(0o700)
    return target


def split_signed(raw: bytes) -> tuple[bytes, bytes]:
    """(signed bytes, signature) of a CRLF multipart/signed, cut by delimiters only."""
    boundary = re.search(rb'multipart/signed;(?:[^\r\n]|\r\n[ \t])*?boundary="?([^";\r\n]+)"?',
                         raw)
    assert boundary is not None
    b = boundary.group(1)
    delim = b"\r\n--" + b
    start = raw.index(b"--" + b + b"\r\n") + len(b) + 4
    end = raw.index(delim, start)
    sig_start = raw.index(b"\r\n\r\n", end + len(delim)) + 4
    return raw[start:end], raw[sig_start:raw.index(delim, sig_start)]


def armored_message(raw: bytes) -> bytes:
    """The ASCII-armored OpenPGP message inside a raw mail, CR removed."""
    start = raw.index(b"-----BEGIN PGP MESSAGE-----")
    end = raw.index(b"-----END PGP MESSAGE-----") + len(b"-----END PGP MESSAGE-----")
    return raw[start:end].replace(b"\r", b"") + b"\n"


def lf_to_crlf(raw: bytes) -> bytes:
    """What an MTA does to an LF message on the wire."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)
