"""Rows 3-12 of the bad-input catalogue (notes/bad-input.md section 4): a typed error or a
recorded defect, never a traceback, within bounded time."""

from __future__ import annotations

import pytest

from mailroute.errors import (
    AmbiguousMessageError,
    LimitExceededError,
    MalformedMessageError,
)
from mailroute.limits import Limits
from mailroute.mime import Decoded, DefectKind, decode_payload, decode_text, parse, parse_addresses


def nested(depth: int) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%05d"\r\n\r\n--b%05d\r\n' % (i, i)
                    for i in range(depth))
    tail = b"".join(b"\r\n--b%05d--\r\n" % i for i in reversed(range(depth)))
    return b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nleaf" + tail


def kinds(data: bytes) -> set[DefectKind]:
    return {d.kind for d in parse(data, on_ambiguity="record").defects}


# row 3: nesting
def test_nesting_up_to_the_limit_parses_without_recursion() -> None:
    data = nested(99)
    message = parse(data)
    assert message.root.to_bytes() == data
    assert len(list(message.walk())) == 100


@pytest.mark.parametrize("depth", [101, 2000])
def test_nesting_beyond_the_limit_is_refused(depth: int) -> None:
    with pytest.raises(LimitExceededError) as caught:
        parse(nested(depth))
    assert caught.value.limit == "max_depth"
    assert caught.value.reply.status == "5.6.0"


def test_deep_nesting_with_a_raised_limit_still_needs_no_recursion() -> None:
    data = nested(3000)
    assert parse(data, limits=Limits(max_depth=5000)).root.to_bytes() == data


# row 4: header block, line and count limits
def test_oversized_header_block_is_refused() -> None:
    data = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"x" * 90) for i in range(1200)) + b"\r\nbody"
    with pytest.raises(LimitExceededError) as caught:
        parse(data)
    assert caught.value.limit == "max_header_block_size"


def test_overlong_header_line_is_refused() -> None:
    with pytest.raises(LimitExceededError) as caught:
        parse(b"Subject: " + b"x" * 3000 + b"\r\n\r\nbody")
    assert caught.value.limit == "max_header_line_length"


def test_too_many_fields_are_refused() -> None:
    data = b"".join(b"X-%d: 1\r\n" % i for i in range(50)) + b"\r\n"
    with pytest.raises(LimitExceededError) as caught:
        parse(data, limits=Limits(max_header_fields=40))
    assert caught.value.limit == "max_header_fields"


def test_message_size_limit_answers_5_3_4() -> None:
    with pytest.raises(LimitExceededError) as caught:
        parse(b"Subject: x\r\n\r\n" + b"a" * 2000, limits=Limits(max_message_size=1000))
    assert (caught.value.reply.code, caught.value.reply.status) == (552, "5.3.4")


def test_part_count_limit() -> None:
    parts = b"".join(b"--b\r\n\r\nx\r\n" for _ in range(50))
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    with pytest.raises(LimitExceededError) as caught:
        parse(data, limits=Limits(max_parts=20))
    assert caught.value.limit == "max_parts"


# row 5: hostile structured header values
@pytest.mark.parametrize("depth", [900, 2000])
def test_nested_comments_in_an_address_header_are_a_typed_error(depth: int) -> None:
    field_value = b"(" * depth + b")" * depth + b" a@example.net"
    message = parse(b"To: " + field_value + b"\r\n\r\n",
                    limits=Limits(max_header_line_length=10_000))
    field = message.headers.get("To")
    assert field is not None
    with pytest.raises(MalformedMessageError):
        parse_addresses(field)


def test_overlong_address_line_is_refused_at_scan_time() -> None:
    with pytest.raises(LimitExceededError):
        parse(b"To: " + b"(" * 2000 + b")" * 2000 + b" a@example.net\r\n\r\n")


