"""Filter behaviour beyond interop: policies for missing keys, coverage, inline PGP, options."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute import Filter, Pipeline, Result
from mailroute.config.options import Options
from mailroute.errors import ConfigError
from mailroute.filters.pgp import (
    PgpDecryptFilter,
    PgpEncryptFilter,
    PgpSignFilter,
    PgpVerifyFilter,
    build_decrypt,
    build_sign,
)
from mailroute.item import Envelope
from mailroute.pgp import KeyStore
from mailroute.policy import build_filter
from mailroute.results import Action
from tests.pgp.gpgtool import armored_message, gpg
from tests.pgp.messages import HEAD, PLAIN, from_bob
from tests.pgp.world import PgpWorld

pytestmark = pytest.mark.interop


def run(step: Filter, raw: bytes, rcpt: tuple[str, ...] = ()) -> Result:
    return Pipeline(filters=(step,)).process(raw, Envelope(rcpt_to=rcpt))


def auth(result: Result) -> tuple[str, str]:
    assert result.item is not None
    (only,) = result.item.auth_results
    return only.status.value, only.reason


@pytest.mark.parametrize(("policy", "action"), [
    ("reject", Action.REJECT), ("tempfail", Action.TEMPFAIL), ("pass", Action.ACCEPT)])
def test_missing_key_follows_policy(store: KeyStore, policy: str, action: Action) -> None:
    result = run(PgpEncryptFilter(store, on_missing_key=policy), PLAIN,
                 rcpt=("alice@example.org", "nobody@example.com"))
    assert result.action is action
    if action is Action.ACCEPT:
        assert result.data == PLAIN
        assert result.item is not None
        assert result.item.annotation("pgp-encrypt") == "missing-key nobody@example.com:no-key"
    else:
        assert result.data is None


def test_protected_messages_are_not_signed_or_encrypted_again(store: KeyStore) -> None:
    signed = run(PgpSignFilter(store, "alice@example.org"), PLAIN).data
    assert signed is not None
    assert run(PgpSignFilter(store, "alice@example.org"), signed).data == signed
    encrypted = run(PgpEncryptFilter(store), PLAIN, rcpt=("alice@example.org",)).data
    assert encrypted is not None
    assert run(PgpEncryptFilter(store), encrypted, rcpt=("alice@example.org",)).data == encrypted
    assert run(PgpSignFilter(store, "alice@example.org"), encrypted).data == encrypted


def test_signed_message_is_encrypted_in_nested_form(store: KeyStore,
                                                    pgp_world: PgpWorld) -> None:
    signed = run(PgpSignFilter(store, "alice@example.org"), PLAIN).data
    assert signed is not None
    encrypted = run(PgpEncryptFilter(store), signed, rcpt=("alice@example.org",)).data
    assert encrypted is not None
    inner = gpg(pgp_world.peer, "--decrypt", data=armored_message(encrypted))
    assert inner.has("GOODMDC")
    assert inner.stdout == signed[signed.index(b"Content-Type: multipart/signed"):]
    result = run(PgpDecryptFilter(store), encrypted)
    assert auth(result) == ("pass", "good signature")


def test_signer_other_than_from_is_a_policy_result(store: KeyStore) -> None:
    signed = run(PgpSignFilter(store, "alice@example.org"), from_bob(PLAIN)).data
    assert signed is not None
    assert auth(run(PgpVerifyFilter(store), signed)) == ("policy", "signer does not match From")


def test_unsigned_message_gets_none(store: KeyStore) -> None:
    assert auth(run(PgpVerifyFilter(store), PLAIN)) == ("none", "no PGP signature")


def test_unknown_signer_fails(store: KeyStore, pgp_world: PgpWorld) -> None:
    body = b"mallory was here\r\n"
    block = gpg(pgp_world.peer, "--clearsign", "-u", pgp_world.mallory, data=body).stdout
    raw = HEAD + b"Content-Type: text/plain\r\n\r\n" + block.replace(b"\n", b"\r\n")
    assert auth(run(PgpVerifyFilter(store), raw)) == ("fail", "no-public-key")


def test_inline_signed_block_alone_is_complete(store: KeyStore, pgp_world: PgpWorld) -> None:
    block = gpg(pgp_world.peer, "--clearsign", "-u", pgp_world.alice,
                data=b"inline signed\n").stdout
    raw = HEAD + b"Content-Type: text/plain\r\n\r\n" + block.replace(b"\n", b"\r\n")
    assert auth(run(PgpVerifyFilter(store), raw)) == ("pass", "good signature")
    wrapped = HEAD + b"Content-Type: text/plain\r\n\r\nAttacker text above.\r\n" + block
    status, reason = auth(run(PgpVerifyFilter(store), wrapped))
    assert status == "neutral"
    assert reason == "signature covers only text"


def test_inline_encrypted_text_is_decrypted(store: KeyStore, pgp_world: PgpWorld) -> None:
    enc = gpg(pgp_world.peer, "--encrypt", "--armor", "-r", pgp_world.alice,
              data="Grüße, inline\n".encode()).stdout
    raw = HEAD + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + enc.replace(
        b"\n", b"\r\n")
    result = run(PgpDecryptFilter(store), raw)
    assert result.item is not None
    part = result.item.message.root
    assert part.charset == "utf-8"
    from mailroute.mime import decode_text
    assert decode_text(part) == "Grüße, inline\r\n"
    around = HEAD + b"Content-Type: text/plain\r\n\r\n<b>look</b>\r\n" + enc
    untouched = run(PgpDecryptFilter(store), around)
    assert untouched.data == around
    assert untouched.item is not None
    assert untouched.item.annotation("pgp-decrypt") == "skipped"


def test_nested_encrypted_part_is_not_decrypted(store: KeyStore) -> None:
    enc = run(PgpEncryptFilter(store), PLAIN, rcpt=("alice@example.org",)).data
    assert enc is not None
    inner = enc[enc.index(b"Content-Type: multipart/encrypted"):]
    outer = HEAD + (b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n'
                    b"Content-Type: text/html\r\n\r\n<img src='http://evil/\r\n--x\r\n"
                    + inner + b"\r\n--x--\r\n")
    result = run(PgpDecryptFilter(store), outer)
    assert result.data == outer


def test_decrypt_requirement_and_inbound_flag_removal(store: KeyStore) -> None:
    spoofed = b"X-Mailroute-PGP: decrypt=ok\r\n" + PLAIN
    assert run(PgpDecryptFilter(store), spoofed).data == PLAIN
    refused = run(PgpDecryptFilter(store, require_encrypted=True), PLAIN)
    assert refused.action is Action.REJECT
    assert refused.reply.startswith("554 5.7.5")


def test_combined_nested_sign_then_encrypt_is_verified(store: KeyStore) -> None:
    signed = run(PgpSignFilter(store, "alice@example.org"), PLAIN).data
    assert signed is not None
    # encrypt the signed message as a whole (RFC 3156 section 6.1, nested form)
    armored = store.encrypt(signed[len(HEAD):], [store.signer("alice@example.org")])
    from mailroute.mime import parse
    from mailroute.pgp.rfc3156 import build_encrypted
    raw = build_encrypted(parse(PLAIN), armored).to_bytes()
    result = run(PgpDecryptFilter(store), raw)
    assert auth(result) == ("pass", "good signature")
    assert result.item is not None
    assert result.item.message.root.mime_type == "multipart/signed"


def test_policy_builds_every_filter(pgp_world: PgpWorld, tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse battery staple\n")
    secret.chmod(0o600)
    home = str(pgp_world.gateway)
    for name, extra in (("pgp-sign", {"signer": "bob@example.net",
                                      "passphrase_file": str(secret)}),
                        ("pgp-encrypt", {"recipient": ["bob@example.net"]}),
                        ("pgp-decrypt", {"on_failure": "reject"}),
                        ("pgp-verify", {"on_invalid": "reject"})):
        options = Options({"gnupghome": home, **extra}, source="t.toml")
        assert build_filter(name, options).name == name
        options.finish()
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="group or others"):
        build_sign(Options({"gnupghome": home, "signer": "x", "passphrase_file": str(secret)},
                           source="t.toml"))
    with pytest.raises(ConfigError, match="gnupghome"):
        build_decrypt(Options({"gnupghome": str(tmp_path / "none")}, source="t.toml"))


def test_second_user_id_binds_the_from_address(store: KeyStore) -> None:
    raw = PLAIN.replace(b"From: Alice <alice@example.org>", b"From: Alice <alice@work.example>")
    signed = run(PgpSignFilter(store, "alice@example.org"), raw).data
    assert signed is not None
    result = run(PgpVerifyFilter(store), signed)
    assert result.item is not None
    (only,) = result.item.auth_results
    assert only.properties == (("header.from", "alice@work.example"),)
    from mailroute.mime import parse
    from mailroute.pgp import verify_message
    signers = verify_message(store, parse(signed)).to_json()["signers"]
    assert isinstance(signers, list)
    (signer,) = signers
    assert signer["email"] == "alice@work.example"
    assert signer["covers"] == "message"
