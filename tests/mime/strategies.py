"""Hypothesis strategies that write MIME messages as bytes (not through the stdlib)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from hypothesis import strategies as st

NEWLINES = st.sampled_from([b"\r\n", b"\n"])
# RFC 2046 bchars, without "-" so that no generated boundary extends another
_WORD = st.text(alphabet="abcxyzABC0189'()+_,./:=?", min_size=1, max_size=12)
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=200)


@dataclass(frozen=True)
class Built:
    """A generated message and how many leaves it has."""

    data: bytes
    leaves: int


@st.composite
def newline_for(draw: st.DrawFn, mixed: bool) -> bytes:
    """A line ending; with ``mixed`` a new draw for every line."""
    return draw(NEWLINES) if mixed else b"\r\n"


@st.composite
def header_field(draw: st.DrawFn, name: str, value: str, nl: bytes, fold: bool) -> bytes:
    """``name: value`` optionally folded at a space, with odd spacing kept."""
    spacing = draw(st.sampled_from([b" ", b"  ", b"\t", b""]))
    raw = value.encode("ascii")
    if fold and b" " in raw:
        cut = raw.index(b" ")
        raw = raw[:cut] + nl + draw(st.sampled_from([b" ", b"\t", b"   "])) + raw[cut + 1:]
    return name.encode("ascii") + b":" + spacing + raw + nl


@st.composite
def leaf(draw: st.DrawFn, nl: bytes) -> tuple[list[bytes], bytes]:
    """Header lines and body of a leaf in one of the transfer encodings."""
    text = draw(_TEXT)
    encoding = draw(st.sampled_from(["7bit", "8bit", "quoted-printable", "base64", None]))
    data = text.encode("utf-8")
    if encoding == "base64":
        body = nl.join(base64.encodebytes(data).splitlines()) + nl
    elif encoding == "quoted-printable":
        body = binascii.b2a_qp(data, istext=True).replace(b"\n", nl)
    else:
        body = text.encode("ascii", "ignore").replace(b"\n", nl)
    headers = [draw(header_field("Content-Type", "text/plain; charset=utf-8", nl,
                                 draw(st.booleans())))]
    if encoding:
        headers.append(b"Content-Transfer-Encoding: " + encoding.encode() + nl)
    return headers, body


@st.composite
def entity(draw: st.DrawFn, depth: int, nl: bytes, counter: list[int]) -> bytes:
    """A leaf or a multipart of entities, written bottom-up without recursion limits."""
    if depth <= 0 or not draw(st.booleans()):
        headers, body = draw(leaf(nl))
        counter[0] += 1
        return b"".join(headers) + nl + body
    boundary = f"b{depth}_{draw(_WORD)}".encode("ascii")
    children = [draw(entity(depth - 1, nl, counter))
                for _ in range(draw(st.integers(1, 3)))]
    preamble = draw(st.sampled_from([b"", b"This is a multi-part message." + nl, nl]))
    epilogue = draw(st.sampled_from([b"", nl, b"epilogue" + nl]))
    padding = draw(st.sampled_from([b"", b" ", b"\t "]))
    subtype = draw(st.sampled_from(["mixed", "alternative", "related", "signed"]))
    head = draw(header_field("Content-Type",
                             f'multipart/{subtype}; boundary="{boundary.decode()}"', nl,
                             draw(st.booleans())))
    body = preamble
    for child in children:
        body += (nl if body else b"") + b"--" + boundary + padding + nl + child
    body += nl + b"--" + boundary + b"--" + padding + nl + epilogue
    return head + nl + body


@st.composite
def messages(draw: st.DrawFn) -> Built:
    """A whole message: top-level fields, then an entity up to four levels deep."""
    nl = draw(NEWLINES)
    counter = [0]
    top = [draw(header_field("From", "Alice Example <alice@example.net>", nl, False)),
           draw(header_field("Subject", draw(st.sampled_from(
               ["hello", "a rather long subject line that will be folded here"])), nl,
               draw(st.booleans()))),
           b"MIME-Version: 1.0" + nl]
    body = draw(entity(4, nl, counter))
    data = b"".join(top) + body
    if draw(st.booleans()):
        # mixed endings in the body: turn some LF-only line ends into CRLF or back
        data = data.replace(b"\r\n", b"\n", draw(st.integers(0, 3)))
    return Built(data, counter[0])
