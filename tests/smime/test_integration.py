"""S/MIME with the rest of the gateway: the real disclaimer filter, sign-then-encrypt, several
signers, certificates for the wrong purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from mailroute.mime import parse
from mailroute.policy import load_policy
from tests.smime.conftest import ENTITY, run
from tests.smime.pki import Pki, issue
from tests.smime.test_mime_interop import MESSAGE, mailroute, smime_verify

pytestmark = pytest.mark.interop


def test_sign_then_disclaimer_filter_then_verify(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "footer.txt").write_text("-- \nSent through the gateway.\n")
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[[pipeline]]\nfilter = "smime-sign"\ncert = "{pki.alice.cert_path}"\n'
        f'key = "{pki.alice.key_path}"\nchain = ["{pki.chain_path}"]\n'
        '[[pipeline]]\nfilter = "disclaimer"\ntext = "footer.txt"\n'
        f'[[pipeline]]\nfilter = "smime-verify"\ntrust = ["{pki.root.cert_path}"]\n')
    result = load_policy(policy).process(MESSAGE)
    assert result.data is not None, result.reply
    message = parse(result.data)
    assert message.root.mime_type == "multipart/mixed"
    assert message.part((0,)).mime_type == "multipart/signed"
    assert b"Sent through the gateway." in result.data
    assert message.headers.value("Authentication-Results") == (
        'mailroute; smime=pass reason="valid" body.smime-identifier=alice@example.org '
        "body.smime-part=1")
    code, report = smime_verify(pki, result.data)
    # the signature holds, but it covers the first part only: not the message (exit 1)
    assert (code, report["reason"], report["signed_part"]) == (1, "partial", "1")
    assert [signer["valid"] for signer in report["signers"]] == [True]


def test_sign_then_encrypt_decrypts_and_verifies_with_openssl(pki: Pki, tmp_path: Path) -> None:
    signed = mailroute("smime", "sign", "--cert", pki.alice.cert_path, "--key",
                       pki.alice.key_path, "--chain", pki.chain_path, data=MESSAGE).stdout
    encrypted = mailroute("smime", "encrypt", "--recipient-cert", pki.dave.cert_path,
                          "--cipher", "aes-256-gcm", data=signed).stdout
    path = tmp_path / "enc.eml"
    path.write_bytes(encrypted)
    inner = tmp_path / "inner.eml"
    run("openssl", "cms", "-decrypt", "-in", path, "-recip", pki.dave.cert_path, "-inkey",
        pki.dave.key_path, "-out", inner)
    content = tmp_path / "content.bin"
    run("openssl", "cms", "-verify", "-in", inner, "-CAfile", pki.root.cert_path, "-purpose",
        "smimesign", "-out", content)
    assert content.read_bytes() == ENTITY
    decrypted = mailroute("smime", "decrypt", "--cert", pki.dave.cert_path, "--key",
                          pki.dave.key_path, data=encrypted)
    assert decrypted.stdout == signed
    assert smime_verify(pki, decrypted.stdout)[0] == 0


def _two_signers(pki: Pki, tmp_path: Path, second: str) -> bytes:
    entity = tmp_path / "entity.txt"
    entity.write_bytes(ENTITY)
    other = getattr(pki, second)
    smime = run("openssl", "cms", "-sign", "-binary", "-in", entity, "-signer",
                pki.alice.cert_path, "-inkey", pki.alice.key_path, "-signer", other.cert_path,
                "-inkey", other.key_path, "-certfile", pki.chain_path).stdout
    return b"From: alice@example.org\r\nSubject: two\r\n" + smime


def test_every_signer_is_checked(pki: Pki, tmp_path: Path) -> None:
    code, report = smime_verify(pki, _two_signers(pki, tmp_path, "expired"), "--no-from-match")
    assert code == 1
    assert sorted((s["email"], s["reason"]) for s in report["signers"]) == [
        ("alice@example.org", "valid"), ("old@example.org", "expired")]
    code, report = smime_verify(pki, _two_signers(pki, tmp_path, "bob"), "--no-from-match")
    assert (code, report["valid"], len(report["signers"])) == (0, True, 2)


def test_from_match_needs_one_address_per_signer(pki: Pki, tmp_path: Path) -> None:
    code, report = smime_verify(pki, _two_signers(pki, tmp_path, "bob"))
    reasons = {s["email"]: s["reason"] for s in report["signers"]}
    assert code == 1
    assert reasons == {"alice@example.org": "valid", "bob@example.net": "from-mismatch"}


def test_a_client_auth_certificate_is_not_trusted_for_email(pki: Pki, tmp_path: Path) -> None:
    web = issue(tmp_path, "web", issuer=pki.issuing, email="web@example.org",
                eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    entity = tmp_path / "entity.txt"
    entity.write_bytes(ENTITY)
    smime = run("openssl", "cms", "-sign", "-binary", "-in", entity, "-signer", web.cert_path,
                "-inkey", web.key_path, "-certfile", pki.chain_path).stdout
    done = mailroute("smime", "verify", "--trust", pki.root.cert_path, "--json",
                     data=b"From: web@example.org\r\n" + smime)
    assert done.returncode == 1
    assert json.loads(done.stdout)["reason"] == "untrusted"
