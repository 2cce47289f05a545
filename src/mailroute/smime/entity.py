"""The MIME side of S/MIME (RFC 8551 section 3): which bytes are signed or encrypted, and the
entities that carry the CMS structures.

Signing canonicalises first (:func:`mailroute.mime.canonical.canonicalise`) so that the bytes
emitted are exactly the bytes signed. Verification takes the signed
entity's bytes from the parsed tree, which are the bytes as received. Decryption looks at the
top-level entity only and builds the result from the outer header fields and the decrypted
entity, never mixing in other parts (EFAIL).
"""

from __future__ import annotations

import binascii

from mailroute.errors import MalformedMessageError
from mailroute.limits import Limits
from mailroute.mime.canonical import content_entity, in_newline
from mailroute.mime.defects import DefectKind
from mailroute.mime.emit import body_chunks
from mailroute.mime.headers import HeaderBlock, HeaderField, make_field, split_content
from mailroute.mime.message import Message, build_leaf
from mailroute.mime.part import LeafBody, MultipartBody, Part, Span
from mailroute.mime.protected import ProtectedHeaders, decrypted_with_outer
from mailroute.mime.scan import parse
from mailroute.mime.transfer import decode_payload
from mailroute.records import record
from mailroute.smime.der import Chunk

__all__ = [
    "SignedLayer",
    "decrypted_message",
    "encrypted_payload",
    "entity_chunks",
    "find_signed",
    "pkcs7_message",
    "signed_message",
    "split_root",
]

PKCS7_MIME = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
PKCS7_SIGNATURE = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
ENCRYPTED_TYPES = frozenset({"enveloped-data", "authenveloped-data"})
# A decrypted entity starts with header fields (at least Content-Type in practice); bytes
# that do not are what a wrong key or a tampered CBC ciphertext gives.
_NOT_AN_ENTITY = frozenset({DefectKind.MISSING_HEADER_SEPARATOR, DefectKind.INVALID_FIELD_NAME,
                            DefectKind.LEADING_CONTINUATION})
_DETACHED_SIGNATURE_FIELDS = (("Content-Disposition", 'attachment; filename="smime.p7s"'),
                              ("Content-Description", "S/MIME Cryptographic Signature"))


def split_root(message: Message) -> tuple[tuple[HeaderField, ...], Part]:
    """The root's non-content fields, and the root as an entity with only its Content-* fields."""
    outer, _ = split_content(message.root.headers)
    return outer, content_entity(message)


def entity_chunks(part: Part) -> list[Chunk]:
    """The bytes of ``part`` as chunks (header fields, separator, body), nothing copied."""
    return [*(f.raw for f in part.headers), part.separator, *body_chunks(part)]


def signed_message(message: Message, signature_der: bytes, micalg: str) -> Message:
    """``message`` (already canonical) as ``multipart/signed`` with the detached signature."""
    signature = build_leaf('application/pkcs7-signature; name="smime.p7s"', signature_der,
                           encoding="base64", fields=_DETACHED_SIGNATURE_FIELDS,
                           newline=message.newline)
    wrapped = message.wrap((), subtype="signed", after=(signature,))
    body = wrapped.root.body
    assert isinstance(body, MultipartBody)
    return wrapped.replace_header(
        "Content-Type", 'multipart/signed; protocol="application/pkcs7-signature"; '
                        f'micalg={micalg}; boundary="{body.boundary}"')


def pkcs7_message(message: Message, smime_type: str, body: bytes) -> Message:
    """The root replaced by an ``application/pkcs7-mime`` leaf holding base64 ``body``."""
    outer, _ = split_root(message)
    nl = message.newline
    fields = list(outer)
    if not any(f.lower_name == "mime-version" for f in outer):
        fields.append(make_field("MIME-Version", "1.0", newline=nl))
    fields += [
        make_field("Content-Type", f'application/pkcs7-mime; smime-type={smime_type}; '
                                   'name="smime.p7m"', newline=nl),
        make_field("Content-Transfer-Encoding", "base64", newline=nl),
        make_field("Content-Disposition", 'attachment; filename="smime.p7m"', newline=nl),
    ]
    return message.replace_part((), Part(HeaderBlock(tuple(fields)), nl, LeafBody(Span.of(body))))


