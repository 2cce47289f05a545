"""S/MIME messages through the `mailroute smime` commands, checked with openssl and gpgsm."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailroute.mime import decode_payload, parse
from tests.smime.conftest import ENTITY, run
from tests.smime.pki import Pki

pytestmark = pytest.mark.interop
MAILROUTE = [sys.executable, "-m", "mailroute"]
HEAD = (b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: test\r\n"
        b"MIME-Version: 1.0\r\n")
MESSAGE = HEAD + ENTITY
EIGHT_BIT_LF = (b"From: alice@example.org\nTo: bob@example.net\nSubject: 8bit\n"
                b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                b"Content-Transfer-Encoding: 8bit\n\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln  \n"
                b"From the gateway\n")


def mailroute(*args: str | Path, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run the real command."""
    return subprocess.run([*MAILROUTE, *(str(a) for a in args)], input=data,
                          capture_output=True, timeout=120, check=False)


def smime_sign(pki: Pki, data: bytes, *extra: str) -> bytes:
    done = mailroute("smime", "sign", "--cert", pki.alice.cert_path, "--key",
                     pki.alice.key_path, "--chain", pki.chain_path, *extra, data=data)
    assert done.returncode == 0, done.stderr
    return done.stdout


def smime_verify(pki: Pki, data: bytes, *extra: str | Path) -> tuple[int, dict[str, Any]]:
    done = mailroute("smime", "verify", "--trust", pki.root.cert_path, "--json", *extra,
                     data=data)
    return done.returncode, json.loads(done.stdout)


def openssl_verify(pki: Pki, tmp_path: Path, data: bytes) -> bytes:
    path = tmp_path / "signed.eml"
    path.write_bytes(data)
    out = tmp_path / "content.bin"
    run("openssl", "cms", "-verify", "-in", path, "-CAfile", pki.root.cert_path, "-purpose",
        "smimesign", "-out", out)
    return out.read_bytes()


def signed_part(data: bytes) -> bytes:
    """The exact bytes of the first part of a multipart/signed (RFC 1847)."""
    return parse(data).part((0,)).to_bytes()


def test_detached_signature_verifies_with_openssl_and_mailroute(pki: Pki, tmp_path: Path
                                                                ) -> None:
    signed = smime_sign(pki, MESSAGE)
    root = parse(signed).root
    assert root.mime_type == "multipart/signed"
    assert root.content_type.param("protocol") == "application/pkcs7-signature"
    assert root.content_type.param("micalg") == "sha-256"
    assert signed_part(signed) == ENTITY  # the emitted bytes are the signed bytes
    assert openssl_verify(pki, tmp_path, signed) == ENTITY
    code, report = smime_verify(pki, signed)
    assert code == 0
    assert report["valid"] is True
    assert report["signers"] == [{"email": "alice@example.org",
                                  "subject": "CN=alice,O=Mailroute Test", "valid": True,
                                  "reason": "valid",
                                  # added keys: we sign no key preference, and advertise GCM
                                  "encryption_key_preference": None,
                                  "smime_capabilities": ["aes256_gcm", "aes128_gcm",
                                                         "aes256_cbc", "aes192_cbc",
                                                         "aes128_cbc", "rsaes_oaep"],
                                  "aes_gcm": True}]


def test_detached_signature_verifies_with_gpgsm(pki: Pki, tmp_path: Path,
                                                gpgsm_home: dict[str, str]) -> None:
    signed = smime_sign(pki, MESSAGE)
    message = parse(signed)
    content = tmp_path / "content.bin"
    content.write_bytes(message.part((0,)).to_bytes())
    sig = tmp_path / "sig.p7s"
    sig.write_bytes(base64.b64decode(message.part((1,)).body_bytes()))
    status = run("gpgsm", "--batch", "--status-fd", "1", "--verify", sig, content,
                 env=gpgsm_home).stdout
    assert b"[GNUPG:] GOODSIG" in status
    assert b"[GNUPG:] TRUST_FULLY" in status or b"[GNUPG:] VALIDSIG" in status


