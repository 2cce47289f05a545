"""L1: a message whose header block is not followed by a blank line (it ends in the header)
got the disclaimer straight after its last field, so a template value ``Bcc: victim@...``
became a real ``Bcc:`` field (or, with no final line break, part of the Subject).

Decision: such a message has an empty body (RFC 5322 makes the body optional), so the
disclaimer goes into that body: the edit adds the blank line, after ending the last header
line when it had no line break. The header fields are otherwise left as they were.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailroute.mime import make_field, parse
from mailroute.mime.headers import HeaderBlock, HeaderField

HEADER = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi"


def _disclaimer(tmp_path: Path, message: bytes, position: str) -> bytes:
    template = tmp_path / "d.txt"
    template.write_text("{{note}}\n")
    done = subprocess.run([sys.executable, "-m", "mailroute", "disclaimer", "--text",
                           str(template), "--var", "note=Bcc: victim@example.org",
                           "--position", position], input=message, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("position", ["bottom", "top"])
@pytest.mark.parametrize("newline", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("final_break", [True, False], ids=["ends-in-break", "no-final-break"])
def test_a_template_value_never_becomes_a_header_field(tmp_path: Path, position: str,
                                                       newline: bytes,
                                                       final_break: bool) -> None:
    header = HEADER.replace(b"\r\n", newline)
    out = _disclaimer(tmp_path, header + (newline if final_break else b""), position)
    expected = header + newline + newline + b"Bcc: victim@example.org" + newline
    assert out.startswith(expected)
    message = parse(out)
    assert [f.name for f in message.headers] == ["From", "To", "Subject"]
    assert message.headers.value("Subject") == "hi"
    assert b"Bcc: victim@example.org" in message.root.body_bytes()


def test_a_field_added_after_an_unended_last_line_gets_its_own_line() -> None:
    block = HeaderBlock((HeaderField(b"Subject: hi", "Subject"),))
    field = make_field("Content-Transfer-Encoding", "base64")
    assert block.added(field, position="bottom").to_bytes() == (
        b"Subject: hi\r\nContent-Transfer-Encoding: base64\r\n")
    assert block.replaced("Content-Transfer-Encoding", field).to_bytes() == (
        b"Subject: hi\r\nContent-Transfer-Encoding: base64\r\n")
    assert block.added(field, position="top").to_bytes() == (
        b"Content-Transfer-Encoding: base64\r\nSubject: hi")


def test_replace_text_adds_the_separator() -> None:
    message = parse(b"Subject: hi\nContent-Type: text/plain")
    edited = message.replace_text((), "Bcc: victim@example.org\n")
    assert edited.to_bytes() == (b"Subject: hi\nContent-Type: text/plain\n\n"
                                 b"Bcc: victim@example.org\n")
