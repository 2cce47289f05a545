"""Windows punctuation in bodies labelled iso-8859-1 or us-ascii (what every client shows as
windows-1252) survives a disclaimer: never turned into C1 controls, bytes rewritten only where
the footer forces it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute.mime import parse
from tests.disclaimer.conftest import LATIN, WIDE, make_filter
from tests.disclaimer.helpers import body_texts, run

HEAD = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
QP_LATIN1 = (HEAD + b"Content-Type: text/plain; charset=iso-8859-1\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
             b"=93hello=94 =96 caf=E9\r\n")
EIGHT_BIT_ASCII = (HEAD + b"Content-Type: text/plain; charset=us-ascii\r\n"
                   b"Content-Transfer-Encoding: 8bit\r\n\r\n\x93hello\x94 \x96\r\n")


def test_utf8_footer_turns_windows_punctuation_into_its_characters(tmp_path: Path) -> None:
    out = run(make_filter(tmp_path, html=None, var=[f"greeting={WIDE}"]), QP_LATIN1).data
    assert out is not None
    root = parse(out).root
    assert root.charset == "utf-8"
    body = root.body_bytes()
    assert b"=E2=80=9Chello=E2=80=9D =E2=80=93 caf=C3=A9" in body
    assert b"=C2=93" not in body
    assert b"=C2=94" not in body
    assert body_texts(out)[0][1].startswith("\u201chello\u201d \u2013 caf\u00e9\n")


def test_footer_that_fits_latin1_keeps_the_bytes(tmp_path: Path) -> None:
    out = run(make_filter(tmp_path, html=None, var=[f"greeting={LATIN}"]), QP_LATIN1).data
    assert out is not None
    root = parse(out).root
    assert root.charset == "iso-8859-1"
    assert root.body_bytes().startswith(b"=93hello=94 =96 caf=E9\r\n")  # untouched
    assert b"Gr=FC=DFe" in root.body_bytes()  # the footer, in latin-1


@pytest.mark.parametrize("greeting", [LATIN, WIDE])
def test_us_ascii_label_with_windows_bytes(tmp_path: Path, greeting: str) -> None:
    out = run(make_filter(tmp_path, html=None, var=[f"greeting={greeting}"]),
              EIGHT_BIT_ASCII).data
    assert out is not None
    root = parse(out).root
    assert root.charset == "utf-8"  # the footer is not ASCII: the label must change
    assert body_texts(out)[0][1].startswith("\u201chello\u201d \u2013\n")
    assert "\u0093" not in out.decode("utf-8", "replace")


def test_utf8_mislabelled_as_ascii_is_still_read_as_utf8(tmp_path: Path) -> None:
    data = (HEAD + b"Content-Type: text/plain; charset=us-ascii\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße\r\n".encode())
    out = run(make_filter(tmp_path, html=None, var=[f"greeting={WIDE}"]), data).data
    assert out is not None
    assert body_texts(out)[0][1].startswith("Grüße\n")
