"""The signed attributes of a CMS SignerInfo, read from the bytes as received.

Only the attributes verification needs are decoded: ``contentType``, ``messageDigest``,
``signingTime`` (each must occur once with one value, RFC 5652 section 11), the encryption
key preference (RFC 8551 ``id-aa-encrypKeyPref`` and Microsoft's 1.3.6.1.4.1.311.16.4, which
Outlook and Thunderbird put in every signature) and ``SMIMECapabilities``. Every other
attribute is skipped unread, and an optional attribute that cannot be decoded is recorded
and ignored: a signature stays checkable whatever else the signer chose to sign.

The bytes the signature covers are the ``[0]`` element exactly as received with its tag
turned into SET OF; the DER alternative only sorts the received attribute elements, it never
re-encodes one.
"""

from __future__ import annotations

from datetime import datetime

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from mailroute.errors import MalformedMessageError
from mailroute.records import record
from mailroute.smime.der import Tlv, children, header, read_tlv

__all__ = [
    "AES_GCM",
    "KeyPreference",
    "SignedAttributes",
    "parse_signed_attributes",
]

_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_SIGNING_TIME = "1.2.840.113549.1.9.5"
_CAPABILITIES = "1.2.840.113549.1.9.15"
_KEY_PREFERENCE = "1.2.840.113549.1.9.16.2.11"  # RFC 8551 section 2.5.3
_MS_KEY_PREFERENCE = "1.3.6.1.4.1.311.16.4"  # Microsoft: an IssuerAndSerialNumber
_SINGLE = (_CONTENT_TYPE, _MESSAGE_DIGEST, _SIGNING_TIME)
AES_GCM = frozenset({"aes128_gcm", "aes192_gcm", "aes256_gcm"})
MAX_ATTRIBUTES = 64


@record(frozen=True)
class KeyPreference:
    """The certificate the signer wants mail encrypted to.

    Attributes:
        source: ``rfc8551`` (``id-aa-encrypKeyPref``) or ``microsoft`` (1.3.6.1.4.1.311.16.4).
        issuer: the issuer (RFC 4514) when named by issuer and serial number, else ``""``.
        serial: the serial number, or ``None``.
        key_identifier: the subject key identifier when named by it, else ``b""``.
    """

    source: str
    issuer: str = ""
    serial: int | None = None
    key_identifier: bytes = b""

    def to_json(self) -> dict[str, object]:
        """The JSON form of ``smime verify --json`` (serial and identifier in hex)."""
        return {"source": self.source, "issuer": self.issuer,
                "serial": f"{self.serial:x}" if self.serial is not None else "",
                "subject_key_identifier": self.key_identifier.hex()}


@record(frozen=True)
class SignedAttributes:
    """What was read from the signed attributes.

    Attributes:
        received: the attributes as received, tagged SET OF: what the signature covers.
        der: the same attribute elements sorted as DER wants them (each byte-identical).
        content_type: dotted OID of ``contentType``, or ``""`` when absent.
        message_digest: the ``messageDigest`` value, or ``None`` when absent.
        signing_time: the ``signingTime`` claim, or ``None``.
        key_preference: the encryption key preference, RFC 8551's before Microsoft's.
        capabilities: the ``SMIMECapabilities`` algorithm names (asn1crypto names, dotted
            OIDs for unknown ones), in the signer's order of preference.
        ignored: dotted OIDs of attributes that were not read or could not be decoded.
    """

    received: bytes
    der: bytes
    content_type: str = ""
    message_digest: bytes | None = None
    signing_time: datetime | None = None
    key_preference: KeyPreference | None = None
    capabilities: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def aes_gcm(self) -> bool:
        """True when the signer advertises AES-GCM (RFC 8551 AuthEnvelopedData)."""
        return bool(AES_GCM.intersection(self.capabilities))


def parse_signed_attributes(raw: bytes) -> SignedAttributes:
    """Read the ``[0] IMPLICIT SET OF Attribute`` element ``raw`` (one whole element).

    Raises:
        ValueError: the structure is unreadable, or one of the attributes verification needs
            is repeated, has other than one value or cannot be decoded.
    """
    try:
        return _parse(raw)
    except MalformedMessageError as exc:  # the BER reader's error: one kind for the caller
        raise ValueError(str(exc)) from exc


