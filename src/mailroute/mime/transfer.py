"""Content-Transfer-Encoding: decoding leaves on demand, encoding new bodies."""

from __future__ import annotations

import binascii
import io
import re

from mailroute.errors import MalformedMessageError
from mailroute.mime.defects import DefectKind
from mailroute.mime.part import LeafBody, Part
from mailroute.patterns import on_first_use
from mailroute.records import record

__all__ = ["Decoded", "choose_encoding", "decode_payload", "encode_payload", "long_line"]

_NOT_BASE64_ALPHABET = bytes(
    set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"))
_LINE_SLICE = 65_536
_RUNS = {limit: re.compile(rb"(?:\A|(?<=[\r\n]))[^\r\n]{%d}" % (limit + 1))
         for limit in (76, 998)}


def long_line(data: bytes, limit: int = 998, start: int = 0, end: int | None = None) -> bool:
    """True when ``data[start:end]`` (``start`` at a line start) has a line longer than
    ``limit`` (76 or 998) bytes, line breaks CR, LF or CRLF.

    Read in slices cut at line breaks, each split at C speed (a regex run of ``limit + 1``
    bytes is tried at every offset: 10 ms for 3 KB of long lines; one list of every line
    held 4 GB for 48 MB of short ones); the regex only confirms a slice that has a long piece.
    """
    end = len(data) if end is None else end
    if end - start <= limit:
        return False
    position = start
    while position < end:
        window = min(position + _LINE_SLICE, end)
        cut = data.find(b"\n", window, end)
        stop = end if cut < 0 else cut + 1
        line_end = end if cut < 0 else cut - (cut > window and data[cut - 1] == 0x0D)
        if line_end - window > limit and data.find(b"\r", window, line_end) < 0:
            return True  # no line break for more than ``limit`` bytes: not copied to be sure
        chunk = data[position:stop]
        if (len(chunk) > limit and max(map(len, chunk.split(b"\n"))) > limit
                and _RUNS[limit].search(chunk)):
            return True
        position = stop
    return False
IDENTITY = frozenset({"7bit", "8bit", "binary"})


@record(frozen=True)
class Decoded:
    """A decoded leaf payload and what was odd about its encoding."""

    data: bytes
    defects: tuple[DefectKind, ...] = ()


def decode_payload(part: Part) -> Decoded:
    """Undo the transfer encoding of a leaf.

    Raises:
        MalformedMessageError: the part is a multipart or its encoding is unknown.
    """
    if not isinstance(part.body, LeafBody):
        raise MalformedMessageError("cannot decode the payload of a multipart")
    raw = part.body.span.to_bytes()
    encoding = part.transfer_encoding
    if encoding in IDENTITY:
        return Decoded(raw)
    if encoding == "quoted-printable":
        return Decoded(binascii.a2b_qp(raw))
    if encoding == "base64":
        # Line breaks and blanks are legal between base64 lines; bytes.translate drops them
        # at C speed (a regex over a 39 MB body took 0.3 s). Anything else left over makes
        # the strict decode fail, and the body is then decoded leniently with a defect.
        compact = raw.translate(None, b"\r\n \t")
        del raw
        try:
            return Decoded(binascii.a2b_base64(compact, strict_mode=True))
        except binascii.Error:
            pass
        clean = compact.translate(None, _NOT_BASE64_ALPHABET)
        del compact  # the copies of a large body are dropped as soon as they are read
        return Decoded(_lenient_base64(clean), (DefectKind.INVALID_BASE64,))
    raise MalformedMessageError("unknown Content-Transfer-Encoding")


def _lenient_base64(clean: bytes) -> bytes:
    """Decode ``clean`` (base64 characters only, of any length, no padding).

    ``bytes.translate`` dropped the junk in one C pass (a regex substitution built one string
    per junk run: 4.25 GB for a 48 MB body). A last group of one character carries no whole
    byte; one of two or three is decoded on its own with its padding, so the bulk is decoded
    from a view of ``clean``, without a padded copy.
    """
    rest = len(clean) % 4
    whole = len(clean) - rest
    tail = binascii.a2b_base64(clean[whole:] + b"=" * (4 - rest)) if rest > 1 else b""
    with memoryview(clean) as view:
        decoded = binascii.a2b_base64(view[:whole])
    return decoded + tail if tail else decoded


def _normal_breaks(data: bytes) -> bytes:
    """``data`` with CRLF and CR line breaks as LF (two C passes, no list of lines)."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in data else data


def encode_payload(data: bytes, encoding: str, newline: bytes, *,
                   prefix: bytes | memoryview = b"") -> bytes:
    """Apply ``encoding`` to ``data``; text line breaks become ``newline``.

    Base64 output ends with a line break; other encodings keep the text's own ending.
    ``prefix`` (already encoded) is written before the result, in the same buffer.
    """
    if encoding == "base64":
        return _encode_base64(data, newline, prefix)
    if encoding == "quoted-printable":
        return _encode_qp(data, newline, prefix)
    normal = _normal_breaks(data)
    if encoding in IDENTITY:
        body = normal.replace(b"\n", newline)
        return b"".join((prefix, body)) if prefix else body
    raise ValueError(f"cannot encode with {encoding!r}")


_BASE64_SLICE = 57 * 1024  # whole 76-character lines


def _encode_base64(data: bytes, newline: bytes, prefix: bytes | memoryview) -> bytes:
    """Lines of 76 characters, written a slice at a time into one buffer: the encoded body
    is held once (a list of every line took 1.5x its size again, then a join another copy)."""
    out = io.BytesIO()
    out.write(prefix)
    if not data:
        out.write(newline)
    with memoryview(data) as view:
        for start in range(0, len(data), _BASE64_SLICE):
            encoded = binascii.b2a_base64(view[start:start + _BASE64_SLICE], newline=False)
            out.write(newline.join([encoded[i:i + 76] for i in range(0, len(encoded), 76)]))
            out.write(newline)
    return out.getvalue()


def _encode_qp(data: bytes, newline: bytes, prefix: bytes | memoryview) -> bytes:
    """Quoted-printable of ``data``, its line breaks made LF and encoded a slice at a time.

    Slices end after a line break; a line longer than a slice (one 20 MB line is legal in
    8bit, never in quoted-printable) is cut at a character boundary with a soft break. The
    encoded body is held once (the whole-body passes held it four times more).
    """
    out = io.BytesIO()
    out.write(prefix)
    position, size = 0, len(data)
    while position < size:
        end = position + _QP_SLICE
        soft = False
        if end >= size:
            end = size
        else:
            cut = max(data.rfind(b"\n", position, end), data.rfind(b"\r", position, end - 1))
            if cut >= 0:
                end = cut + 1
            else:  # a line longer than the slice: cut it, never inside a UTF-8 character
                while 0x80 <= data[end] < 0xC0 and end > position + _QP_SLICE - 4:
                    end -= 1
                soft = True
        encoded = binascii.b2a_qp(_normal_breaks(data[position:end]), istext=True)
        if _CUT().search(encoded) or long_line(encoded, _QP_LINE):
            encoded = _rebreak_qp(encoded.replace(b"=\n", b""))
        out.write(encoded.replace(b"\n", newline))
        if soft:
            out.write(b"=" + newline)
        position = end
    return out.getvalue()


_QP_LINE = 76
_QP_SLICE = 65_536
# binascii cut a UTF-8 character at a soft break (a literal search, fast), or wrote a
# 77-character line (it does when it encodes a trailing blank): then the lines are broken
# again in Python.
_CUT = on_first_use(rb"=\n=[89AB]")
_CONTINUATION = frozenset(b"89AB")


def _qp_pieces(line: bytes) -> list[bytes]:
    """One encoded line in pieces of at most 76 characters with their soft break.

    binascii breaks at a fixed column, which can cut a UTF-8 character in two (``=C3=`` /
    ``=96``): legal quoted-printable, but decoders that work line by line garble it. A piece
    never ends inside an ``=XX`` escape nor before an escaped UTF-8 continuation byte.
    """
    pieces = []
    start, size = 0, len(line)
    while size - start > _QP_LINE:
        cut = start + _QP_LINE - 1  # room for the "=" of the soft break
        if line[cut - 1] == 0x3D:  # "=" : do not cut "=XX"
            cut -= 1
        elif line[cut - 2] == 0x3D:
            cut -= 2
        for _ in range(3):  # a UTF-8 sequence has at most three continuation bytes
            if line[cut] == 0x3D and line[cut + 1] in _CONTINUATION \
                    and line[cut - 3] == 0x3D and cut - 3 > start:
                cut -= 3
            else:
                break
        pieces.append(line[start:cut])
        start = cut
    pieces.append(line[start:])
    return pieces


def _rebreak_qp(logical: bytes) -> bytes:
    """Quoted-printable lines without soft breaks broken again (:func:`_qp_pieces`), a slice
    of lines at a time so that no list holds every line of a large body."""
    out: list[bytes] = []
    position, size = 0, len(logical)
    while position < size:
        cut = logical.find(b"\n", position + _QP_SLICE)
        end = size if cut < 0 else cut + 1
        lines = logical[position:end].split(b"\n")
        out.append(b"\n".join(b"=\n".join(_qp_pieces(line)) for line in lines))
        position = end
    return b"".join(out)


def choose_encoding(data: bytes, original: str) -> str:
    """Keep ``original`` where it can carry ``data``, else the narrowest that can."""
    if original in ("base64", "quoted-printable"):
        return original
    if not long_line(data) and b"\0" not in data:
        if data.isascii():
            return original if original in IDENTITY else "7bit"
        if original in ("8bit", "binary"):
            return original
    return "quoted-printable"