def test_huge_address_list_is_bounded_before_the_stdlib_parser() -> None:
    value = b", ".join(b"u%d@example.net" % i for i in range(4000))
    message = parse(b"To: " + value + b"\r\n\r\n", limits=Limits(max_header_line_length=10**6,
                                                                 max_header_block_size=10**6))
    field = message.headers.get("To")
    assert field is not None
    with pytest.raises(LimitExceededError):
        parse_addresses(field)


def test_many_encoded_words_are_bounded_before_decoding() -> None:
    words = b" ".join([b"=?utf-8?q?caf=C3=A9?="] * 4000)
    limits = Limits(max_header_line_length=10**6, max_header_block_size=10**6)
    field = parse(b"Subject: " + words + b"\r\n\r\n", limits=limits).headers.get("Subject")
    assert field is not None
    with pytest.raises(LimitExceededError):
        field.decoded()
    few = parse(b"Subject: " + b" ".join([b"=?utf-8?q?caf=C3=A9?="] * 3) + b"\r\n\r\n")
    subject = few.headers.get("Subject")
    assert subject is not None
    assert subject.decoded() == "cafécafécafé"


def test_encoded_word_with_unknown_charset_is_a_typed_error() -> None:
    field = parse(b"Subject: =?x-unknown?q?abc?=\r\n\r\n").headers.get("Subject")
    assert field is not None
    with pytest.raises(MalformedMessageError):
        field.decoded()


# row 6: duplicate singleton fields
@pytest.mark.parametrize("name", [b"From", b"Sender", b"Date", b"Subject", b"Message-ID"])
def test_duplicate_singletons_are_ambiguous(name: bytes) -> None:
    data = name + b": one\r\n" + name + b": two\r\n\r\nbody"
    with pytest.raises(AmbiguousMessageError):
        parse(data)
    assert DefectKind.DUPLICATE_SINGLETON_FIELD in kinds(data)


@pytest.mark.parametrize("name", [b"Content-Type", b"Content-Transfer-Encoding"])
def test_duplicate_content_fields_are_ambiguous_in_any_entity(name: bytes) -> None:
    inner = name + b": text/plain\r\n" + name + b": base64\r\n\r\nx\r\n"
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + inner + b"--b--\r\n"
    with pytest.raises(AmbiguousMessageError):
        parse(data)


# row 7: whitespace before the colon, bad names
def test_space_before_colon_is_ambiguous() -> None:
    with pytest.raises(AmbiguousMessageError):
        parse(b"Subject: x\r\nFrom : ceo@victim.example\r\n\r\nbody")


def test_space_before_colon_on_the_first_line_is_not_taken_for_an_mbox_line() -> None:
    data = b"From : ceo@victim.example\r\nTo: a@example.net\r\n\r\nbody"
    with pytest.raises(AmbiguousMessageError):
        parse(data)
    assert DefectKind.SPACE_BEFORE_COLON in kinds(data)
    assert DefectKind.MBOX_FROM_LINE not in kinds(data)


def test_a_real_mbox_from_line_is_recorded_not_refused() -> None:
    data = b"From alice@example.net Mon Nov 30 10:00:00 2026\r\nSubject: x\r\n\r\nbody"
    message = parse(data)
    assert DefectKind.MBOX_FROM_LINE in {d.kind for d in message.defects}
    assert message.headers.value("Subject") == "x"
    assert message.root.to_bytes() == data


def test_non_printable_field_name_is_ambiguous() -> None:
    with pytest.raises(AmbiguousMessageError):
        parse(b"Subject: x\r\nFr\x01om: a@b\r\n\r\nbody")


# row 8: bare CR in the header block; body line endings kept
def test_bare_cr_in_header_is_ambiguous() -> None:
    with pytest.raises(AmbiguousMessageError):
        parse(b"Subject: a\rBcc: x@evil.example\r\n\r\nbody")


def test_body_line_endings_are_preserved() -> None:
    data = b"Subject: x\r\n\r\nCRLF\r\nLF\nCR\rend"
    assert parse(data).root.to_bytes() == data


