"""M5 and L3: every kind of secret file is checked by the one function, read_secret_file
(marker key files, PGP and S/MIME passphrase files, S/MIME private keys, PKCS#12 bundles,
DKIM keys).

Before, S/MIME private keys, their passphrase files and PKCS#12 bundles were read whatever
their mode (``smime decrypt --key k.pem`` with mode 0644, or a symbolic link, exited 0), and a
FIFO named as the marker key file hung policy loading.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mailroute.config.options import Options
from mailroute.dkim.keys import load_signing_key
from mailroute.errors import ConfigError
from mailroute.filters.pgp import build_sign
from mailroute.keys.certstore import (
    DirectoryCertStore,
    load_certificates,
    load_private_key,
    read_passphrase,
)
from mailroute.keys.secretfile import MAX_SECRET_FILE_BYTES, read_secret_file
from mailroute.marker.keyring import load_key_ring
from tests.marker.helpers import key_file_text
from tests.smime.pki import Pki

SECRET = b"do-not-print-this-secret-0123456789"


def _pgp_passphrase(path: Path) -> object:
    home = path.parent / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    return build_sign(Options({"gnupghome": str(home), "signer": "x",
                               "passphrase_file": str(path)}, source="t.toml"))


def _pkcs12(path: Path) -> object:
    return DirectoryCertStore.load(path.parent)


# Each loader with the name it gives the file in errors. The PKCS#12 file must end in .p12.
LOADERS: dict[str, tuple[Callable[[Path], object], str, str]] = {
    "marker-key-file": (load_key_ring, "key file", "keys.toml"),
    "pgp-passphrase-file": (_pgp_passphrase, "passphrase file", "pass.txt"),
    "smime-private-key": (load_private_key, "private key file", "key.pem"),
    "smime-passphrase-file": (read_passphrase, "passphrase file", "pass.txt"),
    "pkcs12": (_pkcs12, "PKCS#12 file", "bundle.p12"),
    "dkim-key-file": (load_signing_key, "DKIM key file", "dkim.pem"),
}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    return folder


def _load(kind: str, path: Path) -> ConfigError:
    loader = LOADERS[kind][0]
    with pytest.raises(ConfigError) as caught:
        loader(path)
    error = caught.value
    assert error.source == str(path)
    assert SECRET.decode() not in str(error)
    return error


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_secret_file_open_to_group_or_others_is_refused(tmp_path: Path, kind: str,
                                                         mode: int) -> None:
    path = _folder(tmp_path) / LOADERS[kind][2]
    path.write_bytes(SECRET)
    path.chmod(mode)
    error = _load(kind, path)
    assert f"{LOADERS[kind][1]} is accessible by group or others (mode {mode:04o})" in str(error)


@pytest.mark.parametrize("kind", LOADERS)
def test_a_symbolic_link_is_refused(tmp_path: Path, kind: str) -> None:
    folder = _folder(tmp_path)
    target = tmp_path / "real"
    target.write_bytes(SECRET)
    target.chmod(0o600)
    link = folder / LOADERS[kind][2]
    link.symlink_to(target)
    assert f"{LOADERS[kind][1]} is a symbolic link" in str(_load(kind, link))


@pytest.mark.parametrize("kind", LOADERS)
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    path = _folder(tmp_path) / LOADERS[kind][2]
    os.mkfifo(path, 0o600)
    errors: list[ConfigError] = []
    worker = threading.Thread(target=lambda: errors.append(_load(kind, path)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "opening a FIFO blocked"
    assert f"{LOADERS[kind][1]} is not a regular file" in str(errors[0])


@pytest.mark.parametrize("kind", ["marker-key-file", "smime-private-key",
                                  "smime-passphrase-file", "pgp-passphrase-file",
                                  "dkim-key-file"])
def test_a_directory_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "dir"
    path.mkdir(mode=0o700)
    assert f"{LOADERS[kind][1]} is not a regular file" in str(_load(kind, path))


@pytest.mark.parametrize("kind", LOADERS)
def test_an_oversized_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = _folder(tmp_path) / LOADERS[kind][2]
    path.write_bytes(b"x" * (MAX_SECRET_FILE_BYTES + 1))
    path.chmod(0o600)
    assert f"is larger than {MAX_SECRET_FILE_BYTES} bytes" in str(_load(kind, path))


def test_a_fifo_as_a_certificate_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "cert.pem"
    os.mkfifo(path, 0o644)
    errors: list[Exception] = []
    worker = threading.Thread(target=lambda: errors.append(_raises(load_certificates, path)),
                              daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "opening a FIFO blocked"
    assert "certificate file is not a regular file" in str(errors[0])


def _raises(loader: Callable[[Path], object], path: Path) -> Exception:
    try:
        loader(path)
    except ConfigError as error:
        return error
    raise AssertionError("no ConfigError")


def test_a_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="key file is not a regular file"):
        read_secret_file("/dev/zero")


def test_a_good_secret_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    assert read_secret_file(path) == SECRET


def test_a_fifo_as_the_policy_key_file_fails_fast(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "marker-set"\nkey_file = "fifo"\n')
    done = subprocess.run([sys.executable, "-m", "mailroute", "process", "--config",
                           str(policy)], input=b"Subject: x\r\n\r\nbody\r\n",
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 78
    assert done.stderr.startswith(b"4.3.5 configuration error: ")
    assert b"key file is not a regular file" in done.stderr


@pytest.mark.parametrize("problem", ["mode-0644", "symlink"])
def test_smime_decrypt_refuses_an_unsafe_key(pki: Pki, tmp_path: Path, problem: str) -> None:
    key = tmp_path / "k.pem"
    if problem == "symlink":
        key.symlink_to(pki.dave.key_path)
    else:
        key.write_bytes(pki.dave.key_path.read_bytes())
        key.chmod(0o644)
    done = subprocess.run([sys.executable, "-m", "mailroute", "smime", "decrypt", "--cert",
                           str(pki.dave.cert_path), "--key", str(key)],
                          input=b"Subject: x\r\n\r\nbody\r\n", capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 78
    assert done.stdout == b""
    assert str(key).encode() in done.stderr
    assert b"PRIVATE KEY" not in done.stderr


def test_marker_key_file_text_is_still_accepted(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(key_file_text())
    path.chmod(0o600)
    assert load_key_ring(path).keys
