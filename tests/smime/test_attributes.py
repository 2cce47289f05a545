"""Signed attributes read from the bytes as received: what is needed is decoded, what is not
is skipped, and the key preference and capabilities are reported."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding

from mailroute.smime import Signer, SignerStatus, TrustAnchors, Verification, sign, verify
from mailroute.smime.attributes import parse_signed_attributes
from mailroute.smime.der import header
from tests.smime.conftest import ENTITY
from tests.smime.pki import Pki

NOW = dt.datetime.now(dt.UTC)
MAX = 1 << 24
# Microsoft's key preference (1.3.6.1.4.1.311.16.4) holding a value asn1crypto cannot read
# as the SET OF it expects: what made every Thunderbird signer "malformed"
_MS_OID = core.ObjectIdentifier("1.3.6.1.4.1.311.16.4").dump()
_UNKNOWN_OID = core.ObjectIdentifier("1.3.6.1.4.1.99999.1").dump()


def _attribute(oid: bytes, *values: bytes) -> bytes:
    body = b"".join(values)
    content = oid + header(0x31, len(body)) + body
    return header(0x30, len(content)) + content


def _resigned(pki: Pki, extra: list[bytes]) -> bytes:
    """Our signature with ``extra`` attributes appended, signed again over the new set."""
    info = cms.ContentInfo.load(b"".join(sign([ENTITY], Signer(
        pki.alice.cert, pki.alice.key, (pki.issuing.cert,)), signing_time=NOW)))
    signer_info = info["content"]["signer_infos"][0]
    old_attrs = signer_info["signed_attrs"].dump()
    start = 2 if old_attrs[1] < 0x80 else 2 + (old_attrs[1] & 0x7F)
    body = old_attrs[start:] + b"".join(extra)
    signature = pki.alice.rsa_key.sign(header(0x31, len(body)) + body, padding.PKCS1v15(),
                                       hashes.SHA256())
    new_info = signer_info.copy()
    new_info["signed_attrs"] = cms.CMSAttributes.load(header(0x31, len(body)) + body)
    new_info["signature"] = signature
    signed = info["content"].copy()
    signed["signer_infos"] = cms.SignerInfos([new_info])
    der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    return der


def _verify(pki: Pki, der: bytes) -> Verification:
    return verify(der, content=ENTITY, trust=TrustAnchors((pki.root.cert,)), at=NOW,
                  max_size=MAX)


def test_unreadable_microsoft_preference_and_unknown_attributes_do_not_spoil_a_signer(
        pki: Pki) -> None:
    garbage = bytes.fromhex("3003020101")  # a SEQUENCE, not an IssuerAndSerialNumber
    der = _resigned(pki, [_attribute(_MS_OID, garbage),
                          _attribute(_UNKNOWN_OID, bytes.fromhex("0500"))])
    result = _verify(pki, der)
    assert [s.status for s in result.signers] == [SignerStatus.VALID]
    assert result.signers[0].key_preference is None


def test_microsoft_preference_names_the_signers_certificate(pki: Pki) -> None:
    cert = cms.IssuerAndSerialNumber({
        "issuer": asn1_x509.Certificate.load(pki.alice.cert.public_bytes(
            Encoding.DER))["tbs_certificate"]["issuer"],
        "serial_number": pki.alice.cert.serial_number}).dump()
    result = _verify(pki, _resigned(pki, [_attribute(_MS_OID, cert)]))
    signer = result.signers[0]
    assert signer.status is SignerStatus.VALID
    assert signer.key_preference is not None
    assert signer.key_preference.source == "microsoft"
    assert signer.key_preference.serial == pki.alice.cert.serial_number
    assert signer.encryption_certificate == pki.alice.cert


def test_a_bad_digest_is_reported_as_such_with_extra_attributes(pki: Pki) -> None:
    der = _resigned(pki, [_attribute(_UNKNOWN_OID, bytes.fromhex("0500"))])
    result = verify(der, content=ENTITY + b"x", trust=TrustAnchors((pki.root.cert,)), at=NOW,
                    max_size=MAX)
    assert [s.status for s in result.signers] == [
        SignerStatus.BAD_DIGEST]


def _attrs(*items: bytes) -> bytes:
    body = b"".join(items)
    return header(0xA0, len(body)) + body


_CONTENT_TYPE = _attribute(core.ObjectIdentifier("1.2.840.113549.1.9.3").dump(),
                           core.ObjectIdentifier("1.2.840.113549.1.7.1").dump())
_DIGEST = _attribute(core.ObjectIdentifier("1.2.840.113549.1.9.4").dump(),
                     core.OctetString(b"\x01" * 32).dump())


def test_attributes_are_kept_as_received_and_sorted_without_re_encoding() -> None:
    raw = _attrs(_DIGEST, _CONTENT_TYPE)
    attrs = parse_signed_attributes(raw)
    assert attrs.received == b"\x31" + raw[1:]
    assert attrs.der == b"\x31" + raw[1:2] + b"".join(sorted([_DIGEST, _CONTENT_TYPE]))
    assert (attrs.content_type, attrs.message_digest) == ("1.2.840.113549.1.7.1",
                                                          b"\x01" * 32)


@pytest.mark.parametrize("raw", [
    _attrs(_CONTENT_TYPE, _DIGEST, _DIGEST),  # messageDigest twice
    _attrs(_CONTENT_TYPE, _attribute(core.ObjectIdentifier("1.2.840.113549.1.9.4").dump(),
                                     core.OctetString(b"a").dump(),
                                     core.OctetString(b"b").dump())),  # two values
    _attrs(_CONTENT_TYPE, _attribute(core.ObjectIdentifier("1.2.840.113549.1.9.4").dump(),
                                     core.Integer(5).dump())),  # not an OCTET STRING
    bytes.fromhex("a003300100"),  # an attribute that is no (OID, SET) pair
])
def test_needed_attributes_must_be_sound(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_signed_attributes(raw)


def test_subject_key_identifier_preference_and_gcm_capability() -> None:
    preference = _attribute(core.ObjectIdentifier("1.2.840.113549.1.9.16.2.11").dump(),
                            bytes.fromhex("8203aabbcc"))
    capabilities = _attribute(core.ObjectIdentifier("1.2.840.113549.1.9.15").dump(),
                              cms.SMIMECapabilites([
                                  {"capability_id": "2.16.840.1.101.3.4.1.46"},  # aes256-gcm
                                  {"capability_id": "2.16.840.1.101.3.4.1.42"},  # aes256-cbc
                              ]).dump())
    attrs = parse_signed_attributes(_attrs(_CONTENT_TYPE, _DIGEST, preference, capabilities))
    assert attrs.key_preference is not None
    assert (attrs.key_preference.source, attrs.key_preference.key_identifier) == (
        "rfc8551", bytes.fromhex("aabbcc"))
    assert attrs.capabilities == ("aes256_gcm", "aes256_cbc")
    assert attrs.aes_gcm


def test_unreadable_capabilities_are_ignored_not_fatal() -> None:
    capabilities = _attribute(core.ObjectIdentifier("1.2.840.113549.1.9.15").dump(),
                              bytes.fromhex("0400"))
    attrs = parse_signed_attributes(_attrs(_CONTENT_TYPE, _DIGEST, capabilities))
    assert attrs.capabilities == ()
    assert attrs.ignored == ("1.2.840.113549.1.9.15",)