# row 9: boundary parameter tricks
@pytest.mark.parametrize("content_type", [
    b'multipart/mixed; boundary="AAA"; boundary="BBB"',
    b'multipart/mixed; boundary*0="AA"; boundary*1="BB"; boundary="CC"',
])
def test_duplicate_or_conflicting_boundary_is_ambiguous(content_type: bytes) -> None:
    data = b"Content-Type: " + content_type + b"\r\n\r\n--AAA\r\n\r\nx\r\n--AAA--\r\n"
    with pytest.raises(AmbiguousMessageError):
        parse(data)


def test_nested_boundary_that_merely_extends_the_outer_one_is_accepted() -> None:
    # "--abcd" is no "--abc" delimiter line for a reader that follows RFC 2046 (Python's
    # email package included): every delimiter line has one reading, and real mailers write it.
    data = (b"Content-Type: multipart/mixed; boundary=abc\r\n\r\n--abc\r\n"
            b"Content-Type: multipart/mixed; boundary=abcd\r\n\r\n--abcd\r\n\r\nx\r\n"
            b"--abcd--\r\n--abc--\r\n")
    message = parse(data)
    assert message.root.to_bytes() == data
    assert len(message.root.children[0].children) == 1
    assert message.structurally_sound()


@pytest.mark.parametrize("inner", [b"abc", b"abc--"])
def test_nested_boundary_an_ancestor_reads_as_its_own_is_structural(inner: bytes) -> None:
    # The same boundary (Outlook Express for Mac), or it plus "--": the inner
    # delimiter lines are the outer's too, so the outer's parts are uncertain. Recorded on the
    # outer entity, which transforms then leave alone; never a reason to refuse the message.
    data = (b"Content-Type: multipart/mixed; boundary=abc\r\n\r\n--abc\r\n"
            b"Content-Type: text/plain\r\n\r\nfirst\r\n--abc\r\n"
            b'Content-Type: multipart/alternative; boundary="' + inner + b'"\r\n\r\n--'
            + inner + b"\r\n\r\nx\r\n--" + inner + b"--\r\n--abc--\r\n")
    message = parse(data)
    assert message.root.to_bytes() == data
    reuse = [d for d in message.defects if d.kind is DefectKind.NESTED_BOUNDARY_REUSE]
    assert [d.path for d in reuse] == [()]
    assert not reuse[0].ambiguous
    assert not message.structurally_sound()


def test_overlong_boundary_makes_the_entity_a_leaf() -> None:
    boundary = b"b" * 3000
    data = (b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--" + boundary
            + b"\r\n\r\nx\r\n")
    message = parse(data, limits=Limits(max_header_line_length=5000))
    assert not message.root.is_multipart
    assert DefectKind.INVALID_BOUNDARY in {d.kind for d in message.defects}
    assert not message.structurally_sound()


# row 10: structural defects are recorded, not fatal
@pytest.mark.parametrize(("data", "kind"), [
    (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n",
     DefectKind.MISSING_CLOSE_BOUNDARY),
    (b"Content-Type: multipart/mixed; boundary=b\r\n\r\nno parts here\r\n",
     DefectKind.NO_START_BOUNDARY),
    (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n--b\r\n",
     DefectKind.BOUNDARY_IN_EPILOGUE),
    (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--bx\r\n--b--\r\n",
     DefectKind.BOUNDARY_PREFIX_LINE),
    (b"Content-Type: multipart/mixed\r\n\r\nbody\r\n", DefectKind.MULTIPART_WITHOUT_BOUNDARY),
])
def test_structural_defects_are_recorded(data: bytes, kind: DefectKind) -> None:
    message = parse(data)
    assert kind in {d.kind for d in message.defects}
    assert message.root.to_bytes() == data


