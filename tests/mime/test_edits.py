"""Edits change what they name and leave every other byte alone."""

from __future__ import annotations

import pytest

from mailroute.errors import LimitExceededError, UnsafeHeaderValueError
from mailroute.mime import build_leaf, decode_text, make_field, parse
from mailroute.mime.params import parse_parameters, quote_parameter

MIXED = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"X-Folded: first\r\n second\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Gr=FC=DFe aus K=F6ln\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Gr\xc3\xbc\xc3\x9fe</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf\r\n"
    b"Content-Disposition: attachment; filename=a.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer--  \r\n"
    b"epilogue\r\n"
)

SIGNED = (
    b"From: alice@example.net\r\n"
    b"Subject: signed\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
    b'  micalg=sha-256; boundary="sig"\r\n'
    b"\r\n"
    b"This is an S/MIME signed message\r\n"
    b"--sig\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"signed text   with  odd   spacing \r\n"
    b"--sig\r\n"
    b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"MIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n"
    b"--sig--\r\n"
)


def test_editing_one_leaf_keeps_every_other_part_byte_identical() -> None:
    message = parse(MIXED)
    before = {path: part.to_bytes() for path, part in message.walk()}
    edited = message.replace_text((0, 0), "Grüße aus Köln\r\n-- \r\nFußzeile\r\n")
    after = dict(edited.walk())
    for path, part in after.items():
        if path in ((), (0,), (0, 0)):
            continue
        assert part.to_bytes() == before[path], path
    assert decode_text(edited.part((0, 0))) == "Grüße aus Köln\r\n-- \r\nFußzeile\r\n"
    assert edited.part((0, 0)).charset == "iso-8859-1"
    out = edited.to_bytes()
    assert out.startswith(MIXED[:MIXED.index(b"--outer\r\n")])
    assert out.endswith(b"--outer--  \r\nepilogue\r\n")
    reparsed = parse(out)
    assert [p.mime_type for _, p in reparsed.walk()] == [p.mime_type for _, p in message.walk()]


def test_text_that_does_not_fit_the_charset_becomes_utf8() -> None:
    edited = parse(MIXED).replace_text((0, 0), "Grüße – ☃\r\n")
    part = parse(edited.to_bytes()).part((0, 0))
    assert part.charset == "utf-8"
    assert decode_text(part) == "Grüße – ☃\r\n"


NAMED_PART = (
    b"From: a@example.net\r\nTo: b@example.org\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
    b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello\r\n"
    b"--b1\r\n%s\r\nContent-Disposition: inline\r\n\r\nOrder 42\r\n--b1--\r\n")


@pytest.mark.parametrize("content_type", [
    b"Content-Type: text/plain; charset=us-ascii;\r\n name*=utf-8''Bestellbest%C3%A4tigung.txt",
    "Content-Type: text/plain; charset=us-ascii; name=\"Bestellbestätigung.txt\"".encode(),
    "Content-Type: text/plain; charset=us-ascii; x-note=\"Bestellbestätigung.txt\"".encode(),
])
def test_a_non_ascii_parameter_survives_the_switch_to_utf8(content_type: bytes) -> None:
    """RFC 2047 encoded words are not allowed in a parameter (RFC 2047 5): the Content-Type
    written back gives its non-ASCII values in RFC 2231 form, so the part stays what it was."""
    edited = parse(NAMED_PART % content_type).replace_text((1,), "Bestellung für Sie\r\n")
    out = edited.to_bytes()
    assert b"=?" not in out
    part = parse(out).part((1,))
    assert part.mime_type == "text/plain"
    assert part.charset == "utf-8"
    assert "Bestellbestätigung.txt" in part.content_type.params.values()
    assert decode_text(part) == "Bestellung für Sie\r\n"


def test_wrapping_a_signed_message_keeps_the_signed_entity_byte_identical() -> None:
    message = parse(SIGNED)
    signed_body = message.root.body_bytes()
    note = build_leaf("text/plain", "Disclaimer\r\n", newline=message.newline)
    wrapped = message.wrap((), after=[note])
    out = wrapped.to_bytes()
    reparsed = parse(out)
    assert reparsed.root.mime_type == "multipart/mixed"
    inner = reparsed.part((0,))
    assert inner.mime_type == "multipart/signed"
    assert inner.body_bytes() == signed_body
    ct_field = message.headers.get("Content-Type")
    assert ct_field is not None
    assert inner.headers.get("Content-Type") == ct_field
    assert reparsed.part((0, 0)).to_bytes() == message.part((0,)).to_bytes()
    assert reparsed.headers.value("From") == "alice@example.net"
    assert reparsed.headers.value("Subject") == "signed"
    assert decode_text(reparsed.part((1,))) == "Disclaimer\r\n"


