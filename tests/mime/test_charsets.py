"""Charset labels: decoded as clients do (WHATWG), encoded in the label's own charset."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroute.errors import MalformedMessageError
from mailroute.mime import decode_text, parse
from mailroute.mime.charsets import (
    _LABELS,
    ascii_transparent,
    codec_name,
    decode_bytes,
    encode_text,
    is_ascii_label,
    label_codec_name,
)


@pytest.mark.parametrize(("label", "windows"), [
    ("iso-8859-1", "\u201c"), ("ISO-8859-1", "\u201c"), ("us-ascii", "\u201c"),
    ("latin1", "\u201c"), ("l1", "\u201c"), ("cp819", "\u201c"), ("ascii", "\u201c"),
    (None, "\u201c"), ("windows-1252", "\u201c"), ("iso-8859-9", "\u201c"),
    ("tis-620", "\u201c"), ("windows-874", "\u201c"), ("x-cp1250", "\u201c"),
])
def test_single_byte_labels_read_0x93_as_windows_does(label: str | None, windows: str) -> None:
    assert b"\x93".decode(codec_name(label)) == windows


@pytest.mark.parametrize(("label", "codec"), [
    ("gb2312", "gbk"), ("ks_c_5601-1987", "cp949"), ("euc-kr", "cp949"),
    ("big5", "big5hkscs"), ("shift_jis", "cp932"), ("x-gbk", "gbk"),
    ("iso-8859-8-i", "iso8859-8"), ("utf-8", "utf-8"), ("iso-8859-2", "iso8859-2"),
])
def test_cjk_and_other_labels(label: str, codec: str) -> None:
    assert codec_name(label) == codec


def test_windows_1254_for_latin5() -> None:
    assert b"\xd0\x80".decode(codec_name("iso-8859-9")) == "\u011e\u20ac"


def test_bytes_windows_leaves_undefined_are_c1_controls_and_round_trip() -> None:
    data = bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D])
    text = data.decode(codec_name("iso-8859-1"))
    assert text == "\x81\x8d\x8f\x90\x9d"
    assert text.encode(codec_name("iso-8859-1")) == data


def test_encoding_uses_the_charset_the_label_names() -> None:
    assert label_codec_name("iso-8859-1") == "iso8859-1"
    assert label_codec_name("us-ascii") == "ascii"
    assert label_codec_name("windows-874") == "cp874"  # a WHATWG label Python lacks
    assert is_ascii_label(None)
    assert is_ascii_label("US-ASCII")
    assert not is_ascii_label("iso-8859-1")


@pytest.mark.parametrize("label", ["base64", "x-unknown", "a\0b"])
def test_unknown_labels_are_refused(label: str) -> None:
    with pytest.raises(MalformedMessageError, match="unknown charset"):
        codec_name(label)


def test_replace_text_never_writes_windows_bytes_under_a_latin1_label() -> None:
    message = parse(b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nx\r\n")
    edited = message.replace_text((), "\u201cquoted\u201d")
    assert edited.root.charset == "utf-8"
    assert decode_text(edited.root) == "\u201cquoted\u201d"
    assert edited.root.body_bytes() == b"=E2=80=9Cquoted=E2=80=9D"


@pytest.mark.parametrize("label", ["us-ascii", "iso-8859-1", "windows-1250", "windows-1251",
                                   "windows-1253", "iso-8859-9", "windows-874", "macintosh"])
def test_ascii_fast_path_gives_what_the_charmap_gives(label: str) -> None:
    import codecs

    name = codec_name(label)
    ascii_text = "".join(map(chr, range(128)))
    mixed = ascii_text + "\u20ac\u00e9"
    assert codecs.encode(ascii_text, name) == bytes(range(128))
    assert codecs.decode(bytes(range(128)), name) == ascii_text
    # one non-ASCII character takes the charmap for the whole text
    assert codecs.decode(codecs.encode(mixed, name, "replace"), name).startswith(ascii_text)


_ASCII_RUNS = (bytes(range(128)), b"+AGEA-", b"~{<:Ky2;S{#,~}", b"\x1b$B$3$s\x1b(B", b"a+b-c~d")


@pytest.mark.parametrize("label", [
    *sorted(_LABELS), *(f"iso-8859-{n}" for n in (2, 3, 4, 5, 6, 7, 10, 13, 14, 15, 16)),
    None, "utf-8", "koi8-r", "koi8-u",
    "utf-7", "utf-16", "utf-16le", "utf-32", "hz-gb-2312", "iso-2022-jp", "iso-2022-kr",
    "euc-jp", "cp500", "ibm037", "shift_jis"])
def test_ascii_transparent_codecs_read_any_ascii_as_ascii(label: str | None) -> None:
    name = codec_name(label)
    if not ascii_transparent(name):
        return
    for data in _ASCII_RUNS:
        assert data.decode(name) == data.decode("ascii")


@pytest.mark.parametrize("label", ["utf-7", "utf-16", "utf-32", "hz-gb-2312", "iso-2022-jp",
                                   "cp500"])
def test_stateful_and_non_ascii_codecs_are_not_ascii_transparent(label: str) -> None:
    assert not ascii_transparent(codec_name(label))



_SOME_CODECS = sorted({codec_name(label) for label in (
    None, "utf-8", "iso-8859-1", "iso-8859-2", "windows-1251", "koi8-r", "shift_jis",
    "utf-16", "utf-7", "hz-gb-2312", "cp500")})


def _outcome(call: Callable[..., object], *args: object) -> object:
    try:
        return call(*args)
    except UnicodeError as exc:
        return type(exc)


@given(st.sampled_from(_SOME_CODECS), st.text(alphabet=st.characters(max_codepoint=0x3000)))
def test_encode_text_is_str_encode(codec: str, text: str) -> None:
    assert _outcome(encode_text, text, codec) == _outcome(str.encode, text, codec)


@given(st.sampled_from(_SOME_CODECS), st.binary() | st.text(max_size=40).map(str.encode))
def test_decode_bytes_is_bytes_decode(codec: str, data: bytes) -> None:
    assert _outcome(decode_bytes, data, codec) == _outcome(bytes.decode, data, codec)
