"""More CMS cases: Ed25519, signer by subject key identifier, weak digests, signed attributes
in a non-DER order, the BER reader's limits."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mailroute.errors import MalformedMessageError
from mailroute.smime import Signer, SignerStatus, TrustAnchors, Verification, sign, verify
from mailroute.smime.der import header, octets, read_tlv
from tests.smime.conftest import ENTITY, run
from tests.smime.pki import Pki, issue

NOW = dt.datetime.now(dt.UTC)
MAX = 1 << 24


def _verify(pki: Pki, der: bytes, content: bytes | None = ENTITY) -> Verification:
    return verify(der, content=content, trust=TrustAnchors((pki.root.cert,)), at=NOW,
                  max_size=MAX)


def test_ed25519_signature_round_trip(pki: Pki, tmp_path: Path) -> None:
    carol = issue(tmp_path, "carol", issuer=pki.issuing, email="carol@example.com",
                  kind="ed25519")
    der = b"".join(sign([ENTITY], Signer(carol.cert, carol.key, (pki.issuing.cert,)),
                        signing_time=NOW))
    info = cms.ContentInfo.load(der)
    signer_info = info["content"]["signer_infos"][0]
    assert signer_info["digest_algorithm"]["algorithm"].native == "sha512"  # RFC 8419
    assert signer_info["signature_algorithm"]["algorithm"].native == "ed25519"
    result = _verify(pki, der)
    assert result.valid
    assert result.signers[0].signature_algorithm == "ed25519"


@pytest.mark.interop
def test_signer_named_by_subject_key_identifier_verifies(pki: Pki, entity_file: Path) -> None:
    der = run("openssl", "cms", "-sign", "-binary", "-keyid", "-in", entity_file, "-signer",
              pki.alice.cert_path, "-inkey", pki.alice.key_path, "-certfile", pki.chain_path,
              "-outform", "DER").stdout
    sid = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["sid"]
    assert sid.name == "subject_key_identifier"
    assert _verify(pki, der).valid


@pytest.mark.interop
def test_sha1_signature_is_a_weak_algorithm(pki: Pki, entity_file: Path) -> None:
    der = run("openssl", "cms", "-sign", "-binary", "-md", "sha1", "-in", entity_file,
              "-signer", pki.alice.cert_path, "-inkey", pki.alice.key_path, "-certfile",
              pki.chain_path, "-outform", "DER").stdout
    result = _verify(pki, der)
    assert [s.status for s in result.signers] == [
        SignerStatus.WEAK_ALGORITHM]


def _resigned(pki: Pki, reorder: bool, sign_der: bool) -> bytes:
    """Our signature with the signed attributes sent in reverse (non-DER) order; the
    signature covers either the bytes as sent or their DER re-encoding."""
    info = cms.ContentInfo.load(b"".join(sign([ENTITY], Signer(pki.alice.cert, pki.alice.key,
                                                               (pki.issuing.cert,)),
                                              signing_time=NOW)))
    signer_info = info["content"]["signer_infos"][0]
    attrs = [a.dump() for a in signer_info["signed_attrs"]]
    sent = list(reversed(sorted(attrs))) if reorder else sorted(attrs)
    content = b"".join(sent)
    covered = b"".join(sorted(attrs)) if sign_der else content
    signature = pki.alice.rsa_key.sign(header(0x31, len(covered)) + covered,
                                       padding.PKCS1v15(), hashes.SHA256())
    old_signature = signer_info["signature"].native
    old_attrs = signer_info["signed_attrs"].dump()
    der: bytes = info.dump()
    new_attrs = header(0xA0, len(content)) + content
    assert len(new_attrs) == len(old_attrs)
    return der.replace(old_attrs, new_attrs).replace(old_signature, signature)


@pytest.mark.parametrize(("sign_der", "encoding"), [(False, "received"), (True, "der")])
def test_signed_attributes_are_checked_as_received_then_as_der(pki: Pki, sign_der: bool,
                                                               encoding: str) -> None:
    result = _verify(pki, _resigned(pki, reorder=True, sign_der=sign_der))
    assert result.valid
    assert result.signers[0].attrs_encoding == encoding


def test_ber_reader_handles_indefinite_lengths_and_chunked_octets() -> None:
    # SEQUENCE (indefinite) { [0] constructed (indefinite) { OCTET STRING "ab", "cd" } }
    data = bytes.fromhex("3080a080040261620402636400000000")
    outer = read_tlv(data, 0, len(data))
    assert (outer.indefinite, outer.end) == (True, len(data))
    inner = read_tlv(data, outer.content, outer.content_end)
    assert b"".join(octets(data, inner)) == b"abcd"


@pytest.mark.parametrize("data", [
    bytes.fromhex("3005040361"),  # truncated
    bytes.fromhex("3080") + b"\x30\x80" * 40 + b"\x00\x00" * 41,  # nested too deep
    bytes.fromhex("0480"),  # indefinite length on a primitive
    bytes.fromhex("1f01"),  # high tag number
    bytes.fromhex("3089" + "ff" * 9),  # length of 9 octets
])
def test_ber_reader_refuses_what_it_cannot_bound(data: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        read_tlv(data, 0, len(data))


def test_opaque_signature_without_content_and_without_detached_content_is_refused(
        pki: Pki) -> None:
    der = b"".join(sign([ENTITY], Signer(pki.alice.cert, pki.alice.key), signing_time=NOW))
    with pytest.raises(MalformedMessageError):
        _verify(pki, der, content=None)
