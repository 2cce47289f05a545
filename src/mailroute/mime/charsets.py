"""MIME charset labels to Python codecs: for reading, as mail clients read them.

Every mail client decodes text with the WHATWG Encoding Standard's label table: a body
labelled ``iso-8859-1`` or ``us-ascii`` is read as windows-1252, ``iso-8859-9`` as
windows-1254, ``tis-620`` as windows-874, ``gb2312`` as GBK, ``ks_c_5601-1987`` and
``euc-kr`` as windows-949, ``big5`` as Big5-HKSCS, ``shift_jis`` as windows-31J. Reading
bytes 0x80-0x9F of a Windows-punctuated ``iso-8859-1`` body as C1 controls would turn
"quotes" into invisible characters as soon as the text is written back in another charset.

:func:`codec_name` is the codec to *decode* with (WHATWG's); :func:`label_codec_name` is the
codec the label itself names, to *encode* with: text is only written under a label when the
label's own charset can carry it, otherwise the part is relabelled (UTF-8).

The windows-125x and windows-874 codecs here are Python's with the bytes Python leaves
undefined in 0x80-0x9F mapped to the C1 control of the same number, as WHATWG's indexes do,
so that decoding them never fails where clients display something.
"""

from __future__ import annotations

import codecs
import functools
import importlib
import re
from typing import TYPE_CHECKING

from mailroute.errors import MalformedMessageError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # typeshed's; collections.abc.Buffer is 3.12+

__all__ = ["ascii_transparent", "codec_name", "decode_bytes", "encode_text", "is_ascii_label",
           "label_codec_name"]

_WINDOWS = ("cp874", "cp1250", "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256",
            "cp1257", "cp1258")
_PREFIX = "mailroute_whatwg_"

# WHATWG labels (lower case) whose encoding is not the one Python gives the label.
_LABELS: dict[str, str] = {
    **dict.fromkeys((
        "ansi_x3.4-1968", "ascii", "cp1252", "cp819", "csisolatin1", "ibm819", "iso-8859-1",
        "iso-ir-100", "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1",
        "latin1", "us-ascii", "windows-1252", "x-cp1252",
    ), "cp1252"),
    **dict.fromkeys((
        "cp1254", "csisolatin5", "iso-8859-9", "iso-ir-148", "iso8859-9", "iso88599",
        "iso_8859-9", "iso_8859-9:1989", "l5", "latin5", "windows-1254", "x-cp1254",
    ), "cp1254"),
    **dict.fromkeys((
        "dos-874", "iso-8859-11", "iso8859-11", "iso885911", "tis-620", "windows-874",
    ), "cp874"),
    **dict.fromkeys((
        "chinese", "csgb2312", "csiso58gb231280", "gb2312", "gb_2312", "gb_2312-80", "gbk",
        "iso-ir-58", "x-gbk",
    ), "gbk"),
    **dict.fromkeys((
        "cseuckr", "csksc56011987", "euc-kr", "iso-ir-149", "korean", "ks_c_5601-1987",
        "ks_c_5601-1989", "ksc5601", "ksc_5601", "windows-949",
    ), "cp949"),
    **dict.fromkeys(("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"), "big5hkscs"),
    **dict.fromkeys((
        "csshiftjis", "ms932", "ms_kanji", "shift-jis", "shift_jis", "sjis", "windows-31j",
        "x-sjis",
    ), "cp932"),
    **dict.fromkeys(("csiso88598i", "iso-8859-8-i", "logical"), "iso8859_8"),
    **dict.fromkeys(("csmacintosh", "mac", "macintosh", "x-mac-roman"), "mac_roman"),
    **dict.fromkeys(("x-mac-cyrillic", "x-mac-ukrainian"), "mac_cyrillic"),
    **{f"x-cp{n}": f"cp{n}" for n in range(1250, 1259)},
}
# Python's names for the same charsets under labels the table does not list (its aliases).
_BY_CODEC = {"ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254",
             "tis-620": "cp874", "iso8859-11": "cp874", "gb2312": "gbk", "euc_kr": "cp949",
             "big5": "big5hkscs", "shift_jis": "cp932"}