def test_opaque_signature_verifies_with_openssl_and_mailroute(pki: Pki, tmp_path: Path
                                                              ) -> None:
    signed = smime_sign(pki, MESSAGE, "--opaque")
    root = parse(signed).root
    assert root.mime_type == "application/pkcs7-mime"
    assert root.content_type.param("smime-type") == "signed-data"
    assert openssl_verify(pki, tmp_path, signed) == ENTITY
    assert smime_verify(pki, signed)[0] == 0


def test_eight_bit_lf_message_is_canonicalised_before_signing(pki: Pki, tmp_path: Path
                                                              ) -> None:
    signed = smime_sign(pki, EIGHT_BIT_LF)
    entity = signed_part(signed)
    assert entity.isascii()
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in entity
    assert entity.count(b"\n") == entity.count(b"\r\n")
    assert openssl_verify(pki, tmp_path, signed) == entity
    code, report = smime_verify(pki, signed)
    assert (code, report["reason"]) == (0, "valid")


def test_a_signature_over_one_part_of_the_message_is_partial_not_valid(pki: Pki) -> None:
    """Found by the crypto audit: a signed entity as part 1 of a multipart/mixed beside an
    unsigned part ("Please wire ...") was reported valid, exit 0."""
    signed = parse(smime_sign(pki, MESSAGE))
    wrapped = signed.wrap((), after=(parse(
        b"Content-Type: text/html\r\n\r\n<p>Please wire 1M EUR</p>\r\n").root,)).to_bytes()
    code, report = smime_verify(pki, wrapped)
    assert code == 1
    assert (report["valid"], report["reason"], report["signed_part"]) == (False, "partial", "1")
    assert [s["valid"] for s in report["signers"]] == [True]
    done = mailroute("smime", "verify", "--trust", pki.root.cert_path, data=wrapped)
    assert done.stderr.decode().splitlines()[0] == "smime partial (only part 1 is signed)"
    assert smime_verify(pki, signed.to_bytes())[1]["signed_part"] is None


def test_digest_algorithm_identifiers_have_no_parameters(pki: Pki) -> None:
    """RFC 5754 section 2: SHA-2 AlgorithmIdentifiers are generated with the parameters
    absent (found by the crypto audit: mailroute wrote NULL, openssl writes them absent)."""
    from asn1crypto import cms

    signature = parse(smime_sign(pki, MESSAGE)).part((1,))
    signed = cms.ContentInfo.load(decode_payload(signature).data)["content"]
    identifiers = [signed["digest_algorithms"][0],
                   signed["signer_infos"][0]["digest_algorithm"]]
    for identifier in identifiers:
        assert identifier["algorithm"].native == "sha256"
        assert identifier.dump() == bytes.fromhex("300b0609608648016503040201")


def test_tampered_body_is_bad_digest(pki: Pki) -> None:
    signed = smime_sign(pki, MESSAGE).replace(b"signed body", b"signed b0dy")
    code, report = smime_verify(pki, signed)
    assert (code, report["reason"]) == (1, "bad-digest")


def test_wrong_trust_anchor_is_untrusted(pki: Pki) -> None:
    signed = smime_sign(pki, MESSAGE)
    done = mailroute("smime", "verify", "--trust", pki.other_root.cert_path, "--json",
                     data=signed)
    assert done.returncode == 1
    assert json.loads(done.stdout)["reason"] == "untrusted"


def test_signer_other_than_from_is_from_mismatch(pki: Pki) -> None:
    signed = smime_sign(pki, MESSAGE.replace(b"alice@example.org", b"eve@example.org", 1))
    assert smime_verify(pki, signed)[1]["reason"] == "from-mismatch"
    assert smime_verify(pki, signed, "--no-from-match")[0] == 0


def test_unsigned_message_exits_1(pki: Pki) -> None:
    code, report = smime_verify(pki, MESSAGE)
    assert (code, report["reason"], report["valid"]) == (1, "no-signature", False)


def _openssl_message(pki: Pki, tmp_path: Path, who: str, *extra: str) -> bytes:
    ident = getattr(pki, who)
    entity = tmp_path / "entity.txt"
    entity.write_bytes(ENTITY)
    smime = run("openssl", "cms", "-sign", "-binary", "-in", entity, "-signer", ident.cert_path,
                "-inkey", ident.key_path, "-certfile", pki.chain_path, *extra).stdout
    sender = b"alice@example.org" if who != "bob" else b"bob@example.net"
    return b"From: " + sender + b"\r\nTo: carol@example.com\r\nSubject: s\r\n" + smime