def test_header_edits() -> None:
    message = parse(MIXED)
    added = message.with_header("X-Scanned", "yes").with_header("X-Last", "1",
                                                                position="bottom")
    out = added.to_bytes()
    assert out.startswith(b"X-Scanned: yes\r\nFrom: Alice")
    assert b"X-Last: 1\r\n\r\npreamble" in out
    removed = parse(out).without_header("x-folded")
    assert b"X-Folded" not in removed.to_bytes()
    replaced = message.replace_header("Subject", "new")
    assert replaced.headers.get_all("Subject")[0].raw == b"Subject: new\r\n"
    assert replaced.to_bytes().index(b"Subject: new") < replaced.to_bytes().index(b"X-Folded")


@pytest.mark.parametrize("position", ["top", "bottom"])
def test_a_field_added_after_a_last_line_without_line_end_stays_a_field(position: str) -> None:
    """A message may end in a header line without a line end; at the top, a field goes
    below a leading line that is no field (found by fuzz/policy_fuzz.py: the marker joined
    that line)."""
    for data in (b"From alice@example.net Sat Dec  5 10:00:00 2026", b"Subject: hi"):
        added = parse(data, on_ambiguity="record").with_header("X-Mark", "v1",
                                                              position=position)
        reread = parse(added.to_bytes(), on_ambiguity="record")
        assert [f.raw_value for f in reread.headers.get_all("X-Mark")] == [b" v1"], data
        assert data in added.to_bytes()


@pytest.mark.parametrize("position", ["top", "bottom"])
def test_a_body_given_to_a_message_without_one_reads_back_after_more_fields(
        position: str) -> None:
    """The blank line a body-less message gets stays one line when fields are added after
    the body (found by fuzz/policy_fuzz.py: the disclaimer, then the marker; the body read
    back with an empty line in front)."""
    for data in (b"Subject: hi", b"From alice@example.net Sat Dec  5 10:00:00 2026"):
        message = parse(data, on_ambiguity="record")
        with_body = message.replace_part((), message.root.with_leaf_body(b"footer\r\n", b"\r\n"))
        edited = with_body.with_header("X-Mark", "v1", position=position)
        reread = parse(edited.to_bytes(), on_ambiguity="record")
        assert reread.root.body_bytes() == b"footer\r\n", data
        names = [f.name for f in reread.headers if f.name]
        assert names.count("X-Mark") == 1
        assert names.index("X-Mark") == (0 if position == "top" else len(names) - 1)


def test_insert_part_adds_a_child_and_keeps_the_others() -> None:
    message = parse(MIXED)
    extra = build_leaf("text/plain", "added\r\n")
    out = message.insert_part((), 1, extra).to_bytes()
    reparsed = parse(out)
    assert [p.mime_type for p in reparsed.root.children] == [
        "multipart/alternative", "text/plain", "application/pdf"]
    assert reparsed.part((2,)).to_bytes() == message.part((1,)).to_bytes()
    first = parse(out.replace(b"preamble\r\n", b"")).insert_part((), 0, extra)
    assert parse(first.to_bytes()).root.children[0].mime_type == "text/plain"


def test_lf_messages_get_lf_in_new_pieces() -> None:
    message = parse(MIXED.replace(b"\r\n", b"\n"))
    assert message.newline == b"\n"
    out = message.with_header("X-New", "v").replace_text((0, 0), "a\nb\n").to_bytes()
    assert b"\r" not in out


@pytest.mark.parametrize("value", ["a\r\nBcc: x@evil.example", "a\nb", "a\rb", "nul\0"])
def test_header_writer_refuses_line_breaks_and_nul(value: str) -> None:
    with pytest.raises(UnsafeHeaderValueError):
        make_field("Subject", value)
    with pytest.raises(UnsafeHeaderValueError):
        parse(MIXED).with_header("Subject", value)


