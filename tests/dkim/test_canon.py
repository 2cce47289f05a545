"""mailroute's C-speed canonicalization equals dkimpy's line-by-line one on what goes on the
wire (every line, the last one included, ends with CRLF there)."""

from __future__ import annotations

from dkim.canonicalization import Relaxed, Simple
from hypothesis import given
from hypothesis import strategies as st

from mailroute.dkim import canon

lines = st.lists(st.text(alphabet=" \ta.b", max_size=8), max_size=8)


@given(lines, st.sampled_from(["\r\n", "\n"]), st.booleans())
def test_body_canonicalization_matches_dkimpy(parts: list[str], newline: str,
                                              last_newline: bool) -> None:
    text = newline.join(parts) + (newline if last_newline else "")
    data = text.encode()
    wire = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if wire and not wire.endswith(b"\r\n"):
        wire += b"\r\n"  # SMTP ends DATA with CRLF: a receiver hashes the line terminated
    assert canon.body(data, relaxed=True) == Relaxed.canonicalize_body(wire)
    assert canon.body(data, relaxed=False) == Simple.canonicalize_body(wire)


@given(st.text(alphabet=" \tab:", min_size=0, max_size=12),
       st.lists(st.text(alphabet=" \tab", max_size=6), max_size=3))
def test_header_canonicalization_matches_dkimpy(first: str, continuations: list[str]) -> None:
    value = first + "".join(f"\r\n {c}" for c in continuations)
    raw = f"Sub-Ject:{value}\r\n".encode()
    name, _, rest = raw[:-2].partition(b":")
    theirs = Relaxed.canonicalize_headers([(name, rest)])
    assert canon.header(raw, relaxed=True) == theirs[0][0] + b":" + theirs[0][1]
    assert canon.header(raw.replace(b"\r\n", b"\n"), relaxed=False) == raw