def _parse(raw: bytes) -> SignedAttributes:
    element = read_tlv(raw, 0, len(raw))
    if element.end != len(raw) or element.tag != 0xA0:
        raise ValueError("signed attributes are not one [0] element")
    items = children(raw, element)
    if len(items) > MAX_ATTRIBUTES:
        raise ValueError("too many signed attributes")
    values: dict[str, list[bytes]] = {}
    for item in items:
        oid, valueset = _attribute(raw, item)
        if oid in values:
            raise ValueError("attribute occurs twice")  # RFC 5652 section 5.3
        values[oid] = [raw[v.start:v.end] for v in children(raw, valueset)]
    for oid in _SINGLE:
        if oid in values and len(values[oid]) != 1:
            raise ValueError("attribute must have exactly one value")
    ignored = [oid for oid in values if oid not in (*_SINGLE, _CAPABILITIES,
                                                     _KEY_PREFERENCE, _MS_KEY_PREFERENCE)]
    preference = _preference(values, ignored)
    capabilities = _capabilities(values.get(_CAPABILITIES), ignored)
    sorted_items = sorted(raw[i.start:i.end] for i in items)
    body = b"".join(sorted_items)
    content_type, digest, signing_time = (values.get(oid, [None])[0] for oid in _SINGLE)
    return SignedAttributes(
        received=b"\x31" + raw[1:],
        der=header(0x31, len(body)) + body,
        content_type=(str(core.ObjectIdentifier.load(content_type, strict=True).dotted)
                      if content_type is not None else ""),
        message_digest=(bytes(core.OctetString.load(digest, strict=True).native)
                        if digest is not None else None),
        signing_time=(_time(cms.Time.load(signing_time, strict=True).native)
                      if signing_time is not None else None),
        key_preference=preference,
        capabilities=capabilities,
        ignored=tuple(ignored),
    )


def _time(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError("signingTime is not a time")
    return value


def _attribute(raw: bytes, item: Tlv) -> tuple[str, Tlv]:
    parts = children(raw, item)
    if item.tag != 0x30 or len(parts) != 2 or parts[0].tag != 0x06 or parts[1].tag != 0x31:
        raise ValueError("malformed attribute")
    oid = core.ObjectIdentifier.load(raw[parts[0].start:parts[0].end]).dotted
    return str(oid), parts[1]


def _preference(values: dict[str, list[bytes]], ignored: list[str]) -> KeyPreference | None:
    """RFC 8551's preference if readable, else Microsoft's; unreadable ones are ignored."""
    for oid, read in ((_KEY_PREFERENCE, _rfc8551_preference),
                      (_MS_KEY_PREFERENCE, _microsoft_preference)):
        if oid not in values:
            continue
        try:
            if len(values[oid]) == 1:
                return read(values[oid][0])
        except (ValueError, TypeError, KeyError, MalformedMessageError):
            pass
        ignored.append(oid)
    return None


def _issuer_serial(data: bytes, source: str) -> KeyPreference:
    value = cms.IssuerAndSerialNumber.load(data, strict=True)
    return KeyPreference(source, issuer=_rfc4514(value["issuer"]),
                         serial=int(value["serial_number"].native))


def _microsoft_preference(data: bytes) -> KeyPreference:
    return _issuer_serial(data, "microsoft")


def _rfc8551_preference(data: bytes) -> KeyPreference:
    element = read_tlv(data, 0, len(data))
    if element.end != len(data):
        raise ValueError("trailing data")
    if element.tag == 0xA0:  # issuerAndSerialNumber [0] IMPLICIT
        return _issuer_serial(b"\x30" + data[1:], "rfc8551")
    if element.tag == 0x82:  # subjectAltKeyIdentifier [2] IMPLICIT SubjectKeyIdentifier
        return KeyPreference("rfc8551", key_identifier=data[element.content:element.end])
    if element.tag == 0xA1:  # receipentKeyId [1] IMPLICIT RecipientKeyIdentifier
        identifier = cms.RecipientKeyIdentifier.load(b"\x30" + data[1:], strict=True)
        return KeyPreference("rfc8551",
                             key_identifier=bytes(identifier["subject_key_identifier"].native))
    raise ValueError("unknown key preference choice")


def _rfc4514(name: asn1_x509.Name) -> str:
    """``name`` as cryptography writes it (RFC 4514), to match certificate subjects."""
    rdns = [x509.RelativeDistinguishedName(
        [x509.NameAttribute(x509.ObjectIdentifier(str(atv["type"].dotted)),
                            str(atv["value"].native)) for atv in rdn])
        for rdn in name.chosen]
    return x509.Name(rdns).rfc4514_string()


def _capabilities(found: list[bytes] | None, ignored: list[str]) -> tuple[str, ...]:
    if found is None:
        return ()
    try:
        if len(found) != 1:
            raise ValueError("SMIMECapabilities must have one value")
        parsed = cms.SMIMECapabilites.load(found[0], strict=True)
        return tuple(str(c["capability_id"].native) for c in parsed)
    except (ValueError, TypeError, KeyError):
        ignored.append(_CAPABILITIES)
        return ()
