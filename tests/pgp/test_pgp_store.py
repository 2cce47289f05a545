"""The gpg layer against the real gpg: lookup, typed misses, hygiene, integrity."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from mailroute.errors import ConfigError, SigningError, TemporaryError
from mailroute.pgp import (
    DecryptionVerdict,
    KeyFound,
    KeyMissing,
    KeyStore,
    MissingReason,
    SignatureStatus,
    init_home,
)
from mailroute.pgp.runner import _home_lock
from tests.pgp.gpgtool import gpg, new_home
from tests.pgp.world import BOB_PASS, PgpWorld

pytestmark = pytest.mark.interop

FAKE_GPG = """#!/bin/sh
# a stand-in gpg: answers --list-config, records argv and stdin, then {action}
case "$*" in *--list-config*) echo 'cfg:version:2.2.40'; exit 0;; esac
printf '%s\\n' "$@" > "{log}.argv"
{action}
"""


def _fake_gpg(tmp_path: Path, action: str) -> str:
    script = tmp_path / "fake-gpg"
    script.write_text(FAKE_GPG.format(log=tmp_path / "call", action=action))
    script.chmod(0o700)
    return str(script)


def test_lookup_by_address_is_case_insensitive(store: KeyStore, pgp_world: PgpWorld) -> None:
    assert store.lookup("ALICE@Example.ORG") == KeyFound("alice@example.org", pgp_world.alice)
    assert store.lookup("bob@example.net") == KeyFound("bob@example.net", pgp_world.bob)


def test_missing_key_is_a_typed_result(store: KeyStore) -> None:
    found = store.lookup_all(["mallory@example.com", "alice@example.org"])
    assert found[0] == KeyMissing("mallory@example.com", MissingReason.NO_KEY)
    assert isinstance(found[1], KeyFound)


def test_signer_by_address_and_fingerprint(store: KeyStore, pgp_world: PgpWorld) -> None:
    assert store.signer("alice@example.org") == pgp_world.alice
    assert store.signer(pgp_world.bob.lower()) == pgp_world.bob
    with pytest.raises(SigningError):
        store.signer("mallory@example.com")


def test_sign_and_verify_with_passphrase(store: KeyStore, pgp_world: PgpWorld) -> None:
    signed = store.sign_detached(b"hello\r\n", pgp_world.bob, passphrase=BOB_PASS)
    assert signed.micalg == "pgp-sha256"
    (good,) = store.verify_detached(signed.signature, b"hello\r\n")
    assert good.valid
    assert good.primary_fingerprint == pgp_world.bob
    (bad,) = store.verify_detached(signed.signature, b"hellO\r\n")
    assert bad.status is SignatureStatus.BAD


def test_wrong_passphrase_does_not_sign(tmp_path: Path, pgp_world: PgpWorld) -> None:
    # a fresh agent (own copy of the home) so no cached passphrase helps
    from tests.pgp.gpgtool import copy_home, kill_agent
    home = copy_home(pgp_world.gateway, tmp_path / "h")
    try:
        with pytest.raises(SigningError):
            KeyStore(home).sign_detached(b"x", pgp_world.bob, passphrase="wrong")
    finally:
        kill_agent(home)


def test_unsafe_passphrase_is_refused_before_gpg_runs(store: KeyStore,
                                                      pgp_world: PgpWorld) -> None:
    for bad in ("a\nb", "a\rb", "a\0b"):
        with pytest.raises(ConfigError):
            store.sign_detached(b"x", pgp_world.bob, passphrase=bad)


def test_passphrase_goes_to_stdin_never_argv(tmp_path: Path) -> None:
    home = init_home(tmp_path / "home")
    binary = _fake_gpg(tmp_path, f"cat > {tmp_path / 'call'}.stdin")
    store = KeyStore(home, gpg_binary=binary)
    with pytest.raises(SigningError):
        store.sign_detached(b"DATA", "F" * 40, passphrase="s3cret words")
    argv = (tmp_path / "call.argv").read_text().splitlines()
    assert not any("s3cret" in a for a in argv)
    assert (tmp_path / "call.stdin").read_bytes() == b"s3cret words\nDATA"
    assert argv[argv.index("--pinentry-mode") + 1] == "loopback"
    for flag in ("--no-options", "--disable-dirmngr", "--no-auto-key-retrieve"):
        assert flag in argv
    assert argv[argv.index("--auto-key-locate") + 1] == "local"


def test_a_hanging_gpg_is_killed(tmp_path: Path) -> None:
    home = init_home(tmp_path / "home")
    store = KeyStore(home, timeout=0.5, gpg_binary=_fake_gpg(tmp_path, "exec sleep 60"))
    with pytest.raises(TemporaryError, match="timed out"):
        store.public_keys()


def test_home_must_be_private(tmp_path: Path) -> None:
    home = init_home(tmp_path / "home")
    home.chmod(0o750)
    with pytest.raises(ConfigError, match="owner only"):
        KeyStore(home)
    with pytest.raises(ConfigError, match="not a directory"):
        KeyStore(tmp_path / "missing")


def test_init_home_writes_an_offline_gpg_conf(tmp_path: Path) -> None:
    home = init_home(str(tmp_path / "state" / "home"))   # a str, as docs/pgp.md shows it
    assert home == tmp_path / "state" / "home"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(home.parent.stat().st_mode) == 0o700
    conf = (home / "gpg.conf").read_text()
    assert "auto-key-locate local" in conf
    assert "no-auto-key-retrieve" in conf


def test_one_lock_per_home(pgp_world: PgpWorld, tmp_path: Path) -> None:
    assert _home_lock(pgp_world.gateway) is _home_lock(pgp_world.gateway / ".")
    assert _home_lock(pgp_world.gateway) is not _home_lock(new_home(tmp_path / "other"))


def test_concurrent_calls_on_one_home_all_succeed(store: KeyStore, pgp_world: PgpWorld) -> None:
    results: list[bool] = []

    def work(i: int) -> None:
        data = f"message {i}\r\n".encode()
        sig = store.sign_detached(data, pgp_world.alice)
        results.append(store.verify_detached(sig.signature, data)[0].valid)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 6


def test_message_without_mdc_is_never_returned(store: KeyStore, pgp_world: PgpWorld) -> None:
    legacy = gpg(pgp_world.peer, "--rfc2440", "--cipher-algo", "CAST5", "--encrypt", "--armor",
                 "-r", pgp_world.alice, data=b"attacker-visible plaintext\n")
    assert legacy.returncode == 0
    # the trap: gpg itself writes the plaintext and then says DECRYPTION_FAILED
    raw = gpg(pgp_world.peer, "--decrypt", data=legacy.stdout)
    assert b"attacker-visible" in raw.stdout
    assert raw.has("DECRYPTION_FAILED")
    result = store.decrypt(legacy.stdout)
    assert result.verdict is DecryptionVerdict.NO_INTEGRITY
    assert result.plaintext is None
    assert not result.ok


def test_ignore_mdc_error_status_is_still_refused(pgp_world: PgpWorld) -> None:
    from mailroute.pgp import StatusLog, decryption_verdict
    legacy = gpg(pgp_world.peer, "--rfc2440", "--cipher-algo", "CAST5", "--encrypt", "--armor",
                 "-r", pgp_world.alice, data=b"x\n")
    forced = gpg(pgp_world.peer, "--ignore-mdc-error", "--decrypt", data=legacy.stdout)
    assert forced.has("DECRYPTION_OKAY")
    assert not forced.has("GOODMDC")
    log = StatusLog.parse("".join(f"[GNUPG:] {line}\n" for line in forced.status))
    assert decryption_verdict(log) is DecryptionVerdict.NO_INTEGRITY


def test_decrypt_without_secret_key(store: KeyStore, pgp_world: PgpWorld) -> None:
    enc = gpg(pgp_world.peer, "--encrypt", "--armor", "-r", pgp_world.mallory, data=b"x\n")
    result = store.decrypt(enc.stdout)
    assert result.verdict is DecryptionVerdict.NO_SECRET_KEY
    assert result.plaintext is None


def test_unknown_signer_is_no_public_key(store: KeyStore, pgp_world: PgpWorld) -> None:
    sig = gpg(pgp_world.peer, "--detach-sign", "--armor", "-u", pgp_world.mallory, data=b"m\r\n")
    (check,) = store.verify_detached(sig.stdout, b"m\r\n")
    assert check.status is SignatureStatus.NO_PUBLIC_KEY


def test_signed_message_is_not_taken_for_a_detached_signature(store: KeyStore,
                                                              pgp_world: PgpWorld) -> None:
    whole = gpg(pgp_world.peer, "--sign", "--armor", "-u", pgp_world.alice, data=b"other\r\n")
    (check,) = store.verify_detached(whole.stdout, b"m\r\n")
    assert not check.valid


def test_key_listing_follows_imports(tmp_path: Path, pgp_world: PgpWorld) -> None:
    from tests.pgp.gpgtool import copy_home, kill_agent
    home = copy_home(pgp_world.gateway, tmp_path / "h")
    try:
        store = KeyStore(home)
        assert isinstance(store.lookup("mallory@example.com"), KeyMissing)
        exported = gpg(pgp_world.peer, "--export", "--armor", pgp_world.mallory).stdout
        assert store.import_keys(exported) == 1
        assert store.lookup("mallory@example.com") == KeyFound("mallory@example.com",
                                                               pgp_world.mallory)
    finally:
        kill_agent(home)


def test_output_is_bounded(pgp_world: PgpWorld) -> None:
    from mailroute.errors import LimitExceededError
    enc = gpg(pgp_world.peer, "--encrypt", "--armor", "-r", pgp_world.alice,
              data=b"A" * 100_000).stdout
    assert len(enc) < 2_000  # compresses well: a small input that expands
    small = KeyStore(pgp_world.gateway, max_output=10_000)
    with pytest.raises(LimitExceededError):
        small.decrypt(enc)
