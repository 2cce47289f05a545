"""A real-world 8-bit message without a charset whose text is windows-1252 (Thunderbird's
fixture, tests/realmail/README.md): its typographic quotes survive a disclaimer."""

from __future__ import annotations

from pathlib import Path

from mailroute.mime import parse
from tests.disclaimer.conftest import WIDE, make_filter
from tests.disclaimer.helpers import body_texts, run

DEFECTIVE = Path(__file__).parent / "charset" / "defective-charset.eml"


def test_windows_quotes_become_their_characters_under_a_utf8_footer(tmp_path: Path) -> None:
    raw = DEFECTIVE.read_bytes()
    assert b"\x93desgracias\x94" in raw
    out = run(make_filter(tmp_path, html=None, var=[f"greeting={WIDE}"]), raw).data
    assert out is not None
    assert parse(out).root.charset == "utf-8"
    text = body_texts(out)[0][1]
    assert "\u201cdesgracias\u201d" in text
    assert "más" in text
    assert "\x93" not in text
    assert WIDE in text


def test_an_ascii_footer_leaves_every_byte_of_the_text(tmp_path: Path) -> None:
    raw = DEFECTIVE.read_bytes()
    out = run(make_filter(tmp_path, html=None, var=["greeting=Regards"]), raw).data
    assert out is not None
    head, _, body = raw.partition(b"\r\n\r\n")
    assert out.startswith(head)
    assert body.rstrip(b"\r\n") in out
    assert b"mailroute-disclaimer-v1\r\nRegards" in out  # inserted, not skipped