@pytest.mark.parametrize(("who", "extra"), [
    ("alice", ()), ("alice", ("-nodetach",)), ("alice", ("-keyopt", "rsa_padding_mode:pss")),
    ("bob", ("-md", "sha384"))], ids=["detached", "opaque", "rsa-pss", "ecdsa"])
def test_openssl_signed_messages_verify(pki: Pki, tmp_path: Path, who: str,
                                        extra: tuple[str, ...]) -> None:
    code, report = smime_verify(pki, _openssl_message(pki, tmp_path, who, *extra))
    assert (code, report["reason"]) == (0, "valid")


def test_openssl_signed_by_expired_certificate_is_expired(pki: Pki, tmp_path: Path) -> None:
    message = _openssl_message(pki, tmp_path, "expired").replace(
        b"alice@example.org", b"old@example.org")
    code, report = smime_verify(pki, message)
    assert (code, report["reason"]) == (1, "expired")


@pytest.mark.parametrize(("cipher", "oaep"), [
    ("aes-256-cbc", False), ("aes-128-cbc", False), ("aes-256-gcm", False),
    ("aes-128-gcm", True)])
def test_encryption_decrypts_with_openssl_and_round_trips(pki: Pki, tmp_path: Path,
                                                          cipher: str, oaep: bool) -> None:
    done = mailroute("smime", "encrypt", "--recipient-cert", pki.alice.cert_path,
                     "--recipient-cert", pki.dave.cert_path, "--cipher", cipher,
                     *(["--oaep"] if oaep else []), data=MESSAGE)
    assert done.returncode == 0, done.stderr
    root = parse(done.stdout).root
    expected_type = "authenveloped-data" if "gcm" in cipher else "enveloped-data"
    assert (root.content_type.param("smime-type") or "").lower() == expected_type
    assert root.headers.value("Subject") == "test"
    path = tmp_path / "enc.eml"
    path.write_bytes(done.stdout)
    plain = run("openssl", "cms", "-decrypt", "-in", path, "-recip", pki.alice.cert_path,
                "-inkey", pki.alice.key_path).stdout
    assert plain == ENTITY
    back = mailroute("smime", "decrypt", "--cert", pki.dave.cert_path, "--key",
                     pki.dave.key_path, data=done.stdout)
    assert back.returncode == 0, back.stderr
    assert back.stdout == MESSAGE  # byte-identical to the input


def _openssl_encrypted(pki: Pki, tmp_path: Path, *args: str | Path) -> bytes:
    entity = tmp_path / "entity.txt"
    entity.write_bytes(ENTITY)
    smime = run("openssl", "cms", "-encrypt", "-binary", "-in", entity, *args).stdout
    return HEAD.replace(b"MIME-Version: 1.0\r\n", b"") + smime


@pytest.mark.parametrize("args", [
    ("-aes-256-cbc", "{alice}"), ("-aes-256-gcm", "{alice}"),
    ("-aes-256-cbc", "-recip", "{alice}", "-keyopt", "rsa_padding_mode:oaep", "-keyopt",
     "rsa_oaep_md:sha256"),
    ("-aes-256-gcm", "{bob}", "{dave}", "{alice}")],
    ids=["aes-256-cbc", "aes-256-gcm", "rsa-oaep", "several-recipients"])
def test_openssl_encrypted_messages_decrypt_to_the_exact_entity(
        pki: Pki, tmp_path: Path, args: tuple[str, ...]) -> None:
    paths = {"alice": pki.alice.cert_path, "bob": pki.bob.cert_path, "dave": pki.dave.cert_path}
    filled = [str(paths[a[1:-1]]) if a.startswith("{") else a for a in args]
    message = _openssl_encrypted(pki, tmp_path, *filled)
    done = mailroute("smime", "decrypt", "--cert", pki.alice.cert_path, "--key",
                     pki.alice.key_path, data=message)
    assert done.returncode == 0, done.stderr
    result = parse(done.stdout)
    assert result.root.headers.value("Subject") == "test"
    inner = b"".join(f.raw for f in result.root.headers if f.lower_name.startswith("content-"))
    assert inner + result.root.separator + result.root.body_bytes() == ENTITY
    assert done.stdout.endswith(ENTITY)