def test_header_writer_refuses_undecodable_bytes_read_back() -> None:
    """A value read back with surrogate escapes (bytes no charset decoded) cannot be written."""
    read_back = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")
    for value in (read_back, "lone \ud800 high", "lone \udfff low"):
        with pytest.raises(UnsafeHeaderValueError, match="undecodable bytes"):
            make_field("Subject", value)
    assert make_field("Subject", "caf\u00e9 \U0001f600").decoded() == "caf\u00e9 \U0001f600"


def test_header_writer_encodes_non_ascii_and_folds_long_values() -> None:
    field = make_field("Subject", "Grüße " * 30)
    assert field.raw.isascii()
    assert field.decoded() == "Grüße " * 30
    assert all(len(line) <= 78 for line in field.raw.split(b"\r\n"))
    long = make_field("X-Long", " ".join(["word"] * 40))
    assert all(len(line) <= 78 for line in long.raw.split(b"\r\n"))
    assert long.value == " ".join(["word"] * 40)


def test_header_writer_refuses_bad_names() -> None:
    for name in ("Bad Name", "Colon:", "", "Ümlaut"):
        with pytest.raises(UnsafeHeaderValueError):
            make_field(name, "x")


def test_parsed_content_types_are_shared_read_only() -> None:
    part = parse(MIXED).part((0, 0))
    with pytest.raises(TypeError):
        part.content_type.params["charset"] = "utf-8"  # type: ignore[index]
    assert parse(MIXED).part((0, 0)).charset == "iso-8859-1"


def test_a_long_value_without_white_space_stays_on_the_field_line() -> None:
    token = "v1.g7k2qd.k1.1790000000." + "A" * 80
    assert make_field("X-Mailroute-Mark", token).raw == f"X-Mailroute-Mark: {token}\r\n".encode()
    folded = make_field("X-Long", token + " tail " + "w " * 40)
    first, *rest = folded.raw.split(b"\r\n")[:-1]
    assert first == f"X-Long: {token}".encode()
    assert all(len(line) <= 78 for line in rest)
    assert folded.value == (token + " tail " + "w " * 40).strip()


@pytest.mark.parametrize("value", ["Bestätigung.txt", "Übersicht " * 20 + "ü", "ä" * 70,
                                   "日本語のファイル名" * 5, "plain-ascii"])
def test_a_parameter_written_reads_back_the_same(value: str) -> None:
    field = make_field("Content-Type", f"text/plain; {quote_parameter('name', value)}")
    assert field.raw.isascii()
    assert all(len(line) <= 78 for line in field.raw.split(b"\r\n"))
    head, params, _ = parse_parameters(field.value)   # as MIME readers do: no RFC 2047
    assert head == "text/plain"
    assert params == {"name": value}


def test_a_parameter_with_undecodable_bytes_is_refused() -> None:
    read_back = b"Best\xe4tigung".decode("utf-8", "surrogateescape")
    with pytest.raises(UnsafeHeaderValueError, match="undecodable bytes"):
        quote_parameter("name", read_back)


def test_sections_of_a_long_parameter_split_between_characters() -> None:
    """Each section decodes on its own, for readers that decode section by section."""
    written = quote_parameter("name", "ä" * 70)
    sections = [piece.split("=", 1)[1] for piece in written.split("; ")]
    assert len(sections) > 1
    text = "".join(parse_parameters(f"x/y; n*={s}")[1]["n"] for s in
                   [sections[0], *("utf-8''" + s for s in sections[1:])])
    assert text == "ä" * 70


def test_a_character_split_between_sections_by_another_writer_reads_whole() -> None:
    _, params, _ = parse_parameters("text/plain; name*0*=utf-8''Best%C3; name*1*=%A4tigung.txt")
    assert params == {"name": "Bestätigung.txt"}


@pytest.mark.parametrize("name", ["na\u2014me", "na\x00me", "na me", ""])
def test_a_parameter_whose_name_is_no_token_is_refused(name: str) -> None:
    """Found by fuzz/run html: a Content-Type read back with a parameter name holding a
    dash from another script was written as one encoded word (the part became text/plain)."""
    with pytest.raises(UnsafeHeaderValueError, match="not a token"):
        quote_parameter(name, "x")


def test_the_header_writer_refuses_a_value_that_would_not_read_back() -> None:
    """Found by fuzz/run headers: 6,000 non-ASCII characters fit the reader's limit, but as
    encoded words they did not, and the field written could not be decoded again."""
    with pytest.raises(LimitExceededError):
        make_field("Subject", "ü" * 6000)
    assert make_field("Subject", "ü" * 3000).decoded() == "ü" * 3000
