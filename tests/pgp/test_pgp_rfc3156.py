"""RFC 3156 structures without gpg: canonical entity, 7-bit safety, layout, finding parts."""

from __future__ import annotations

from mailroute.mime import decode_payload, parse
from mailroute.pgp.inline import InlineKind, find_inline
from mailroute.pgp.rfc3156 import (
    build_encrypted,
    build_signed,
    canonical_entity,
    find_encrypted,
    find_signed,
    with_entity,
)
from tests.pgp.messages import ENTITY, MIXED, PLAIN, PLAIN_LF

SIG = b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"


def test_entity_is_the_content_in_crlf_form() -> None:
    assert canonical_entity(parse(PLAIN), seven_bit=True) == ENTITY
    assert canonical_entity(parse(PLAIN_LF), seven_bit=True) == ENTITY


def test_missing_content_type_is_made_explicit() -> None:
    raw = b"From: a@example.org\r\n\r\nbody\r\n"
    assert canonical_entity(parse(raw), seven_bit=True) == (
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\nbody\r\n")


def test_seven_bit_rules() -> None:
    entity = parse(canonical_entity(parse(MIXED), seven_bit=True))
    text, attachment = entity.root.children
    assert text.transfer_encoding == "quoted-printable"
    assert b"=46rom the gateway" in text.body_bytes()
    assert b"=20\r\n" in text.body_bytes()  # trailing space protected
    assert decode_payload(text).data == "Grüße \r\nFrom the gateway".encode()
    assert attachment.transfer_encoding == "base64"
    assert decode_payload(attachment).data == b"\x01\x02\xff data"
    assert entity.to_bytes().isascii()


def test_signed_layout_keeps_entity_bytes_and_line_breaks() -> None:
    for raw in (PLAIN, PLAIN_LF):
        message = parse(raw)
        out = build_signed(message, ENTITY, SIG, "pgp-sha256")
        root = out.root
        assert root.mime_type == "multipart/signed"
        assert root.content_type.param("protocol") == "application/pgp-signature"
        assert root.content_type.param("micalg") == "pgp-sha256"
        assert root.children[1].mime_type == "application/pgp-signature"
        (found,) = find_signed(out)
        assert found.path == ()
        assert found.signed == ENTITY.replace(b"\r\n", message.newline)
        assert found.signature == SIG.replace(b"\n", message.newline)
        assert out.headers.value("Subject") == "pgp test"


def test_encrypted_layout_and_only_root_counts_as_envelope() -> None:
    out = build_encrypted(parse(PLAIN), b"-----BEGIN PGP MESSAGE-----\n\nx\n"
                                        b"-----END PGP MESSAGE-----\n")
    version, payload = out.root.children
    assert version.body_bytes() == b"Version: 1\r\n"
    assert payload.mime_type == "application/octet-stream"
    (found,) = find_encrypted(out)
    assert found.path == ()
    assert found.data.startswith(b"-----BEGIN PGP MESSAGE-----")


def test_with_entity_replaces_the_content_layer() -> None:
    encrypted = build_encrypted(parse(PLAIN), b"x")
    out = with_entity(encrypted, ENTITY)
    assert out.to_bytes() == PLAIN
    lf = with_entity(build_encrypted(parse(PLAIN_LF), b"x"), ENTITY)
    assert lf.to_bytes() == PLAIN_LF


def test_inline_blocks_know_whether_they_stand_alone() -> None:
    block = (b"-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhi\r\n"
             b"-----BEGIN PGP SIGNATURE-----\r\n\r\nAA\r\n-----END PGP SIGNATURE-----\r\n")
    head = b"From: a@example.org\r\nContent-Type: text/plain\r\n\r\n"
    (alone,) = find_inline(parse(head + block))
    assert alone.kind is InlineKind.SIGNED
    assert alone.alone
    (mixed,) = find_inline(parse(head + b"Above\r\n" + block))
    assert not mixed.alone
