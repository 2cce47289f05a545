"""Protected header fields on decryption: the inner user-facing fields win, trace fields stay
the gateway's, legacy-display copies go (outside signatures only)."""

from __future__ import annotations

import pytest

from mailroute.mime import HeaderField, Message, parse
from mailroute.mime.protected import (
    ProtectedHeaders,
    carrier_path,
    compare,
    decrypted_with_outer,
)

OUTER = parse(b"Received: from mx by gw\r\nAuthentication-Results: gw; dkim=pass\r\n"
              b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: ...\r\n"
              b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; "
              b"boundary=x\r\n\r\n--x--\r\n")


def _outer() -> list[HeaderField]:
    return [f for f in OUTER.headers if not f.lower_name.startswith("content-")]


def _merge(entity: bytes) -> tuple[Message, ProtectedHeaders | None]:
    merged, report = decrypted_with_outer(_outer(), parse(entity))
    return parse(merged.to_bytes()), report


INNER_TEXT = (b'Content-Type: text/plain; charset=utf-8; protected-headers="v1"\r\n'
              b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: The real one\r\n"
              b"Authentication-Results: evil; dkim=pass\r\n\r\nhello\r\n")


def test_inner_fields_replace_outer_ones_and_trace_fields_stay() -> None:
    message, report = _merge(INNER_TEXT)
    assert message.headers.count("Subject") == 1
    assert message.headers.value("Subject") == "The real one"
    assert message.headers.count("From") == 1
    assert message.headers.value("Date") == "Mon, 1 Jan 2024 00:00:00 +0000"  # not protected
    assert message.headers.value("Received") == "from mx by gw"
    # not a protectable field: an inner one does not push the gateway's own aside
    assert message.headers.get_all("Authentication-Results")[0].value == "gw; dkim=pass"
    assert report is not None
    assert report.summary() == "fields=from,subject,to; outer-differs=subject"


@pytest.mark.parametrize("marker", [b'; protected-headers="v1"', b""], ids=["protected", "plain"])
def test_only_content_and_user_facing_fields_come_from_inside(marker: bytes) -> None:
    """Found by the crypto audit: a sender put a passing Authentication-Results of this
    gateway, Received fields and the gateway's own flag inside the encryption, and they
    came out on top; a second MIME-Version too."""
    entity = (b"Content-Type: text/plain" + marker + b"\r\nMIME-Version: 1.0\r\n"
              b"Authentication-Results: mailroute; smime=pass body.smime-identifier=ceo@x\r\n"
              b"Received: from forged by nowhere\r\nX-Mailroute-SMIME: decrypted\r\n"
              b"Subject: inner\r\n\r\nhello\r\n")
    message, _ = _merge(entity)
    headers = message.headers
    assert [f.value for f in headers.get_all("Authentication-Results")] == ["gw; dkim=pass"]
    assert [f.value for f in headers.get_all("Received")] == ["from mx by gw"]
    assert headers.get("X-Mailroute-SMIME") is None
    assert headers.count("MIME-Version") == 1
    assert headers.value("Subject") == ("inner" if marker else "...")
    assert headers.value("Content-Type") is not None


def test_an_unsigned_payload_cannot_change_the_author() -> None:
    """The outer From is what SPF, DKIM and DMARC were about; anyone can encrypt to the
    gateway and claim another author inside."""
    entity = INNER_TEXT.replace(b"From: alice@example.org", b"From: ceo@corp.example")
    entity = entity.replace(b"Subject: The real one\r\n",
                            b"Subject: The real one\r\nSender: ceo@corp.example\r\n")
    message, report = _merge(entity)
    assert [f.value for f in message.headers.get_all("From")] == ["alice@example.org"]
    assert message.headers.get("Sender") is None
    assert message.headers.value("Subject") == "The real one"
    assert report is not None
    assert "from" in report.outer_differs


def test_without_the_marker_the_outer_fields_are_put_on_top_unchanged() -> None:
    entity = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    message, report = _merge(entity)
    assert report is None
    assert message.headers.value("Subject") == "..."
    assert message.to_bytes().endswith(entity)


def test_rfc9788_hp_parameter_marks_the_carrier_too() -> None:
    entity = INNER_TEXT.replace(b'protected-headers="v1"', b'hp="cipher"')
    assert carrier_path(parse(entity)) == ()
    assert _merge(entity)[0].headers.value("Subject") == "The real one"


MIXED = (b'Content-Type: multipart/mixed; boundary="b"; protected-headers="v1"\r\n'
         b"Subject: Secret\r\n\r\n")


def _without_legacy(entity: bytes) -> Message:
    message, report = _merge(entity)
    assert report is not None
    assert report.legacy_display
    return message


def test_legacy_display_part_is_removed() -> None:
    message = _without_legacy(
        MIXED + b'--b\r\nContent-Type: text/rfc822-headers; protected-headers="v1"\r\n'
        b"Content-Disposition: inline\r\n\r\nSubject: Secret\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b--\r\n")
    assert [p.mime_type for p in message.root.children] == ["text/plain"]
    assert b"text/rfc822-headers" not in message.to_bytes()


def test_html_legacy_display_div_is_removed() -> None:
    message = _without_legacy(
        MIXED + b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<html><body><div class="header-protection-legacy-display">'
        b"<pre>Subject: Secret</pre></div><p>body</p></body></html>\r\n--b--\r\n")
    assert b"header-protection-legacy-display" not in message.to_bytes()
    assert b"<p>body</p>" in message.to_bytes()


def test_plain_text_legacy_display_block_is_removed() -> None:
    entity = (b'Content-Type: text/plain; charset=utf-8; hp="cipher"; hp-legacy-display="1"\r\n'
              b"Subject: Secret\r\n\r\nSubject: Secret\r\n\r\nbody\r\n")
    message = _without_legacy(entity)
    assert message.root.body_bytes().replace(b"\r\n", b"\n").strip() == b"body"


def test_signed_carrier_is_left_alone_and_its_fields_copied_up() -> None:
    signed_part = (b'Content-Type: multipart/mixed; boundary="m"; protected-headers="v1"\r\n'
                   b"Subject: Secret\r\nFrom: alice@example.org\r\n\r\n"
                   b'--m\r\nContent-Type: text/rfc822-headers; protected-headers="v1"\r\n\r\n'
                   b"Subject: Secret\r\n--m--\r\n")
    entity = (b'Content-Type: multipart/signed; boundary="s"; micalg=pgp-sha256; '
              b'protocol="application/pgp-signature"\r\n\r\n--s\r\n' + signed_part
              + b"\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n")
    message, report = _merge(entity)
    assert report is not None
    assert report.legacy_display is False
    assert message.headers.value("Subject") == "Secret"
    assert message.headers.count("From") == 1
    assert signed_part in message.to_bytes()  # byte for byte: the signature still holds


def test_compare_lists_outer_fields_that_differ() -> None:
    report = compare(_outer(), parse(INNER_TEXT.replace(b"Subject: The real one",
                                                        b"Subject: ...")))
    assert report is not None
    assert report.outer_differs == ()
    assert report.to_json() == {"fields": ["from", "subject", "to"], "outer_differs": [],
                                "legacy_display_removed": False}