def test_transform_guard_sees_structural_defects() -> None:
    message = parse(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n")
    assert not message.structurally_sound()
    assert parse(b"Subject: fine\r\n\r\nbody").structurally_sound()


# row 11: transfer encodings
def test_encoded_multipart_is_recorded() -> None:
    data = (b"Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64"
            b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n")
    assert DefectKind.ENCODED_MULTIPART in kinds(data)


def test_invalid_base64_decodes_with_a_defect() -> None:
    message = parse(b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ\r\n")
    decoded = decode_payload(message.root)
    assert decoded.data == b"hello world"
    assert DefectKind.INVALID_BASE64 in decoded.defects


def test_base64_with_line_breaks_is_valid_and_stray_bytes_are_a_defect() -> None:
    wrapped = parse(b"Content-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n")
    assert decode_payload(wrapped.root) == Decoded(b"hello")
    stray = parse(b"Content-Transfer-Encoding: base64\r\n\r\naGVs*bG8=\r\n")
    decoded = decode_payload(stray.root)
    assert decoded.data == b"hello"
    assert decoded.defects == (DefectKind.INVALID_BASE64,)


def test_invalid_base64_with_a_dangling_character_decodes_what_it_can() -> None:
    """Regression: found by fuzz/scan_fuzz.py (binascii.Error from the lenient decode)."""
    message = parse(b"Content-Transfer-Encoding: base64\r\n\r\naGVsb*\r\n")
    decoded = decode_payload(message.root)
    assert decoded.data == b"hel"
    assert decoded.defects == (DefectKind.INVALID_BASE64,)


def test_unknown_transfer_encoding_is_a_typed_error() -> None:
    message = parse(b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n")
    with pytest.raises(MalformedMessageError):
        decode_payload(message.root)


def test_broken_quoted_printable_decodes_without_error() -> None:
    message = parse(b"Content-Transfer-Encoding: quoted-printable\r\n\r\nbad =ZZ escape=\r\n")
    assert decode_payload(message.root).data == b"bad =ZZ escape"


# row 12: charsets
def test_unknown_charset_is_a_typed_error() -> None:
    message = parse(b"Content-Type: text/plain; charset=x-nonexistent\r\n\r\nabc")
    with pytest.raises(MalformedMessageError):
        decode_text(message.root)


def test_bytes_that_do_not_match_the_charset_are_a_typed_error() -> None:
    message = parse(b"Content-Type: text/plain; charset=utf-8\r\n\r\n\xff\xfe broken")
    with pytest.raises(MalformedMessageError):
        decode_text(message.root)


def test_rfc2231_parameter_with_raw_eight_bit_bytes_does_not_crash() -> None:
    """Regression: found by fuzz/scan_fuzz.py (UnicodeEncodeError from urllib's unquote)."""
    data = b"Content-Type: text/plain; name*=utf-8''a%41\xff\xfe\r\n\r\nx"
    message = parse(data)
    assert message.root.to_bytes() == data
    assert message.root.content_type.param("name") == "aA\xff\xfe"


def test_rfc2231_charset_with_a_nul_does_not_crash() -> None:
    """Regression: found by fuzz/scan_fuzz.py (ValueError from the codec lookup)."""
    data = b"Content-Type: text/plain; name*=\"u\x00tf'en'a%41\"\r\n\r\nx"
    message = parse(data)
    assert message.root.content_type.param("name") == "aA"


@pytest.mark.parametrize("label", [b"base64", b"zlib", b"hex", b"rot13", b"u\x00tf-8"])
def test_codecs_that_are_not_charsets_are_refused(label: bytes) -> None:
    message = parse(b"Content-Type: text/plain; charset=\"" + label + b"\"\r\n\r\naGk=\r\n")
    with pytest.raises(MalformedMessageError):
        decode_text(message.root)


def test_eight_bit_header_bytes_survive_untouched() -> None:
    data = b"Subject: Gr\xfc\xdfe\r\n\r\nbody"
    message = parse(data)
    assert message.root.to_bytes() == data
    assert message.headers.value("Subject") == "Gr\udcfc\udcdfe"


def test_nul_bytes_in_body_survive() -> None:
    data = b"Subject: x\r\n\r\na\0b"
    assert parse(data).root.to_bytes() == data
