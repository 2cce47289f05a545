"""Real-world messages whose text is windows-1252 (Thunderbird's fixtures,
tests/realmail/README.md): one 8-bit without a charset, one from IncrediMail labelled
iso-8859-1; their typographic quotes and dashes survive a disclaimer."""

from __future__ import annotations

from pathlib import Path

from mailroute import Pipeline
from mailroute.mime import parse
from tests.disclaimer.conftest import LATIN, WIDE, make_filter
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


# IncrediMail (a Windows client) labels its parts iso-8859-1 and writes the en dash as the
# windows-1252 byte 0x96 (Thunderbird's fixture, tests/realmail/README.md)
INCREDIMAIL = Path(__file__).parent / "charset" / "incredimail-iso-8859-1-en-dash.eml"
EN_DASH = "E-Mail-Animationen \u2013 von IncrediMail"


def test_incredimail_is_passed_byte_for_byte_by_an_empty_policy() -> None:
    raw = INCREDIMAIL.read_bytes()
    assert Pipeline(filters=()).process(raw).data == raw


def test_incredimail_en_dash_becomes_its_character_under_a_utf8_footer(tmp_path: Path) -> None:
    raw = INCREDIMAIL.read_bytes()
    assert b"Animationen =96 von" in raw
    assert b'charset="iso-8859-1"' in raw
    out = run(make_filter(tmp_path, var=[f"greeting={WIDE}"]), raw).data
    assert out is not None
    charsets = {p.mime_type: p.charset for _, p in parse(out).walk()
                if p.mime_type.startswith("text/")}
    assert charsets == {"text/plain": "utf-8", "text/html": "utf-8"}
    texts = dict(body_texts(out))
    assert EN_DASH in texts["text/html"]
    assert "\x96" not in texts["text/html"]
    assert "Ku\u00df!" in texts["text/plain"]
    assert all(WIDE in text for text in texts.values())


def test_incredimail_keeps_its_bytes_under_a_latin1_footer(tmp_path: Path) -> None:
    raw = INCREDIMAIL.read_bytes()
    out = run(make_filter(tmp_path, var=[f"greeting={LATIN}"]), raw).data
    assert out is not None
    assert {p.charset for _, p in parse(out).walk() if p.mime_type.startswith("text/")} == {
        "iso-8859-1"}
    assert b"Animationen =96 von" in out  # not rewritten where the footer does not force it
    assert all(LATIN in text for _, text in body_texts(out))
