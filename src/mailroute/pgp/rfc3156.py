"""PGP/MIME (RFC 3156) structures: the canonical entity, building and finding them.

Outbound, the entity to protect is the message's own content (its ``Content-*`` fields and
body). For a signature it is first made 7-bit safe (leaves with 8-bit data, long lines,
trailing white space or ``From `` lines are re-encoded) and then canonicalised to CRLF;
those bytes are what gpg signs. The output message uses the input's line break, so a
message with LF line ends carries the LF form of the signed bytes, which becomes the signed
bytes again when the MTA turns LF into CRLF on the wire.

Inbound, only the *root* of a message counts as its cryptographic envelope; signed or
encrypted parts further down are reported with their path and never stand for the message.
"""

from __future__ import annotations

from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.mime import (
    Message,
    Part,
    Path,
    decode_payload,
    make_field,
    new_boundary,
    parse,
)
from mailroute.mime.canonical import content_entity, in_newline, to_crlf
from mailroute.mime.canonical import seven_bit as make_seven_bit
from mailroute.mime.headers import split_content
from mailroute.mime.params import quote_parameter
from mailroute.mime.protected import ProtectedHeaders, decrypted_with_outer
from mailroute.records import record

__all__ = [
    "EncryptedEnvelope",
    "SignedEntity",
    "build_encrypted",
    "build_signed",
    "canonical_entity",
    "decrypted",
    "find_encrypted",
    "find_signed",
    "to_crlf",
    "with_entity",
]

def canonical_entity(message: Message, *, seven_bit: bool) -> bytes:
    """The entity to sign or encrypt, in canonical CRLF form."""
    entity = Message(content_entity(message, default_type=True), newline=message.newline)
    if seven_bit:
        entity = make_seven_bit(entity)
    return to_crlf(entity.to_bytes())


def _outer_fields(message: Message) -> bytes:
    fields, _ = split_content(message.headers)
    raw = b"".join(f.raw for f in fields)
    if not any(f.lower_name == "mime-version" for f in fields):
        raw += make_field("MIME-Version", "1.0", newline=message.newline).raw
    return raw


def _assemble(message: Message, content_type: str, parts: list[bytes],
              limits: Limits) -> Message:
    nl = message.newline
    boundary = new_boundary(b"".join(parts))
    dash = b"--" + boundary.encode("ascii")
    ctype = make_field("Content-Type", f"{content_type}; "
                       + quote_parameter("boundary", boundary), newline=nl)
    body = dash + nl + (nl + dash + nl).join(parts) + nl + dash + b"--" + nl
    return parse(_outer_fields(message) + ctype.raw + nl + body, limits=limits)


def _leaf(fields: list[tuple[str, str]], body: bytes, newline: bytes) -> bytes:
    raw = b"".join(make_field(name, value, newline=newline).raw for name, value in fields)
    return raw + newline + in_newline(to_crlf(body), newline)


def build_signed(message: Message, entity: bytes, signature: bytes, micalg: str, *,
                 limits: Limits = DEFAULT_LIMITS) -> Message:
    """``multipart/signed; protocol="application/pgp-signature"`` around ``entity``.

    ``entity`` is the canonical (CRLF) form that was signed; it is emitted in the message's
    line break, byte for byte otherwise.
    """
    nl = message.newline
    sig_part = _leaf([("Content-Type", 'application/pgp-signature; name="signature.asc"'),
                      ("Content-Description", "OpenPGP digital signature"),
                      ("Content-Disposition", 'attachment; filename="signature.asc"')],
                     signature, nl)
    ctype = f'multipart/signed; micalg={micalg}; protocol="application/pgp-signature"'
    return _assemble(message, ctype, [in_newline(entity, nl), sig_part], limits)


def build_encrypted(message: Message, armored: bytes, *,
                    limits: Limits = DEFAULT_LIMITS) -> Message:
    """``multipart/encrypted; protocol="application/pgp-encrypted"`` holding ``armored``."""
    nl = message.newline
    version = _leaf([("Content-Type", "application/pgp-encrypted"),
                     ("Content-Description", "PGP/MIME version identification")],
                    b"Version: 1\r\n", nl)
    payload = _leaf([("Content-Type", 'application/octet-stream; name="encrypted.asc"'),
                     ("Content-Description", "OpenPGP encrypted message"),
                     ("Content-Disposition", 'inline; filename="encrypted.asc"')], armored, nl)
    return _assemble(message, 'multipart/encrypted; protocol="application/pgp-encrypted"',
                     [version, payload], limits)


def with_entity(message: Message, entity: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Message:
    """The outer fields of ``message`` (without its Content-* fields) and ``entity``."""
    return decrypted(message, entity, limits=limits)[0]


def decrypted(message: Message, entity: bytes, *, limits: Limits = DEFAULT_LIMITS
              ) -> tuple[Message, ProtectedHeaders | None]:
    """The result of a decryption: the decrypted entity takes the place of the encrypted
    layer under the outer fields of ``message`` (without its Content-* fields), and what its
    protected headers were (:mod:`mailroute.mime.protected`: the inner fields win).

    Line breaks of the entity follow the message's.

    Raises:
        MessageError: the entity, or the message made of it, is not sound MIME.
    """
    nl = message.newline
    inner = parse(in_newline(to_crlf(entity), nl), limits=limits)
    outer, _ = split_content(message.headers)
    merged, protected = decrypted_with_outer(outer, inner)
    return parse(merged.to_bytes(), limits=limits), protected


@record(frozen=True)
class SignedEntity:
    """A PGP/MIME ``multipart/signed`` found in a message.

    Attributes:
        path: where the multipart/signed is (``()`` = the message itself).
        signed: the bytes of the signed part exactly as received.
        signature: the decoded ``application/pgp-signature`` payload.
    """

    path: Path
    signed: bytes
    signature: bytes


@record(frozen=True)
class EncryptedEnvelope:
    """A PGP/MIME ``multipart/encrypted`` at ``path`` and its OpenPGP message."""

    path: Path
    data: bytes


def _is_pgp(part: Part, subtype: str, protocol: str) -> bool:
    value = part.content_type.param("protocol")
    return (part.mime_type == f"multipart/{subtype}" and value is not None
            and value.strip().lower() == protocol and len(part.children) == 2)


def find_signed(message: Message) -> tuple[SignedEntity, ...]:
    """Every PGP/MIME signed entity, in document order."""
    found = []
    for path, part in message.walk():
        if not _is_pgp(part, "signed", "application/pgp-signature"):
            continue
        if not message.structurally_sound(path):
            continue
        signed_part, sig_part = part.children
        if sig_part.mime_type != "application/pgp-signature" or sig_part.is_multipart:
            continue
        found.append(SignedEntity(path, signed_part.to_bytes(), decode_payload(sig_part).data))
    return tuple(found)


def find_encrypted(message: Message) -> tuple[EncryptedEnvelope, ...]:
    """Every PGP/MIME encrypted entity, in document order (only the root is decrypted)."""
    found = []
    for path, part in message.walk():
        if not _is_pgp(part, "encrypted", "application/pgp-encrypted"):
            continue
        version, payload = part.children
        if version.mime_type != "application/pgp-encrypted" or payload.is_multipart:
            continue
        found.append(EncryptedEnvelope(path, decode_payload(payload).data))
    return tuple(found)