def test_gpgsm_encrypted_ber_message_decrypts(pki: Pki, tmp_path: Path,
                                              gpgsm_home: dict[str, str]) -> None:
    entity = tmp_path / "entity.txt"
    entity.write_bytes(ENTITY)
    out = tmp_path / "gpgsm.p7m"
    run("gpgsm", "--batch", "-r", "alice@example.org", "--encrypt", "-o", out, entity,
        env=gpgsm_home)
    body = base64.encodebytes(out.read_bytes()).replace(b"\n", b"\r\n")
    message = (HEAD + b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; '
               b'name="smime.p7m"\r\nContent-Transfer-Encoding: base64\r\n\r\n' + body)
    done = mailroute("smime", "decrypt", "--cert", pki.alice.cert_path, "--key",
                     pki.alice.key_path, data=message)
    assert done.returncode == 0, done.stderr
    assert done.stdout == MESSAGE


def test_several_files_follow_one_option_as_cli_md_writes_them(pki: Pki) -> None:
    """CLI.md: ``--recipient-cert FILE…`` and ``--trust FILE…`` (found by the CLI audit:
    a second file after the option was a usage error)."""
    encrypted = mailroute("smime", "encrypt", "--recipient-cert", pki.alice.cert_path,
                          pki.dave.cert_path, data=MESSAGE)
    assert encrypted.returncode == 0, encrypted.stderr
    for person in (pki.alice, pki.dave):
        done = mailroute("smime", "decrypt", "--cert", person.cert_path, "--key",
                         person.key_path, data=encrypted.stdout)
        assert done.returncode == 0, done.stderr
    done = mailroute("smime", "verify", "--trust", pki.other_root.cert_path,
                     pki.root.cert_path, "--json", data=smime_sign(pki, MESSAGE))
    assert (done.returncode, json.loads(done.stdout)["valid"]) == (0, True)


def test_decrypt_with_the_wrong_key_fails_with_nothing_written(pki: Pki) -> None:
    encrypted = mailroute("smime", "encrypt", "--recipient-cert", pki.alice.cert_path,
                          data=MESSAGE).stdout
    done = mailroute("smime", "decrypt", "--cert", pki.dave.cert_path, "--key",
                     pki.dave.key_path, data=encrypted)
    assert done.returncode == 69
    assert done.stdout == b""
    assert done.stderr.startswith(b"5.7.5 cannot decrypt the message")


def test_a_message_with_lf_line_ends_decrypts_to_lf_line_ends(pki: Pki) -> None:
    """pipe(8) hands over LF; the decrypted entity (CRLF, as every client encrypts it) came
    out mixed into the LF header (found by the crypto audit)."""
    encrypted = mailroute("smime", "encrypt", "--recipient-cert", pki.alice.cert_path,
                          data=MESSAGE).stdout.replace(b"\r\n", b"\n")
    done = mailroute("smime", "decrypt", "--cert", pki.alice.cert_path, "--key",
                     pki.alice.key_path, data=encrypted)
    assert done.returncode == 0, done.stderr
    assert b"\r" not in done.stdout
    assert done.stdout.endswith(ENTITY.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1])


def test_decrypt_leaves_nested_encrypted_parts_alone(pki: Pki) -> None:
    encrypted = mailroute("smime", "encrypt", "--recipient-cert", pki.alice.cert_path,
                          data=MESSAGE).stdout
    inner = parse(encrypted).root
    wrapped = parse(encrypted).wrap((), before=(parse(
        b"Content-Type: text/html\r\n\r\n<img src='http://evil/").root,))
    assert wrapped.part((1,)).body_bytes() == inner.body_bytes()
    done = mailroute("smime", "decrypt", "--cert", pki.alice.cert_path, "--key",
                     pki.alice.key_path, data=wrapped.to_bytes())
    assert done.returncode == 65  # only a top-level encrypted entity is decrypted (EFAIL)
    assert done.stdout == b""
