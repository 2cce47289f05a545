"""The key file: format, permission check, validation, and secrets that never leak."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import pytest

from mailroute.errors import ConfigError, KeyUnavailableError
from mailroute.marker import load_key_ring
from mailroute.marker.keyring import derive_mac_key
from tests.marker.helpers import (
    DAY,
    NOW,
    SECRET_A,
    SECRET_A_B64,
    key_file_text,
    ring,
    write_key_file,
)


def leaks(text: str) -> bool:
    """True when ``text`` shows the secret in any encoding a careless log would use."""
    key = derive_mac_key(SECRET_A, "k1")
    return any(s in text for s in (SECRET_A_B64, SECRET_A.decode(), repr(SECRET_A),
                                   key.hex(), repr(key)))


def test_key_file_loads_tag_org_and_keys(tmp_path: Path) -> None:
    loaded = load_key_ring(write_key_file(tmp_path))
    assert (loaded.tag, loaded.org_id) == ("g7k2qd", "example.net")
    assert [k.kid for k in loaded.keys] == ["k1"]
    assert loaded.keys[0].mac_key == derive_mac_key(SECRET_A, "k1")


def test_derived_key_is_per_key_id_and_differs_from_the_secret() -> None:
    assert derive_mac_key(SECRET_A, "k1") != derive_mac_key(SECRET_A, "k2")
    assert derive_mac_key(SECRET_A, "k1") != SECRET_A


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o700 | 0o004])
def test_key_file_accessible_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_key_file(tmp_path, mode=mode)
    with pytest.raises(ConfigError, match="group or others") as caught:
        load_key_ring(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_key_file_is_accepted(tmp_path: Path, mode: int) -> None:
    assert load_key_ring(write_key_file(tmp_path, mode=mode)).tag == "g7k2qd"


def test_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open key file"):
        load_key_ring(tmp_path / "absent.toml")


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    target = write_key_file(tmp_path)
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="key file is a symbolic link"):
        load_key_ring(link)


@pytest.mark.parametrize(("text", "key"), [
    (key_file_text(tag="G7K2QD"), "tag"),
    (key_file_text(tag="g7k2q1"), "tag"),
    (key_file_text(org_id=""), "org_id"),
    ('tag = "g7k2qd"\norg_id = "x"\n', "key"),
    (key_file_text(keys=({"id": "K1", "secret": SECRET_A_B64},)), "key[0].id"),
    (key_file_text(keys=({"id": "k1", "secret": "c2hvcnQ="},)), "key[0].secret"),
    (key_file_text(keys=({"id": "k1", "secret": "not base64!"},)), "key[0].secret"),
    (key_file_text(keys=({"id": "k1", "secret": SECRET_A_B64, "colour": "red"},)),
     "key[0].colour"),
    (key_file_text(keys=({"id": "k1", "secret": SECRET_A_B64},
                         {"id": "k1", "secret": SECRET_A_B64})), "key"),
    (key_file_text(keys=({"id": "k1", "secret": SECRET_A_B64, "sign_until": NOW,
                          "verify_until": NOW - 1},)), "key[0]"),
    (key_file_text(keys=({"id": "k1", "secret": SECRET_A_B64, "not_before": NOW,
                          "sign_until": NOW},)), "key[0]"),
    (key_file_text(keys=({"id": "k1", "secret": SECRET_A_B64, "not_before": "soon"},)),
     "key[0].not_before"),
    ("extra = 1\n" + key_file_text(), "extra"),
    ("tag = \n", None),
    ('tag = "g7k2qd"\norg_id = "x"\nkey = ["k1"]\n', "key[0]"),
    ('tag = "g7k2qd"\norg_id = "x"\nkey = "k1"\n', "key"),
    ('tag = "g7k2qd"\norg_id = 5\n[[key]]\n', "org_id"),
])
def test_invalid_key_files_name_the_key_and_never_the_secret(tmp_path: Path, text: str,
                                                             key: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        load_key_ring(write_key_file(tmp_path, text))
    if key is not None:
        assert caught.value.key is not None
        assert caught.value.key.startswith(key)
    assert not leaks(str(caught.value))
    assert not leaks(str(caught.value.reply))


def test_toml_datetimes_naive_and_dates_are_utc(tmp_path: Path) -> None:
    text = key_file_text(keys=()) + (
        '[[key]]\nid = "a"\nsecret = "' + SECRET_A_B64 + '"\n'
        "not_before = 2026-09-21T00:00:00\nsign_until = 2026-10-01\n"
        "verify_until = 2026-10-08T02:00:00+02:00\n")
    key = load_key_ring(write_key_file(tmp_path, text)).keys[0]
    assert key.not_before == 1_790_000_000 - 1_790_000_000 % DAY
    assert key.sign_until == key.not_before + 10 * DAY
    assert key.verify_until == key.sign_until + 7 * DAY


def test_no_key_may_sign_raises_key_unavailable() -> None:
    retired = ring(keys=({"id": "k1", "secret": SECRET_A_B64, "sign_until": NOW},))
    with pytest.raises(KeyUnavailableError) as caught:
        retired.signing_key(NOW)
    assert caught.value.retryable
    assert caught.value.reply.code == 451
    future = ring(keys=({"id": "k1", "secret": SECRET_A_B64, "not_before": NOW + 1},))
    with pytest.raises(KeyUnavailableError):
        future.signing_key(NOW)


def test_secrets_are_not_in_reprs(tmp_path: Path) -> None:
    loaded = load_key_ring(write_key_file(tmp_path))
    assert not leaks(repr(loaded))
    assert not leaks(str(loaded))
    assert not leaks(repr(loaded.keys[0]))
    assert "k1" in repr(loaded)


def test_loading_logs_nothing_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    load_key_ring(write_key_file(tmp_path))
    with pytest.raises(ConfigError):
        load_key_ring(write_key_file(tmp_path, mode=0o644, name="open.toml"))
    assert not leaks(caplog.text)


def test_derived_key_is_rfc5869_hkdf_sha256_with_empty_salt() -> None:
    prk = hmac.new(b"", SECRET_A, hashlib.sha256).digest()
    okm = hmac.new(prk, b"mailroute/mark/v1/k1" + b"\x01", hashlib.sha256).digest()
    assert derive_mac_key(SECRET_A, "k1") == okm


@pytest.mark.parametrize("kid", ["k1", "k2026a", "zzzzzzzz"])
def test_derived_key_equals_the_cryptography_packages_hkdf(kid: str) -> None:
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    reference = HKDF(algorithm=SHA256(), length=32, salt=None,
                     info=b"mailroute/mark/v1/" + kid.encode()).derive(SECRET_A)
    assert derive_mac_key(SECRET_A, kid) == reference
