"""Fixtures of the S/MIME tests: a throwaway PKI and an isolated gpgsm home."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from tests.smime.pki import Pki, build_pki

ENTITY = (b"Content-Type: text/plain; charset=us-ascii\r\n"
          b"Content-Transfer-Encoding: 7bit\r\n\r\n"
          b"Hello, this is the signed body.\r\nSo far, so good: a test.\r\n")


def run(*args: str | Path, stdin: bytes | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run a real tool; a missing tool fails the test (FileNotFoundError), never skips it.

    With ``check``, a non-zero exit fails with the tool's stderr in the message.
    """
    result = subprocess.run([str(a) for a in args], input=stdin, capture_output=True,
                            check=False, env=env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(str(a) for a in args)} exited {result.returncode}:\n"
                             f"{result.stderr.decode(errors='replace')}")
    return result


# gpgsm 2.2's PKCS#12 reader rejects about 1.5 % of openssl's exports of the very same key and
# certificate ("decryption failed; trying charset ...", "error at bag.encryptedData"): it
# depends on the export's random salt, not on the key. A fresh export gets a fresh salt.
P12_EXPORT_ATTEMPTS = 10


def _import_alice_key(pki: Pki, home: Path, env: dict[str, str]) -> None:
    p12 = home / "alice.p12"
    for _ in range(P12_EXPORT_ATTEMPTS):
        run("openssl", "pkcs12", "-export", "-inkey", pki.alice.key_path, "-in",
            pki.alice.cert_path, "-passout", "pass:test", "-certpbe", "PBE-SHA1-3DES",
            "-keypbe", "PBE-SHA1-3DES", "-macalg", "sha1", "-out", p12)
        imported = run("gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd",
                       "0", "--import", p12, stdin=b"test\n", env=env, check=False)
        if imported.returncode == 0:
            return
    raise AssertionError(f"gpgsm refused {P12_EXPORT_ATTEMPTS} exports of alice's key:\n"
                         f"{imported.stderr.decode(errors='replace')}")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Root CA, issuing CA, users (RSA, EC, expired) and an unrelated CA."""
    return build_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def entity_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The canonical test entity as a file, for openssl and gpgsm."""
    path = tmp_path_factory.mktemp("entity") / "entity.txt"
    path.write_bytes(ENTITY)
    return path


@pytest.fixture(scope="session")
def gpgsm_home(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An isolated GNUPGHOME that trusts the test root and holds alice's key.

    gpgsm 2.2 reads only legacy PKCS#12 (3DES PBE, SHA-1 MAC), so alice's key is exported so.
    """
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    (home / "gpgsm.conf").write_text("disable-crl-checks\ndisable-dirmngr\n")
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    env = {**os.environ, "GNUPGHOME": str(home)}
    run("gpgsm", "--batch", "--import", pki.root.cert_path, pki.issuing.cert_path, env=env)
    fingerprint = pki.root.cert.fingerprint(hashes.SHA1()).hex(":").upper()  # noqa: S303
    (home / "trustlist.txt").write_text(f"{fingerprint} S relax\n")
    _import_alice_key(pki, home, env)
    yield env
    run("gpgconf", "--kill", "gpg-agent", env=env, check=False)


