"""Splicing: the encoded bytes before the insertion point are kept as the sender wrote them."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroute.disclaimer.insert import decode_body
from mailroute.disclaimer.select import Body
from mailroute.disclaimer.splice import splice_text
from mailroute.mime import Message, decode_text, parse
from mailroute.mime.charsets import label_codec_name
from mailroute.mime.transfer import encode_payload

HEAD = (b"From: a@example.net\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n")


def _message(body: bytes, cte: str) -> bytes:
    return HEAD + f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode() + body


def _body(message: Message) -> Body:
    root = message.root
    return Body((), root.mime_type, root.charset, root.transfer_encoding)


def _splice(data: bytes, insertion: str, at_end: bool = True) -> tuple[bytes, bytes] | None:
    message = parse(data)
    text, codec = decode_body(message.root)
    assert text is not None
    offset = len(text) if at_end else 0
    spliced = splice_text(message, _body(message), text, offset, insertion, codec)
    if spliced is None:
        return None
    assert decode_text(spliced.root) == text[:offset] + insertion.replace(
        "\n", "\r\n") + text[offset:]
    return message.root.body_bytes(), spliced.root.body_bytes()


def test_quoted_printable_prefix_is_kept_byte_for_byte() -> None:
    # a soft break as another client wrote it (cutting "ü"), then a hard break, then a line
    body = (b"Gr=C3=\r\n=BC=C3=9Fe aus K=C3=B6ln,=20\r\nzweite Zeile mit =E2=82=AC\r\n"
            b"letzte Zeile\r\n")
    result = _splice(_message(body, "quoted-printable"), "-- \nFußzeile 東京\n")
    assert result is not None
    before, after = result
    assert after.startswith(before)
    assert after[len(before):] == b"--=20\r\nFu=C3=9Fzeile =E6=9D=B1=E4=BA=AC\r\n"


def test_last_line_without_line_break_is_encoded_again() -> None:
    body = b"erste Zeile\r\nohne Ende =C3=A4"
    result = _splice(_message(body, "quoted-printable"), "\n\nx\n")
    assert result is not None
    _, after = result
    assert after.startswith(b"erste Zeile\r\n")
    assert binascii.a2b_qp(after) == b"erste Zeile\r\nohne Ende \xc3\xa4\r\n\r\nx\r\n"


def test_encoded_line_feed_is_not_mistaken_for_a_line_break() -> None:
    body = b"eins=0Azwei\r\ndrei\r\n"
    data = _message(body, "quoted-printable")
    message = parse(data)
    text, codec = decode_body(message.root)
    assert text == "eins\nzwei\r\ndrei\r\n"
    offset = text.index("zwei")
    # the decoded LF has no encoded line break to match: the prefix check refuses to splice
    assert splice_text(message, _body(message), text, offset, "[x]", codec) is None


@pytest.mark.parametrize(("cte", "insertion", "spliced"), [
    ("7bit", "-- \nplain ascii\n", True),
    ("7bit", "-- \nnicht ascii: ä\n", False),   # 7bit cannot carry it: whole body re-encoded
    ("8bit", "-- \nnicht ascii: ä\n", True),
])
def test_identity_encodings(cte: str, insertion: str, spliced: bool) -> None:
    body = b"line one\r\nline two\r\n"
    result = _splice(_message(body, cte), insertion)
    assert (result is not None) is spliced
    if result is not None:
        before, after = result
        assert after.startswith(before)


def test_top_placement_encodes_the_whole_body() -> None:
    top = _splice(_message(b"line one\r\nline two\r\n", "quoted-printable"), "top\n",
                  at_end=False)
    assert top is not None
    assert top[1] == b"top\r\nline one\r\nline two\r\n"


def test_base64_keeps_the_whole_lines_before_the_insertion() -> None:
    text = ("Grüße aus Köln, " * 20 + "\r\n") * 3
    encoded = base64.encodebytes(text.encode()).replace(b"\n", b"\r\n")
    message = parse(_message(encoded, "base64"))
    decoded, codec = decode_body(message.root)
    assert decoded == text
    spliced = splice_text(message, _body(message), decoded, len(decoded), "-- \r\nä\r\n", codec)
    assert spliced is not None
    after = spliced.root.body_bytes()
    kept = len(text.encode()) // 57
    assert after.startswith(encoded[:kept * 78])
    assert decode_text(spliced.root) == text + "-- \r\nä\r\n"


def test_base64_with_uneven_lines_or_stateful_charset_is_not_spliced() -> None:
    uneven = b"bGluZSBvbmUN\r\nCmxpbmUgdHdvDQo=\r\n"
    message = parse(_message(uneven, "base64"))
    decoded, codec = decode_body(message.root)
    assert decoded is not None
    assert splice_text(message, _body(message), decoded, len(decoded), "x", codec) is None
    utf16 = base64.encodebytes("Zeile\r\n".encode("utf-16")).replace(b"\n", b"\r\n")
    data = _message(utf16, "base64").replace(b"charset=utf-8", b"charset=utf-16")
    message = parse(data)
    decoded, codec = decode_body(message.root)
    assert decoded == "Zeile\r\n"
    assert splice_text(message, _body(message), decoded, len(decoded), "x", codec) is None


_LATIN_LINE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255,
                                             blacklist_characters="\x7f",
                                             blacklist_categories=["Cc"]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_LATIN_LINE, max_size=12), final_break=st.booleans(),
       label=st.sampled_from([None, "us-ascii", "iso-8859-1", "windows-1252", "latin1",
                              "utf-8", "koi8-r"]),
       cte=st.sampled_from(["7bit", "8bit", "quoted-printable"]),
       where=st.floats(min_value=0, max_value=1),
       insertion=st.sampled_from(["-- \nfooter\n", "\n\nx", "\u00e9 \u00fc\n", "\u20ac\n"]))
def test_a_spliced_clean_body_is_what_writing_it_whole_gives(
        lines: list[str], final_break: bool, label: str | None, cte: str, where: float,
        insertion: str) -> None:
    """Splicing is an optimisation: on a body with CRLF breaks only, lines a re-encoding
    keeps, and an encoding that can carry it, the result is the whole body written again."""
    text = "\r\n".join(lines) + ("\r\n" if final_break else "")
    codec = label_codec_name(label)
    if cte == "7bit" and not text.isascii():
        return  # a 7bit label on 8-bit text: writing it whole switches to QP by design
    try:
        payload = text.encode(codec)
    except UnicodeEncodeError:
        return
    if cte == "quoted-printable":
        payload = encode_payload(payload, cte, b"\r\n")
    content_type = "text/plain" + (f"; charset={label}" if label else "")
    message = parse(b"From: a@example.net\r\nContent-Type: " + content_type.encode()
                    + f"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode() + payload)
    decoded, read_with = decode_body(message.root)
    assert decoded == text
    offset = int(where * len(text))
    offset -= text.startswith("\n", offset)  # never between CR and LF
    spliced = splice_text(message, _body(message), text, offset, insertion, read_with)
    if spliced is None:
        return
    whole = message.replace_text((), text[:offset] + insertion + text[offset:])
    assert spliced.to_bytes() == whole.to_bytes()
