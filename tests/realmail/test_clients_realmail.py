"""Outlook, Apple Mail, iPhone and Gmail output (tests/realmail/README.md): an empty policy
passes each byte for byte, a disclaimer lands once in every body a reader shows, and what a
reader could take two ways is left as it came."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute import Pipeline
from mailroute.mime import DefectKind, parse
from tests.disclaimer.conftest import LATIN, WIDE, make_filter
from tests.disclaimer.helpers import MARKER, body_texts, run, stdlib

CLIENTS = Path(__file__).parent / "clients"
SMIME = Path(__file__).parent / "smime"
SIGNED_LF = [SMIME / "thunderbird24-startcom-signed-lf.eml",
             SMIME / "outlook-outlookcom-opaque-signed-lf.eml",
             SMIME / "outlook-exchange-multipart-signed-lf.eml"]

# every text/plain or text/html body the stdlib shows inline gets one footer
BODIES = {
    "outlook2000-mixed-alternative.eml": 2,
    "outlook2000-related-alternative.eml": 2,
    "apple-mail-plain.eml": 1,
    "iphone-mail-attachment.eml": 1,
    "gmail-alternative-qp.eml": 2,
    "gmail-forward-iso-8859-1.eml": 1,
}


def _all() -> list[Path]:
    return [*sorted(CLIENTS.glob("*.eml")), *SIGNED_LF]


def test_every_sample_is_in_a_test_below() -> None:
    named = {*BODIES, "exchange-online-unfolded-header.eml", "apple-mail-smime-signed.eml"}
    assert {p.name for p in CLIENTS.glob("*.eml")} == named


@pytest.mark.parametrize("path", _all(), ids=lambda p: p.name)
def test_empty_policy_passes_the_client_message_byte_for_byte(path: Path) -> None:
    raw = path.read_bytes()
    result = Pipeline(filters=()).process(raw)
    assert result.action == "accept"
    assert result.data == raw


@pytest.mark.parametrize(("name", "bodies"), sorted(BODIES.items()))
def test_disclaimer_lands_once_in_every_body(tmp_path: Path, name: str, bodies: int) -> None:
    raw = (CLIENTS / name).read_bytes()
    before = body_texts(raw)
    disclaimer = make_filter(tmp_path, var=[f"greeting={WIDE}"])
    out = run(disclaimer, raw).data
    assert out is not None
    assert run(disclaimer, out).data == out  # a second pass finds it and adds nothing
    after = body_texts(out)
    with_footer = [text for _, text in after if MARKER in text]
    assert len(with_footer) == bodies
    assert all(text.count(MARKER) == 1 for text in with_footer)
    # the text the client wrote is still there in each of them
    for (_, old), (_, new) in zip(before, after, strict=False):
        assert old.strip()[:40] in new


@pytest.mark.parametrize("name", ["outlook2000-mixed-alternative.eml",
                                  "gmail-forward-iso-8859-1.eml"])
def test_a_latin1_footer_keeps_the_outlook_and_gmail_charset(tmp_path: Path, name: str) -> None:
    raw = (CLIENTS / name).read_bytes()
    out = run(make_filter(tmp_path, var=[f"greeting={LATIN}"]), raw).data
    assert out is not None
    charsets = {p.charset for _, p in parse(out).walk() if p.mime_type == "text/plain"}
    assert charsets == {"iso-8859-1"}
    assert any(LATIN in text for _, text in body_texts(out))


def test_apple_mail_signed_entity_is_wrapped_never_changed(tmp_path: Path) -> None:
    raw = (CLIENTS / "apple-mail-smime-signed.eml").read_bytes()
    signed = parse(raw).root
    assert signed.mime_type == "multipart/signed"
    out = run(make_filter(tmp_path, var=[f"greeting={WIDE}"]), raw).data
    assert out is not None
    root = parse(out).root
    assert root.mime_type == "multipart/mixed"
    assert root.children[0].body_bytes() == signed.body_bytes()
    assert [MARKER in text for _, text in body_texts(out)][-1]


def test_exchange_header_without_folding_is_left_alone(tmp_path: Path) -> None:
    # Exchange broke a long header value over two lines without the leading white space.
    # A reader may end the header block at that line (Python's email and mailroute do: every
    # later field, Content-Type included, becomes body) or skip the stray line and read on,
    # so the structure is in doubt and the disclaimer makes no edit at all.
    raw = (CLIENTS / "exchange-online-unfolded-header.eml").read_bytes()
    message = parse(raw)
    assert DefectKind.MISSING_HEADER_SEPARATOR in {d.kind for d in message.defects}
    assert not message.structurally_sound()
    assert stdlib(raw).get_content_type() == "text/plain"  # the multipart/alternative is lost
    out = run(make_filter(tmp_path, var=[f"greeting={WIDE}"]), raw).data
    assert out == raw