@record(frozen=True)
class SignedLayer:
    """The signature found: the CMS bytes, the signed entity's bytes when detached, and
    where the signed entity is (``()`` the root, ``(0,)`` the first part of a wrapper)."""

    cms: bytes
    content: bytes | None
    path: tuple[int, ...] = ()


def find_signed(message: Message) -> SignedLayer | None:
    """The signature at the top of the tree, or ``None`` when the message is not signed there.

    Besides the root, the first part of a top-level ``multipart/mixed`` counts: that is what
    a gateway's disclaimer wrap produces (the signed entity byte-identical inside, the other
    parts unsigned, which the ``path`` records). Signed entities anywhere else are errant
    layers (RFC 8551 section 3, LAMPS e-mail guidance) and are not the message's signature.
    """
    root = message.root
    layer = _signed_entity(message, root, ())
    if layer is None and root.mime_type == "multipart/mixed" and root.children:
        layer = _signed_entity(message, root.children[0], (0,))
    return layer


def _signed_entity(message: Message, part: Part, path: tuple[int, ...]) -> SignedLayer | None:
    if part.mime_type == "multipart/signed":
        protocol = (part.content_type.param("protocol") or "").lower()
        if protocol not in PKCS7_SIGNATURE or len(part.children) != 2:
            return None
        if not message.structurally_sound(path):
            return None
        return SignedLayer(_payload(part.children[1]), part.children[0].to_bytes(), path)
    if part.mime_type in PKCS7_MIME:
        smime_type = (part.content_type.param("smime-type") or "").lower()
        if smime_type == "signed-data" or (not smime_type and _sniff(part) == 0x02):
            return SignedLayer(_payload(part), None, path)
    return None


def encrypted_payload(message: Message) -> bytes | None:
    """The CMS bytes of a top-level encrypted entity, or ``None``."""
    root = message.root
    if root.mime_type not in PKCS7_MIME:
        return None
    smime_type = (root.content_type.param("smime-type") or "").lower()
    if smime_type in ENCRYPTED_TYPES or (not smime_type and _sniff(root) in (0x03, 0x17)):
        return _payload(root)
    return None


def _payload(part: Part) -> bytes:
    """The decoded body of a leaf; base64 is decoded from the span in place (a CMS payload
    can be 40 MB of base64: no copy, and no pass that strips the line breaks first)."""
    if part.transfer_encoding == "base64" and isinstance(part.body, LeafBody):
        try:
            return binascii.a2b_base64(part.body.span.view())
        except binascii.Error as exc:
            raise MalformedMessageError("invalid base64 in an S/MIME entity") from exc
    return decode_payload(part).data


def _sniff(part: Part) -> int:
    """The last arc of the CMS content type OID (2 signed, 3 enveloped, 23 authenveloped)."""
    if part.transfer_encoding == "base64" and isinstance(part.body, LeafBody):
        head = bytes(part.body.span.view()[:200]).translate(None, b" \t\r\n")
        try:
            data = binascii.a2b_base64(head[:len(head) - len(head) % 4])[:40]
        except binascii.Error:
            return -1
    else:
        data = _payload(part)[:40]
    marker = bytes.fromhex("2a864886f70d0107")
    at = data.find(marker)
    if at >= 0 and at + len(marker) < len(data):
        return data[at + len(marker)]
    return 0x17 if bytes.fromhex("2a864886f70d0109100117") in data else -1


def decrypted_message(message: Message, plaintext: bytes, limits: Limits
                      ) -> tuple[Message, ProtectedHeaders | None]:
    """The outer header fields minus the encrypted layer's Content-* fields, then the
    decrypted entity (CLI.md "Pinned details"); protected header fields inside the entity
    replace the outer ones (:mod:`mailroute.mime.protected`), and are reported.

    Raises:
        MessageError: the plaintext is not a sound MIME entity.
    """
    inner = parse(in_newline(plaintext, message.newline), limits=limits)
    # Header fields and the blank line after them, as every client writes them: CBC garbage
    # with valid padding (an attacker's probe) that reads as a field or two ("o:" and bytes)
    # must not count as decrypted, or the flag would tell the padding apart (0.2% of random
    # 16-31 byte plaintexts did without the separator check).
    if not inner.root.headers.fields or not inner.root.separator or any(
            d.path == () and d.kind in _NOT_AN_ENTITY for d in inner.defects):
        raise MalformedMessageError("the decrypted content is not a MIME entity")
    outer, _ = split_root(message)
    return decrypted_with_outer(outer, inner)
