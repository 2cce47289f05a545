"""atheris harness for the HTML scan and disclaimer insertion. Not collected by pytest; run
with fuzz/run.

Each input is used twice: as a whole message, and as the HTML body of a
``multipart/alternative`` built around it. The properties: insertion raises nothing but a
MailrouteError; the result parses to the same MIME structure (or, when the message was
wrapped, the original entity plus one text part); every body reported as edited now carries
the footer; the scan's offsets lie inside the document.

    .venv/bin/python fuzz/html_fuzz.py -max_total_time=60 -max_len=8192 -rss_limit_mb=2048
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from mailroute.disclaimer.htmlscan import scan_html
    from mailroute.disclaimer.insert import (
        Disclaimer,
        Insertion,
        Settings,
        add_disclaimer,
        decode_body,
    )
    from mailroute.disclaimer.locate import PLACEMENTS, HtmlLimits, locate
    from mailroute.disclaimer.template import Template
    from mailroute.errors import MailrouteError
    from mailroute.mime import Message, parse

TEXT = "-- \nConfidential: for the addressee only. fuzz-footer\n"
HTML = "<p>Confidential: for the addressee only. fuzz-footer</p>"
FOOTER = "fuzz-footer"
DISCLAIMER = Disclaimer(Template.parse(TEXT, is_html=False), Template.parse(HTML, is_html=True),
                        TEXT, HTML)
# Small limits, so that the html5lib path, the fallback and the budget are all reached.
LIMITS = HtmlLimits(max_chars=4096, max_depth=16, max_message_chars=6000)
WRAPPER = (b"From: a@example.net\r\nTo: b@example.org\r\nSubject: fuzz\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/alternative; boundary="fuzz-b"\r\n\r\n'
           b"--fuzz-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
           b"--fuzz-b\r\nContent-Type: text/html; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n--fuzz-b--\r\n")


def _structure(message: Message) -> list[tuple[tuple[int, ...], str]]:
    return [(path, part.mime_type) for path, part in message.walk()]


def _check(message: Message, placement: str) -> None:
    settings = Settings(placement=placement, html_limits=LIMITS, auto_replies="add",
                        invites="bodies")
    try:
        result: Insertion = add_disclaimer(message, DISCLAIMER, settings)
    except MailrouteError:
        return
    if result.refused or result.skip_reason:
        return
    reparsed = parse(result.message.to_bytes(), on_ambiguity="record")
    before, after = _structure(message), _structure(reparsed)
    if result.wrapped:
        nested = [((0, *path), kind) for path, kind in before]
        if after[1:1 + len(before)] != nested or len(after) != len(before) + 2:
            raise AssertionError("the wrapped message lost its structure")
    elif after != before:
        raise AssertionError(f"structure changed: {before} -> {after}")
    for path in result.inserted:
        text, _ = decode_body(reparsed.part(path))
        if text is None or FOOTER not in text:
            raise AssertionError(f"body {path} was reported edited but has no footer")


def test_one_input(data: bytes) -> None:
    """The properties of the module docstring, for one input."""
    fdp = atheris.FuzzedDataProvider(data)
    placement = PLACEMENTS[fdp.ConsumeIntInRange(0, len(PLACEMENTS) - 1)]
    rest = fdp.ConsumeBytes(len(data))
    html = rest.decode("utf-8", "replace")
    points = scan_html(html)
    if not (0 <= points.top <= len(html) and 0 <= points.bottom <= len(html)):
        raise AssertionError("scan offsets outside the document")
    offset = locate(html, placement, limits=LIMITS).offset
    if not 0 <= offset <= len(html):
        raise AssertionError("locate offset outside the document")
    for raw in (rest, WRAPPER % html.encode("utf-8")):
        try:
            message = parse(raw, on_ambiguity="record")
        except MailrouteError:
            continue
        _check(message, placement)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
