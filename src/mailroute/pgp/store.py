"""A PGP key store: one private GnuPG home and the operations a gateway runs on it."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from mailroute.errors import CryptoError, SigningError, TemporaryError
from mailroute.paths import private_directory
from mailroute.pgp.keys import (
    KeyFound,
    KeyInfo,
    KeyLookup,
    find_by_address,
    find_key,
    parse_colons,
)
from mailroute.pgp.runner import GpgRunner
from mailroute.pgp.status import (
    DecryptionVerdict,
    SignatureCheck,
    SignatureStatus,
    decryption_verdict,
    signature_checks,
)
from mailroute.records import record

__all__ = ["GPG_CONF", "DecryptResult", "KeyStore", "Signed", "init_home"]

#: Written into a new home for administrators who run gpg there by hand; mailroute itself
#: passes every option on the command line and ignores the file (``--no-options``).
GPG_CONF = """\
# written by mailroute: keep this home off the network
no-auto-key-retrieve
no-auto-key-import
auto-key-locate local
disable-dirmngr
trust-model always
"""
_AGENT_CONF = "allow-loopback-pinentry\n"
_UNREADABLE = (SignatureCheck(SignatureStatus.ERROR),)
_HASH_NAMES = {2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}


def init_home(home: str | os.PathLike[str]) -> Path:
    """Create ``home`` (mode 0700, missing parents too) with mailroute's ``gpg.conf`` unless
    one exists; the home as a :class:`~pathlib.Path`."""
    home = Path(home)
    private_directory(home)
    os.chmod(home, 0o700)
    for name, text in (("gpg.conf", GPG_CONF), ("gpg-agent.conf", _AGENT_CONF)):
        target = home / name
        if not target.exists():
            target.write_text(text, encoding="ascii")
    return home


@record(frozen=True)
class Signed:
    """A detached signature and the ``micalg`` value for RFC 3156."""

    signature: bytes
    micalg: str


@record(frozen=True)
class DecryptResult:
    """The outcome of a decryption.

    ``plaintext`` is set only when ``verdict`` is OK: gpg's output of a failed or
    unauthenticated decryption is dropped here and never reaches a caller.
    """

    verdict: DecryptionVerdict
    plaintext: bytes | None
    signatures: tuple[SignatureCheck, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the plaintext is authenticated (MDC or AEAD) and may be used."""
        return self.verdict is DecryptionVerdict.OK and self.plaintext is not None


