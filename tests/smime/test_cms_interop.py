"""CMS-level interop of mailroute.smime with openssl cms and gpgsm (no MIME involved)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import cms

from mailroute.errors import DecryptionError, MalformedMessageError
from mailroute.smime import (
    DECRYPTION_FAILED,
    Identity,
    Signer,
    SignerStatus,
    TrustAnchors,
    decrypt,
    encrypt,
    sign,
    verify,
)
from tests.smime.conftest import ENTITY, run
from tests.smime.pki import Pki

pytestmark = pytest.mark.interop
MAX = 1 << 26
NOW = dt.datetime.now(dt.UTC)


def _sign(pki: Pki, *, ec: bool = False, pss: bool = False, detached: bool = True) -> bytes:
    who = pki.bob if ec else pki.alice
    signer = Signer(who.cert, who.key, (pki.issuing.cert,), pss=pss)
    return b"".join(sign([ENTITY], signer, signing_time=NOW, detached=detached))


def _openssl_verify(pki: Pki, tmp_path: Path, der: bytes, entity_file: Path | None
                    ) -> bytes:
    sig = tmp_path / "sig.der"
    sig.write_bytes(der)
    out = tmp_path / "out.bin"
    args: list[str | Path] = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                              sig, "-CAfile", pki.root.cert_path, "-purpose", "smimesign",
                              "-out", out]
    if entity_file is not None:
        args += ["-content", entity_file]
    run(*args)
    return out.read_bytes()


@pytest.mark.parametrize(("ec", "pss"), [(False, False), (False, True), (True, False)],
                         ids=["rsa-pkcs1v15", "rsa-pss", "ecdsa"])
def test_detached_signature_verifies_with_openssl(pki: Pki, tmp_path: Path, entity_file: Path,
                                                  ec: bool, pss: bool) -> None:
    assert _openssl_verify(pki, tmp_path, _sign(pki, ec=ec, pss=pss), entity_file) == ENTITY


def test_opaque_signature_verifies_with_openssl_and_carries_the_entity(
        pki: Pki, tmp_path: Path) -> None:
    assert _openssl_verify(pki, tmp_path, _sign(pki, detached=False), None) == ENTITY


def test_detached_signature_verifies_with_gpgsm(pki: Pki, tmp_path: Path, entity_file: Path,
                                                gpgsm_home: dict[str, str]) -> None:
    sig = tmp_path / "sig.p7s"
    sig.write_bytes(_sign(pki))
    status = run("gpgsm", "--batch", "--status-fd", "1", "--verify", sig, entity_file,
                 env=gpgsm_home).stdout
    assert b"[GNUPG:] GOODSIG" in status
    assert b"[GNUPG:] VALIDSIG" in status


def test_capabilities_list_aes_gcm_first(pki: Pki) -> None:
    info = cms.ContentInfo.load(_sign(pki))
    attrs = info["content"]["signer_infos"][0]["signed_attrs"]
    caps = next(a for a in attrs if a["type"].native == "smime_capabilities")
    names = [c["capability_id"].native for c in caps["values"][0]]
    assert names[:2] == ["aes256_gcm", "aes128_gcm"]
    assert "aes256_cbc" in names


@pytest.mark.parametrize(("cipher", "oaep"), [
    ("aes-256-cbc", False), ("aes-128-cbc", False), ("aes-256-gcm", False),
    ("aes-128-gcm", False), ("aes-256-cbc", True), ("aes-256-gcm", True)])
def test_encryption_decrypts_with_openssl(pki: Pki, tmp_path: Path, cipher: str,
                                          oaep: bool) -> None:
    made = encrypt([ENTITY], [pki.dave.cert, pki.alice.cert], cipher=cipher, oaep=oaep)
    der = b"".join(made.chunks)
    assert len(der) == made.length
    path = tmp_path / "enc.der"
    path.write_bytes(der)
    printed = run("openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", path).stdout
    assert (b"authEnvelopedData" in printed) == cipher.endswith("gcm")
    assert (b"rsaesOaep" in printed) == oaep
    out = run("openssl", "cms", "-decrypt", "-inform", "DER", "-in", path, "-recip",
              pki.alice.cert_path, "-inkey", pki.alice.key_path).stdout
    assert out == ENTITY


def test_encryption_refuses_an_ec_recipient(pki: Pki) -> None:
    with pytest.raises(Exception, match="only RSA"):
        encrypt([ENTITY], [pki.bob.cert])


def _openssl_signed(pki: Pki, entity_file: Path, *extra: str | Path, who: str = "alice"
                    ) -> bytes:
    ident = getattr(pki, who)
    return run("openssl", "cms", "-sign", "-binary", "-in", entity_file, "-certfile",
               pki.issuing.cert_path, "-outform", "DER", "-signer", ident.cert_path, "-inkey",
               ident.key_path, *extra).stdout


@pytest.mark.parametrize(("who", "extra", "algorithm"), [
    ("alice", (), "rsa-pkcs1v15"),
    ("alice", ("-keyopt", "rsa_padding_mode:pss"), "rsa-pss"),
    ("bob", ("-md", "sha384"), "ecdsa")], ids=["detached", "rsa-pss", "ecdsa"])
def test_openssl_detached_signatures_verify(pki: Pki, entity_file: Path, who: str,
                                            extra: tuple[str, ...], algorithm: str) -> None:
    der = _openssl_signed(pki, entity_file, *extra, who=who)
    result = verify(der, content=ENTITY, trust=TrustAnchors((pki.root.cert,)), at=NOW,
                    max_size=MAX)
    assert result.valid, result.reason
    assert [s.signature_algorithm for s in result.signers] == [algorithm]
    assert result.signers[0].email == {"alice": "alice@example.org",
                                       "bob": "bob@example.net"}[who]


def test_openssl_opaque_signature_verifies_and_yields_the_entity(pki: Pki, entity_file: Path
                                                                 ) -> None:
    der = _openssl_signed(pki, entity_file, "-nodetach")
    result = verify(der, content=None, trust=TrustAnchors((pki.root.cert,)), at=NOW,
                    max_size=MAX)
    assert result.valid
    assert result.content == ENTITY


def test_tampered_content_is_bad_digest(pki: Pki, entity_file: Path) -> None:
    der = _openssl_signed(pki, entity_file)
    tampered = ENTITY.replace(b"signed body", b"signed bodY")
    result = verify(der, content=tampered, trust=TrustAnchors((pki.root.cert,)), at=NOW,
                    max_size=MAX)
    assert [s.status for s in result.signers] == [SignerStatus.BAD_DIGEST]
    assert not result.valid


def test_wrong_trust_anchor_is_untrusted(pki: Pki, entity_file: Path) -> None:
    der = _openssl_signed(pki, entity_file)
    result = verify(der, content=ENTITY, trust=TrustAnchors((pki.other_root.cert,)), at=NOW,
                    max_size=MAX)
    assert result.reason == "untrusted"


def test_expired_certificate_is_expired(pki: Pki, entity_file: Path) -> None:
    der = _openssl_signed(pki, entity_file, who="expired")
    result = verify(der, content=ENTITY, trust=TrustAnchors((pki.root.cert,)), at=NOW,
                    max_size=MAX)
    assert result.reason == "expired"


def test_from_mismatch_is_its_own_verdict(pki: Pki, entity_file: Path) -> None:
    der = _openssl_signed(pki, entity_file)
    result = verify(der, content=ENTITY, trust=TrustAnchors((pki.root.cert,)), at=NOW,
                    from_addresses=["mallory@example.org"], max_size=MAX)
    assert result.reason == "from-mismatch"
    matching = verify(der, content=ENTITY, trust=TrustAnchors((pki.root.cert,)), at=NOW,
                      from_addresses=["alice@EXAMPLE.org"], max_size=MAX)
    assert matching.valid


def test_a_bad_signature_is_bad_signature(pki: Pki) -> None:
    der = bytearray(_sign(pki))
    info = cms.ContentInfo.load(bytes(der))
    signature = info["content"]["signer_infos"][0]["signature"].native
    at = bytes(der).index(signature)
    der[at + 10] ^= 0x01
    result = verify(bytes(der), content=ENTITY, trust=TrustAnchors((pki.root.cert,)), at=NOW,
                    max_size=MAX)
    assert result.reason == "bad-signature"


def test_content_both_embedded_and_detached_is_refused(pki: Pki) -> None:
    with pytest.raises(MalformedMessageError):
        verify(_sign(pki, detached=False), content=ENTITY,
               trust=TrustAnchors((pki.root.cert,)), at=NOW, max_size=MAX)


@pytest.mark.parametrize("extra", [
    ("-aes-256-cbc",), ("-aes-256-gcm",), ("-aes-128-gcm",), ("-des3",), ("-aes-256-cbc", "-keyid"),
    ("-aes-256-cbc", "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256")],
    ids=["aes-256-cbc", "aes-256-gcm", "aes-128-gcm", "3des", "subject-key-id", "rsa-oaep"])
def test_openssl_encrypted_decrypts(pki: Pki, entity_file: Path, extra: tuple[str, ...]) -> None:
    if "rsa_padding_mode:oaep" in extra:  # -keyopt applies to the -recip before it
        args = [extra[0], "-recip", str(pki.alice.cert_path), *extra[1:]]
    else:
        args = [*extra, str(pki.alice.cert_path)]
    der = run("openssl", "cms", "-encrypt", "-binary", "-in", entity_file, "-outform", "DER",
              *args).stdout
    result = decrypt(der, [Identity(pki.alice.cert, pki.alice.rsa_key)], max_size=MAX)
    assert result.content == ENTITY
    assert result.authenticated == ("gcm" in extra[0])


def test_openssl_several_recipients_with_an_ec_one_decrypt(pki: Pki, entity_file: Path) -> None:
    der = run("openssl", "cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", entity_file,
              "-outform", "DER", pki.bob.cert_path, pki.dave.cert_path,
              pki.alice.cert_path).stdout
    for who in (pki.alice, pki.dave):
        assert decrypt(der, [Identity(who.cert, who.rsa_key)], max_size=MAX).content == ENTITY


def test_gpgsm_encrypted_ber_decrypts(pki: Pki, tmp_path: Path, entity_file: Path,
                                      gpgsm_home: dict[str, str]) -> None:
    out = tmp_path / "gpgsm.p7m"
    run("gpgsm", "--batch", "-r", "alice@example.org", "--encrypt", "-o", out, entity_file,
        env=gpgsm_home)
    parsed = run("openssl", "asn1parse", "-inform", "DER", "-in", out).stdout
    assert b"l=inf" in parsed  # really BER with indefinite lengths
    result = decrypt(out.read_bytes(), [Identity(pki.alice.cert, pki.alice.rsa_key)], max_size=MAX)
    assert result.content == ENTITY


def test_every_decryption_failure_has_the_same_error(pki: Pki, entity_file: Path) -> None:
    cbc = run("openssl", "cms", "-encrypt", "-binary", "-aes-256-cbc", "-in", entity_file,
              "-outform", "DER", pki.alice.cert_path).stdout
    gcm = run("openssl", "cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", entity_file,
              "-outform", "DER", pki.alice.cert_path).stdout
    flipped_cbc = bytearray(cbc)
    # The ciphertext ends the DER. Flipping a byte of the last block would garble the whole
    # block, and 1 run in ~250 the garbage ends in valid padding; flipping the block before it
    # changes only the last plaintext byte, so the padding is always invalid.
    flipped_cbc[-1 - 16] ^= 0x55
    flipped_gcm = bytearray(gcm)
    flipped_gcm[-1] ^= 0x55
    alice = [Identity(pki.alice.cert, pki.alice.rsa_key)]
    dave = [Identity(pki.dave.cert, pki.dave.rsa_key)]
    texts = set()
    for data, who in ((bytes(flipped_cbc), alice), (bytes(flipped_gcm), alice), (cbc, dave),
                      (b"\x30\x03garbage", alice), (_sign(pki), alice)):
        with pytest.raises(DecryptionError) as caught:
            decrypt(data, who, max_size=MAX)
        texts.add(str(caught.value))
    assert texts == {DECRYPTION_FAILED}


def test_cbc_encryption_decrypts_with_gpgsm(pki: Pki, tmp_path: Path,
                                            gpgsm_home: dict[str, str]) -> None:
    path = tmp_path / "enc.der"
    path.write_bytes(b"".join(encrypt([ENTITY], [pki.alice.cert], cipher="aes-256-cbc").chunks))
    out = tmp_path / "plain.txt"
    status = run("gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
                 "--status-fd", "1", "--decrypt", "-o", out, path, stdin=b"test\n",
                 env=gpgsm_home).stdout
    assert b"[GNUPG:] DECRYPTION_OKAY" in status
    assert out.read_bytes() == ENTITY