def _whatwg_codec(base: str) -> codecs.CodecInfo:
    """Python's ``base`` charmap codec with its undefined 0x80-0x9F bytes as C1 controls."""
    module = importlib.import_module(f"encodings.{base}")
    table = "".join(chr(i) if c == "\ufffe" and 0x80 <= i <= 0x9F else c
                    for i, c in enumerate(module.decoding_table))
    encoding_table = codecs.charmap_build(table)
    # ASCII maps to itself in every one of these: ASCII text (most mail) goes through the
    # ascii codec, several times faster than a charmap
    ascii_safe = all(table[i] == chr(i) for i in range(128))

    def encode(text: str, errors: str = "strict", /) -> tuple[bytes, int]:
        if ascii_safe and text.isascii():
            return text.encode("ascii"), len(text)
        return codecs.charmap_encode(text, errors, encoding_table)

    def decode(data: Buffer, errors: str = "strict", /) -> tuple[str, int]:
        if ascii_safe:
            # bytes.decode() hands a codec a memoryview, which has no isascii(): a copy of
            # the bytes is cheaper than the charmap
            raw = data if isinstance(data, bytes | bytearray) else bytes(data)
            if raw.isascii():
                return raw.decode("ascii"), len(raw)
        return codecs.charmap_decode(data, errors, table)

    return codecs.CodecInfo(encode, decode, name=_PREFIX + base)


_CODECS: dict[str, codecs.CodecInfo] = {}


def _search(name: str) -> codecs.CodecInfo | None:
    if not name.startswith(_PREFIX) or name[len(_PREFIX):] not in _WINDOWS:
        return None
    if name not in _CODECS:
        _CODECS[name] = _whatwg_codec(name[len(_PREFIX):])
    return _CODECS[name]


codecs.register(_search)


def _lookup(label: str) -> codecs.CodecInfo:
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError) as exc:  # ValueError: a NUL in the label
        raise MalformedMessageError("unknown charset") from exc
    # Python also registers bytes-to-bytes codecs (base64, zlib, hex) and text codecs that
    # are no charsets: escape decoders that rewrite the text, and codecs that only raise.
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        raise MalformedMessageError("unknown charset")
    return info


_NOT_CHARSETS = frozenset({"punycode", "idna", "raw-unicode-escape", "unicode-escape",
                           "undefined", "charmap"})


def _label(charset: str | None) -> str:
    return (charset or "us-ascii").strip().lower()


# Labels come from messages: the caches of the label lookups are bounded.
_CACHED_LABELS = 256


@functools.lru_cache(maxsize=_CACHED_LABELS)
def label_codec_name(charset: str | None) -> str:
    """The Python codec of the charset a label names (``us-ascii`` when absent): the codec
    to encode text with when it keeps that label.

    Raises:
        MalformedMessageError: Python has no codec for the label.
    """
    label = _label(charset)
    if label in _LABELS:
        try:
            return _lookup(label).name
        except MalformedMessageError:  # a WHATWG label Python lacks (windows-874, x-gbk ...)
            return _lookup(_LABELS[label]).name
    return _lookup(label).name


@functools.lru_cache(maxsize=_CACHED_LABELS)
def codec_name(charset: str | None) -> str:
    """The Python codec to decode text labelled ``charset`` with, as clients do (WHATWG
    label table; ``us-ascii`` when absent).

    Raises:
        MalformedMessageError: Python has no codec for the label.
    """
    label = _label(charset)
    base = _LABELS.get(label)
    if base is None:
        name = _lookup(label).name
        base = _BY_CODEC.get(name, name)
    if base in _WINDOWS:
        return _PREFIX + base
    return _lookup(base).name


def is_ascii_label(charset: str | None) -> bool:
    """True for an absent charset and the labels of US-ASCII."""
    try:
        return label_codec_name(charset) == "ascii"
    except MalformedMessageError:
        return False


# Stateless codecs (the names codec_name gives) that map each ASCII byte to itself.
_ASCII_TRANSPARENT = re.compile(rf"(?:ascii|utf-8|iso8859-\d+|koi8-[ru]|{_PREFIX}cp\d+)\Z")


@functools.lru_cache(maxsize=_CACHED_LABELS)
def ascii_transparent(codec: str) -> bool:
    """True when ``codec`` reads any ASCII bytes as ASCII does (and writes ASCII text as
    ASCII does), so that ASCII can go through the ``ascii`` codec (at C speed) instead."""
    return _ASCII_TRANSPARENT.match(codec) is not None


def encode_text(text: str, codec: str) -> bytes:
    """``text.encode(codec)`` (strict), without the codec call for ASCII text in an
    ASCII-transparent codec."""
    return text.encode("ascii" if text.isascii() and ascii_transparent(codec) else codec)


def decode_bytes(data: bytes, codec: str, *, is_ascii: bool | None = None) -> str:
    """``data.decode(codec)`` (strict), without the codec call for ASCII data in an
    ASCII-transparent codec. ``is_ascii`` is ``data.isascii()`` when the caller knows it."""
    if is_ascii is None:
        is_ascii = data.isascii()
    return data.decode("ascii" if is_ascii and ascii_transparent(codec) else codec)