class KeyStore:
    """A GnuPG home used by mailroute: public keys of correspondents, own secret keys.

    Args:
        home: the home directory (created with :func:`init_home` or by an administrator).
        timeout: seconds per gpg call.
        max_output: bytes one call may output.
        gpg_binary: the gpg executable.
    """

    def __init__(self, home: Path, *, timeout: float = 30.0, max_output: int = 64 << 20,
                 gpg_binary: str = "gpg") -> None:
        self.home = home
        self._cache: dict[str, tuple[tuple[tuple[int, int], ...], tuple[KeyInfo, ...]]] = {}
        self._cache_lock = threading.Lock()
        self._runner = GpgRunner(home, timeout=timeout, max_output=max_output,
                                 gpg_binary=gpg_binary)

    # -- keys --------------------------------------------------------------------------------

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        """Modification stamps of the keyrings; a listing is reused while they hold."""
        stamps = []
        for name in ("pubring.kbx", "pubring.gpg", "private-keys-v1.d", "trustdb.gpg"):
            try:
                info = (self.home / name).stat()
            except FileNotFoundError:
                stamps.append((0, 0))
                continue
            stamps.append((info.st_mtime_ns, info.st_size))
        return tuple(stamps)

    def _listing(self, option: str) -> tuple[KeyInfo, ...]:
        stamp = self._stamp()
        with self._cache_lock:
            cached = self._cache.get(option)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        run = self._runner.run(["--with-colons", "--fixed-list-mode", option])
        keys = parse_colons(run.data.decode("utf-8", "replace"))
        if run.returncode != 0 and not keys:
            # gpg failed (a broken binary or agent): "no key" would refuse the mail for good
            raise TemporaryError(f"gpg could not list keys (exit status {run.returncode})")
        with self._cache_lock:
            self._cache[option] = (stamp, keys)
        return keys

    def public_keys(self) -> tuple[KeyInfo, ...]:
        """Every public key in the home (cached until a keyring file changes)."""
        return self._listing("--list-keys")

    def secret_keys(self) -> tuple[KeyInfo, ...]:
        """Every key with a secret part in the home (cached like :meth:`public_keys`)."""
        return self._listing("--list-secret-keys")

    def lookup(self, address: str) -> KeyLookup:
        """The encryption key for ``address`` (local keys only), or why there is none."""
        return find_by_address(self.public_keys(), address)

    def lookup_all(self, idents: Sequence[str]) -> tuple[KeyLookup, ...]:
        """Encryption keys for several addresses or fingerprints, with one listing."""
        keys = self.public_keys()
        return tuple(find_key(keys, ident, "E") for ident in idents)

    def signer(self, ident: str) -> str:
        """The fingerprint of the secret signing key ``ident`` (fingerprint or address).

        Raises:
            SigningError: no usable secret key.
        """
        found = find_key(self.secret_keys(), ident, "S")
        if not isinstance(found, KeyFound):
            raise SigningError(f"no usable secret signing key ({found.reason})")
        return found.fingerprint

    def import_keys(self, data: bytes) -> int:
        """Import keys; returns how many gpg reported as imported or unchanged."""
        run = self._runner.run(["--import"], data)
        line = run.status.first("IMPORT_RES")
        return int(line.arg(0)) if line is not None and line.arg(0).isdigit() else 0

    # -- operations --------------------------------------------------------------------------

    def sign_detached(self, data: bytes, signer_fpr: str, *,
                      passphrase: str | None = None) -> Signed:
        """An armored detached binary-mode signature over ``data`` with SHA-256.

        Raises:
            SigningError: gpg did not report ``SIG_CREATED`` for a detached signature.
        """
        run = self._runner.run(["--detach-sign", "--armor", "--local-user", signer_fpr,
                                "--digest-algo", "SHA256"], data, passphrase=passphrase)
        created = run.status.first("SIG_CREATED")
        if created is None or created.arg(0) != "D" or not run.data:
            raise SigningError("gpg did not sign (key unusable or passphrase wrong)")
        algo = int(created.arg(2)) if created.arg(2).isdigit() else 0
        if algo not in _HASH_NAMES or algo == 2:
            raise SigningError("gpg signed with an unexpected hash algorithm")
        return Signed(run.data, f"pgp-{_HASH_NAMES[algo]}")

    def encrypt(self, data: bytes, recipient_fprs: Sequence[str], *,
                sign_with: str | None = None, passphrase: str | None = None) -> bytes:
        """An ASCII-armored OpenPGP message to every recipient, optionally signed.

        Raises:
            CryptoError: gpg did not finish the encryption (unusable key).
            SigningError: a signature was asked for and gpg did not make it.
        """
        if not recipient_fprs:
            raise CryptoError("no recipients to encrypt to")
        args = ["--encrypt", "--armor"]
        for fpr in recipient_fprs:
            args += ["--recipient", fpr]
        if sign_with is not None:
            args += ["--sign", "--local-user", sign_with, "--digest-algo", "SHA256"]
        run = self._runner.run(args, data, passphrase=passphrase)
        if sign_with is not None and not run.status.has("SIG_CREATED"):
            raise SigningError("gpg did not sign (key unusable or passphrase wrong)")
        if not run.status.has("END_ENCRYPTION") or run.status.has("INV_RECP") or not run.data:
            raise CryptoError("gpg did not encrypt (recipient key unusable)")
        return run.data

    def decrypt(self, data: bytes, *, passphrase: str | None = None) -> DecryptResult:
        """Decrypt an OpenPGP message; the plaintext only when integrity-protected."""
        run = self._runner.run(["--decrypt"], data, passphrase=passphrase)
        verdict = decryption_verdict(run.status)
        checks = signature_checks(run.status)
        if verdict is not DecryptionVerdict.OK:
            return DecryptResult(verdict, None, checks)
        return DecryptResult(verdict, run.data, checks)

    def verify_detached(self, signature: bytes, data: bytes) -> tuple[SignatureCheck, ...]:
        """Check a detached signature over ``data``; one entry per signature found.

        Something that is not a detached signature gives one ``ERROR`` entry.
        """
        with tempfile.TemporaryDirectory(prefix="mailroute-pgp-") as folder:
            sig_path = Path(folder) / "signature.asc"
            sig_path.write_bytes(signature)
            run = self._runner.run(["--verify", str(sig_path), "-"], data)
        if run.status.has("PLAINTEXT"):  # a signed message, not a detached signature
            return _UNREADABLE
        return signature_checks(run.status) or _UNREADABLE

    def verify_inline(self, block: bytes) -> tuple[SignatureCheck, ...]:
        """Check a cleartext-signed (``BEGIN PGP SIGNED MESSAGE``) block."""
        return signature_checks(self._runner.run(["--verify"], block).status) or _UNREADABLE

    def close(self) -> None:
        """Stop the home's gpg-agent."""
        self._runner.close()
