"""The S/MIME filters in a pipeline: results, annotations, wrap round trip, policy files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)

from mailroute import Context, Pipeline
from mailroute.filters.smime import SmimeDecrypt, SmimeEncrypt, SmimeSign, SmimeVerify
from mailroute.item import Envelope
from mailroute.keys.certstore import DirectoryCertStore
from mailroute.mime import build_leaf, parse
from mailroute.policy import load_policy, policy_from_mapping
from mailroute.results import Action
from mailroute.smime import Identity, Signer, TrustAnchors, base64_lines, encrypt
from tests.smime.pki import NOW, Pki
from tests.smime.test_mime_interop import EIGHT_BIT_LF, MESSAGE

CONTEXT = Context(clock=NOW.timestamp)


def _signer(pki: Pki) -> Signer:
    return Signer(pki.alice.cert, pki.alice.key, (pki.issuing.cert,))


def _verify(pki: Pki, data: bytes, authserv_id: str = "mailroute") -> tuple[str, object]:
    result = Pipeline(filters=(SmimeVerify(TrustAnchors((pki.root.cert,))),),
                      authserv_id=authserv_id).process(data, context=CONTEXT)
    assert result.action is Action.ACCEPT
    assert result.item is not None
    assert result.data is not None
    fields = parse(result.data).headers.get_all("Authentication-Results")
    return "\n".join(f.value for f in fields), result.item.annotation("smime.verify")


@pytest.mark.parametrize("opaque", [False, True], ids=["detached", "opaque"])
def test_sign_then_disclaimer_wrap_still_verifies(pki: Pki, opaque: bool) -> None:
    signed = Pipeline(filters=(SmimeSign(_signer(pki), opaque=opaque),)).process(
        MESSAGE, context=CONTEXT)
    assert signed.data is not None
    disclaimer = build_leaf("text/plain", "Sent through the gateway.\r\n")
    wrapped = parse(signed.data).wrap((), after=(disclaimer,))
    assert wrapped.root.mime_type == "multipart/mixed"
    header, verdict = _verify(pki, wrapped.to_bytes())
    assert verdict == "valid"
    assert header == ("mailroute; smime=pass reason=\"valid\" "
                      "body.smime-identifier=alice@example.org body.smime-part=1")


def test_verify_writes_our_result_and_strips_forged_copies(pki: Pki) -> None:
    signed = Pipeline(filters=(SmimeSign(_signer(pki)),)).process(MESSAGE, context=CONTEXT)
    assert signed.data is not None
    forged = b"Authentication-Results: mx.example.net; smime=pass\r\n" + signed.data.replace(
        b"signed body", b"signed b0dy")
    header, verdict = _verify(pki, forged, authserv_id="mx.example.net")
    assert verdict == "bad-digest"
    assert header == ("mx.example.net; smime=fail reason=\"bad-digest\" "
                      "body.smime-identifier=alice@example.org")


def test_unsigned_message_gets_smime_none(pki: Pki) -> None:
    header, verdict = _verify(pki, MESSAGE)
    assert (header, verdict) == ("mailroute; smime=none", "none")


def test_signed_part_deeper_in_the_tree_is_not_the_messages_signature(pki: Pki) -> None:
    signed = Pipeline(filters=(SmimeSign(_signer(pki)),)).process(MESSAGE, context=CONTEXT)
    assert signed.data is not None
    first = build_leaf("text/plain", "unsigned text first\r\n")
    errant = parse(signed.data).wrap((), before=(first,))
    assert _verify(pki, errant.to_bytes())[1] == "none"


@pytest.mark.parametrize(("cipher", "authenticated"), [("aes-256-cbc", "no"),
                                                       ("aes-256-gcm", "yes")])
def test_decrypt_flags_cbc_plaintext_as_unauthenticated(pki: Pki, cipher: str,
                                                        authenticated: str) -> None:
    pipeline = Pipeline(filters=(
        SmimeEncrypt((pki.alice.cert,), cipher=cipher),
        SmimeDecrypt((Identity(pki.alice.cert, pki.alice.rsa_key),))))
    result = pipeline.process(MESSAGE, context=CONTEXT)
    assert result.data == (f"X-Mailroute-SMIME: decrypted; cipher={cipher}; "
                           f"authenticated={authenticated}\r\n").encode() + MESSAGE
    assert result.item is not None
    assert result.item.annotation("smime.authenticated") == authenticated
    assert result.item.annotation("smime.cipher") == cipher


def test_encrypt_leaves_an_encrypted_message_alone(pki: Pki) -> None:
    once = Pipeline(filters=(SmimeEncrypt((pki.alice.cert,)),)).process(MESSAGE,
                                                                        context=CONTEXT)
    assert once.data is not None
    twice = Pipeline(filters=(SmimeEncrypt((pki.alice.cert,)),)).process(once.data,
                                                                         context=CONTEXT)
    assert twice.data == once.data


def test_decrypt_filter_passes_undecryptable_mail_on_by_default(pki: Pki) -> None:
    once = Pipeline(filters=(SmimeEncrypt((pki.alice.cert,)),)).process(MESSAGE,
                                                                        context=CONTEXT)
    assert once.data is not None
    result = Pipeline(filters=(SmimeDecrypt((Identity(pki.dave.cert, pki.dave.rsa_key),)),)
                      ).process(once.data, context=CONTEXT)
    assert result.action is Action.ACCEPT
    assert result.data == b"X-Mailroute-SMIME: undecryptable\r\n" + once.data
    assert result.item is not None
    assert result.item.annotation("smime.decrypt") == "undecryptable"


def test_policy_file_with_a_certificate_store(pki: Pki, tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    shutil.copy(pki.alice.cert_path, store / "alice.pem")
    shutil.copy(pki.alice.key_path, store / "alice.key")
    shutil.copy(pki.dave.cert_path, store / "dave.crt")
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "smime-encrypt"\ncert_dir = "certs"\n'
                      'cipher = "aes-256-gcm"\n'
                      '[[pipeline]]\nfilter = "smime-decrypt"\ncert_dir = "certs"\n')
    pipeline = load_policy(policy)
    result = pipeline.process(MESSAGE, Envelope(mail_from="a@example.net",
                                                rcpt_to=["alice@EXAMPLE.org"]))
    assert result.data == (b"X-Mailroute-SMIME: decrypted; cipher=aes-256-gcm; "
                           b"authenticated=yes\r\n" + MESSAGE)
    assert result.item is not None
    assert result.item.annotation("smime.cipher") == "aes-256-gcm"
    missing = pipeline.process(MESSAGE, Envelope(rcpt_to=["nobody@example.org"]))
    assert missing.action is Action.REJECT


@pytest.mark.interop
def test_directory_store_finds_certificates_and_keys(pki: Pki, tmp_path: Path) -> None:
    p12 = tmp_path / "alice.p12"
    subprocess.run(["openssl", "pkcs12", "-export", "-inkey", str(pki.alice.key_path), "-in",
                    str(pki.alice.cert_path), "-passout", "pass:pw", "-out", str(p12)],
                   check=True, capture_output=True)
    p12.chmod(0o600)
    der = tmp_path / "bob.der"
    der.write_bytes(pki.bob.cert.public_bytes(Encoding.DER))
    store = DirectoryCertStore.load(tmp_path, passphrase=b"pw")
    assert [e.certificate for e in store.certificates_for("alice@Example.ORG")] == [
        pki.alice.cert]
    assert store.certificates_for("bob@example.net")[0].key is None
    assert [e.emails for e in store.with_keys()] == [("alice@example.org",)]


def test_policy_names_match_cli_flags(pki: Pki, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[pipeline]]\nfilter = "smime-sign"\ncert = "{pki.alice.cert_path}"\n'
                      f'key = "{pki.alice.key_path}"\nchain = ["{pki.chain_path}"]\n'
                      'opaque = true\n')
    done = subprocess.run([sys.executable, "-m", "mailroute", "process", "--config",
                           str(policy)], input=MESSAGE, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert parse(done.stdout).root.content_type.param("smime-type") == "signed-data"


def test_encrypt_then_decrypt_gives_an_8bit_lf_message_back_byte_for_byte(pki: Pki) -> None:
    pipeline = Pipeline(filters=(SmimeEncrypt((pki.alice.cert,), cipher="aes-128-gcm"),
                                 SmimeDecrypt((Identity(pki.alice.cert, pki.alice.rsa_key),),
                                              flag=False)))
    assert pipeline.process(EIGHT_BIT_LF, context=CONTEXT).data == EIGHT_BIT_LF


def test_sign_with_a_passphrase_protected_key(pki: Pki, tmp_path: Path) -> None:
    key = tmp_path / "alice-enc.key"
    key.write_bytes(pki.alice.key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"s3cret-pass")))
    good = tmp_path / "pass.txt"
    good.write_bytes(b"s3cret-pass\n")
    bad = tmp_path / "wrong.txt"
    bad.write_bytes(b"not-it\n")
    for secret in (key, good, bad):
        secret.chmod(0o600)
    base = [sys.executable, "-m", "mailroute", "smime", "sign", "--cert",
            str(pki.alice.cert_path), "--key", str(key), "--passphrase-file"]
    done = subprocess.run([*base, str(good)], input=MESSAGE, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert parse(done.stdout).root.mime_type == "multipart/signed"
    refused = subprocess.run([*base, str(bad)], input=MESSAGE, capture_output=True,
                             check=False)
    assert refused.returncode == 78
    assert refused.stdout == b""
    assert b"not-it" not in refused.stderr
    assert b"s3cret" not in refused.stderr


def test_the_cli_works_without_the_smime_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['asn1crypto'] = None\n"
            "from mailroute.cli import main\n"
            "sys.exit(main(['smime', 'verify', '--trust', 'x.pem']))\n")
    done = subprocess.run([sys.executable, "-c", code], input=MESSAGE, capture_output=True,
                          check=False, cwd=tmp_path)
    assert done.returncode == 78
    assert b"install mailroute[smime]" in done.stderr


@pytest.mark.parametrize(("action", "flags"), [
    ("sign", ("--cert", "alice", "--key", "dave")),
    ("encrypt", ("--recipient-cert", "bob"))], ids=["key-not-for-cert", "ec-recipient"])
def test_unusable_keys_are_configuration_errors(pki: Pki, action: str,
                                                flags: tuple[str, ...]) -> None:
    paths = {"alice": pki.alice.cert_path, "dave": pki.dave.key_path, "bob": pki.bob.cert_path}
    args = [str(paths.get(f, f)) for f in flags]
    done = subprocess.run([sys.executable, "-m", "mailroute", "smime", action, *args],
                          input=MESSAGE, capture_output=True, check=False)
    assert done.returncode == 78, done.stderr
    assert done.stdout == b""


def test_an_ambiguous_decrypted_entity_is_not_delivered(pki: Pki) -> None:
    entity = b"Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n"
    made = encrypt([entity], [pki.alice.cert])
    encrypted = (b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: application/"
                 b"pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64"
                 b"\r\n\r\n" + base64_lines(made.chunks))
    identity = (Identity(pki.alice.cert, pki.alice.rsa_key),)
    passed = Pipeline(filters=(SmimeDecrypt(identity),)).process(encrypted, context=CONTEXT)
    assert passed.data == b"X-Mailroute-SMIME: undecryptable\r\n" + encrypted
    refused = Pipeline(filters=(SmimeDecrypt(identity, on_failure="reject"),)).process(
        encrypted, context=CONTEXT)
    assert refused.action is Action.REJECT
    assert refused.reply == "554 5.7.5 cannot decrypt the message"


@pytest.mark.parametrize(("given", "built"), [(None, "deliver"), ("pass", "deliver"),
                                              ("flag", "deliver"), ("reject", "reject"),
                                              ("quarantine", "quarantine")])
def test_decrypt_on_failure_names(pki: Pki, given: str | None, built: str) -> None:
    entry = {"filter": "smime-decrypt", "cert": str(pki.alice.cert_path),
             "key": str(pki.alice.key_path)}
    if given is not None:
        entry["on_failure"] = given
    step = policy_from_mapping({"pipeline": [entry]}).filters[0]
    assert isinstance(step, SmimeDecrypt)
    assert step.on_failure == built


def test_a_recipient_without_certificate_is_refused_by_address(pki: Pki, tmp_path: Path) -> None:
    """Found by the crypto audit: the reply said "a recipient" (encrypt-by-policy names it)."""
    der = tmp_path / "alice.der"
    der.write_bytes(pki.alice.cert.public_bytes(Encoding.DER))
    store = DirectoryCertStore.load(tmp_path)
    result = Pipeline(filters=(SmimeEncrypt((), store=store),)).process(
        MESSAGE, Envelope(rcpt_to=("alice@example.org", "nobody@example.net")))
    assert (result.action, result.reply) == (Action.REJECT,
                                             "554 5.7.1 no certificate for nobody@example.net")
