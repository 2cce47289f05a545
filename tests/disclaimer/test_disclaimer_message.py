"""The filter on hand-made messages: charsets, encodings, placement, what is never touched."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import pytest

from mailroute.item import Envelope
from mailroute.mime import parse
from mailroute.pipeline import Pipeline
from tests.disclaimer.conftest import WIDE, make_filter
from tests.disclaimer.helpers import MARKER, RENDERED_TEXT, body_texts, run, stdlib

HEAD = (b"From: Anna Schmidt <anna.schmidt@corp.example>\r\nTo: b@partner.example\r\n"
        b"Subject: test\r\nMIME-Version: 1.0\r\n")

SAMPLES = {
    "us-ascii": "Plain words only.\n",
    "utf-8": "Grüße, Привет, 東京, 🙂\n",
    "iso-8859-1": "Grüße aus Köln, Straße\n",
    "iso-8859-2": "Zażółć gęślą jaźń, Příliš žluťoučký\n",
    "iso-8859-5": "Привет из Москвы\n",
    "iso-8859-7": "Καλημέρα κόσμε\n",
    "iso-8859-15": "Prix: 10 € œuvre\n",
    "windows-1250": "Příliš žluťoučký kůň\n",
    "windows-1251": "Здравствуйте, коллеги\n",
    "windows-1252": "Très chère équipe – voilà “quotes”\n",
    "windows-1253": "Γειά σου κόσμε\n",
    "koi8-r": "Добрый день\n",
    "shift_jis": "東京で会いましょう\n",
    "euc-jp": "東京で会いましょう\n",
    "iso-2022-jp": "東京で会いましょう\n",
    "gb2312": "北京欢迎你\n",
    "big5": "臺北歡迎你\n",
    "euc-kr": "서울에서 만나요\n",
}


def _leaf(ctype: str, charset: str, text: str, cte: str) -> bytes:
    data = text.replace("\n", "\r\n").encode(charset)
    if cte == "base64":
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    elif cte == "quoted-printable":
        body = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True).replace(b"\n", b"\r\n")
    else:
        body = data
    return (f"Content-Type: {ctype}; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() + body


def _encodings(charset: str) -> list[str]:
    sample = SAMPLES[charset].encode(charset)
    return ["quoted-printable", "base64"] + (["7bit"] if sample.isascii() else ["8bit"])


@pytest.mark.parametrize(("charset", "cte"),
                         [(c, e) for c in SAMPLES for e in _encodings(c)])
def test_every_charset_and_encoding(tmp_path: Path, charset: str, cte: str) -> None:
    data = HEAD + _leaf("text/plain", charset, SAMPLES[charset], cte)
    wide = run(make_filter(tmp_path, var=[f"greeting={WIDE}"]), data).data or b""
    [(_, text)] = body_texts(wide)
    assert text == SAMPLES[charset] + "\n" + RENDERED_TEXT.format(greeting=WIDE)
    fits = run(make_filter(tmp_path, var=["greeting=Kind regards"]), data).data or b""
    [(_, text)] = body_texts(fits)
    assert text == SAMPLES[charset] + "\n" + RENDERED_TEXT.format(greeting="Kind regards")
    assert stdlib(fits).get_content_charset() == charset
    kept = stdlib(fits)["Content-Transfer-Encoding"]
    assert kept == (cte if cte != "7bit" or charset != "iso-2022-jp" else "7bit")


def test_html_converted_to_utf8_updates_its_meta_charset(tmp_path: Path) -> None:
    html = ('<html><head><meta http-equiv="Content-Type" content="text/html; '
            'charset=iso-8859-1"></head><body><p>Köln</p></body></html>\n')
    data = HEAD + _leaf("text/html", "iso-8859-1", html, "quoted-printable")
    out = run(make_filter(tmp_path, var=[f"greeting={WIDE}"]), data).data or b""
    part = stdlib(out)
    assert part.get_content_charset() == "utf-8"
    text = part.get_content()
    assert "charset=utf-8" in text
    assert "iso-8859-1" not in text
    assert WIDE in text
    assert "<p>Köln</p>" in text


def test_us_ascii_label_on_utf8_text_is_corrected(tmp_path: Path) -> None:
    data = HEAD + b"Content-Type: text/plain\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    out = run(make_filter(tmp_path, var=["greeting=x"]), data).data or b""
    assert stdlib(out).get_content_charset() == "utf-8"
    assert body_texts(out)[0][1].startswith("Grüße\n")


def test_undecodable_and_utf7_html_bodies_are_left_alone(tmp_path: Path) -> None:
    step = make_filter(tmp_path, var=["greeting=x"])
    bad = HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\nGr\xfc\xdfe\r\n"
    result = run(step, bad)
    assert result.data == bad
    assert result.item is not None
    assert result.item.annotation("disclaimer") == "inserted=0 present=0 skipped[]=undecodable"
    utf7 = HEAD + b"Content-Type: text/html; charset=utf-7\r\n\r\n+ADw-p+AD4-hi\r\n"
    result = run(step, utf7)
    assert result.data == utf7
    assert result.item is not None
    assert "utf-7-html" in (result.item.annotation("disclaimer") or "")


# (reply text, where its quoted part starts)
TEXT_REPLIES = [
    ("Danke!\n\n-----Original Message-----\nFrom: x\n\nold\n", "-----Original"),
    ("Danke!\n\n________________________________\nFrom: x\nSent: y\n", "_____"),
    ("Danke!\n\nOn Mon, 3 Mar 2025 at 10:00, Anna <a@x> wrote:\n> old\n", "On Mon"),
    ("Danke!\n\nAm 03.03.2025 um 10:00 schrieb Anna <a@x>:\n> alt\n", "Am 03"),
    ("Danke!\n\nLe lun. 3 mars 2025, Anna a écrit :\n> vieux\n", "Le lun"),
    ("Danke!\nAnna skrev:\n> gammel\n", "Anna skrev"),
    ("Danke!\n> quoted\n", "> quoted"),
]


@pytest.mark.parametrize(("text", "quote"), TEXT_REPLIES)
def test_text_reply_placement(tmp_path: Path, text: str, quote: str) -> None:
    data = HEAD + _leaf("text/plain", "utf-8", text, "8bit")
    out = run(make_filter(tmp_path, var=["greeting=x"], position="reply"), data).data or b""
    [(_, result)] = body_texts(out)
    # the new text, one blank line, the disclaimer, one blank line, the quoted part as it was
    assert result == ("Danke!\n\n" + RENDERED_TEXT.format(greeting="x") + "\n"
                      + text[text.index(quote):])


def test_top_placement_text_and_html(tmp_path: Path) -> None:
    text = HEAD + _leaf("text/plain", "utf-8", "Hello\n", "8bit")
    step = make_filter(tmp_path, var=["greeting=x"], position="top")
    assert body_texts(run(step, text).data or b"")[0][1] == \
        RENDERED_TEXT.format(greeting="x") + "\nHello\n"
    html = HEAD + _leaf("text/html", "utf-8", "<html><body><p>Hello</p></body></html>", "8bit")
    out = body_texts(run(step, html).data or b"")[0][1]
    assert out.startswith('<html><body><div data-mailroute-disclaimer="')
    assert out.endswith("</div><p>Hello</p></body></html>")


def test_html_reply_placement_on_outlook_reply(tmp_path: Path) -> None:
    html = ('<html><body><div>Danke!</div><div id="appendonsend"></div><hr>'
            '<div id="divRplyFwdMsg">From: x</div><blockquote>old</blockquote></body></html>')
    data = HEAD + _leaf("text/html", "utf-8", html, "quoted-printable")
    out = body_texts(run(make_filter(tmp_path, var=["greeting=x"], position="reply"),
                         data).data or b"")[0][1]
    assert out.index(MARKER) < out.index('<div id="appendonsend">')
    assert out.index("Danke!") < out.index(MARKER)


def _mixed(*parts: bytes, subtype: str = "mixed", close: bool = True) -> bytes:
    boundary = b"b0undary"
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return (HEAD + b"Content-Type: multipart/" + subtype.encode() + b'; boundary="'
            + boundary + b'"\r\n\r\n' + body + (b"--" + boundary + b"--\r\n" if close else b""))


def test_attachments_are_never_touched(tmp_path: Path) -> None:
    body = _leaf("text/plain", "utf-8", "Body\n", "8bit")
    log = (b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Disposition: attachment; filename=server.log\r\n\r\nlog line\r\n")
    html = (b"Content-Type: text/html; charset=utf-8\r\nContent-Disposition: attachment\r\n"
            b"\r\n<html><body>x</body></html>\r\n")
    named = b'Content-Type: text/plain; name="notes.txt"\r\n\r\nnotes\r\n'
    shown = (b"Content-Type: text/plain\r\nContent-Disposition: inline; filename=readme.txt"
             b"\r\n\r\nread me\r\n")
    data = _mixed(body, log, html, named, shown)
    out = run(make_filter(tmp_path, var=["greeting=x"]), data).data or b""
    original, edited = parse(data), parse(out)
    for index in (1, 2, 3, 4):
        assert edited.part((index,)).to_bytes() == original.part((index,)).to_bytes()
    assert MARKER in stdlib(edited.part((0,)).to_bytes()).get_content()


def test_reports_and_auto_replies_are_left_alone(tmp_path: Path) -> None:
    report = (HEAD + b'Content-Type: multipart/report; report-type=delivery-status; '
              b'boundary="r"\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n'
              b"--r\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n--r--\r\n")
    step = make_filter(tmp_path, var=["greeting=x"])
    assert run(step, report).data == report
    auto = (b"Auto-Submitted: auto-replied\r\n" + HEAD
            + _leaf("text/plain", "utf-8", "Out of office\n", "8bit"))
    assert run(step, auto).data == auto
    adding = make_filter(tmp_path, var=["greeting=x"], auto_replies="add")
    assert MARKER in body_texts(run(adding, auto).data or b"")[0][1]
    suppressed = (b"X-Auto-Response-Suppress: All\r\n" + HEAD
                  + _leaf("text/plain", "utf-8", "Out of office\n", "8bit"))
    assert run(step, suppressed).data == suppressed
    manual = (b"Auto-Submitted: no\r\n" + HEAD
              + _leaf("text/plain", "utf-8", "typed by hand\n", "8bit"))
    assert MARKER in body_texts(run(step, manual).data or b"")[0][1]


def test_structurally_defective_multipart_is_left_alone(tmp_path: Path) -> None:
    data = _mixed(_leaf("text/plain", "utf-8", "Body\n", "8bit"), close=False)
    message = parse(data, on_ambiguity="record")
    assert not message.structurally_sound(())
    pipeline = Pipeline(filters=(make_filter(tmp_path, var=["greeting=x"]),))
    result = pipeline.process(data)
    assert result.action == "accept"
    assert result.data == data


ENCRYPTED = [
    (b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n'
     b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n"),
    (b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
     b'boundary="e"\r\n\r\n--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n'
     b"--e\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n"
     b"hF4D\r\n-----END PGP MESSAGE-----\r\n--e--\r\n"),
    (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\n"
     b"Hash: SHA256\r\n\r\nsigned text\r\n-----BEGIN PGP SIGNATURE-----\r\nxyz\r\n"
     b"-----END PGP SIGNATURE-----\r\n"),
]


@pytest.mark.parametrize("entity", ENCRYPTED, ids=["smime-enveloped", "pgp-mime", "inline-pgp"])
def test_protected_entities_wrapped_skipped_or_rejected(tmp_path: Path, entity: bytes) -> None:
    data = HEAD + entity
    out = run(make_filter(tmp_path, var=["greeting=x"]), data).data or b""
    edited = parse(out)
    assert edited.root.mime_type == "multipart/mixed"
    assert edited.part((0,)).to_bytes() == entity
    assert MARKER in stdlib(edited.part((1,)).to_bytes()).get_content()
    skip = make_filter(tmp_path, var=["greeting=x"], signed="skip")
    assert run(skip, data).data == data
    reject = make_filter(tmp_path, var=["greeting=x"], signed="reject")
    refused = Pipeline(filters=(reject,)).process(data)
    assert refused.action == "reject"
    assert refused.reply.startswith("554 5.7.1")
    assert refused.data is None


@pytest.mark.parametrize("placement", ["bottom", "top", "reply"])
@pytest.mark.parametrize("entity", ENCRYPTED, ids=["smime-enveloped", "pgp-mime", "inline-pgp"])
def test_a_wrapped_message_is_not_wrapped_again(tmp_path: Path, entity: bytes,
                                                placement: str) -> None:
    """Found by the disclaimer audit: inline PGP with ``position = top`` was wrapped a
    second time on a second pass (top looks at the first body, the protected one)."""
    step = make_filter(tmp_path, var=["greeting=x"], position=placement)
    once = run(step, HEAD + entity).data
    assert once is not None
    assert parse(once).root.mime_type == "multipart/mixed"
    assert run(step, once).data == once


@pytest.mark.parametrize("signed", ["wrap", "skip", "reject"])
def test_an_unprotected_body_beside_a_signed_part_carries_the_disclaimer_in_every_mode(
        tmp_path: Path, signed: str) -> None:
    """Found by the disclaimer audit: ``signed = "reject"`` refused a message whose
    unprotected text part had just been given the disclaimer."""
    inner = _leaf("text/plain", "utf-8", "Signed words\n", "8bit")
    signature = b"Content-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n"
    signed_part = (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";'
                   b' boundary="s1"\r\n\r\n--s1\r\n' + inner + b"\r\n--s1\r\n" + signature
                   + b"\r\n--s1--\r\n")
    data = _mixed(_leaf("text/plain", "utf-8", "Cover note\n", "8bit"), signed_part)
    result = Pipeline(filters=(make_filter(tmp_path, var=["greeting=x"], signed=signed),)
                      ).process(data)
    assert result.action == "accept"
    assert result.data is not None
    edited = parse(result.data)
    assert MARKER in stdlib(edited.part((0,)).to_bytes()).get_content()
    assert edited.part((1,)).to_bytes() == parse(data).part((1,)).to_bytes()


def test_signed_reply_already_carrying_the_disclaimer_is_not_wrapped(tmp_path: Path) -> None:
    inner = _leaf("text/plain", "utf-8", "Ok\n\n> -- \n> " + MARKER + "\n", "8bit")
    signature = b"Content-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n"
    data = _mixed(inner, signature, subtype='signed; protocol="application/pkcs7-signature"')
    assert run(make_filter(tmp_path, var=["greeting=x"]), data).data == data


@pytest.mark.parametrize("value", ["</body><script>alert(1)</script>",
                                   "\r\nBcc: victim@evil.example\r\n\r\n<b>x</b>"])
def test_injected_values_add_no_markup_and_no_header(tmp_path: Path, value: str) -> None:
    html = _leaf("text/html", "utf-8", "<html><body><p>Hi</p></body></html>", "8bit")
    text = _leaf("text/plain", "utf-8", "Hi\n", "8bit")
    data = _mixed(text, html, subtype="alternative")
    (tmp_path / "senders.csv").write_text(
        "email,title\nanna.schmidt@corp.example,x\n", encoding="utf-8")
    for options in ({"var": [f"greeting={value}"]},
                    {"directory": "senders.csv", "var": [f"greeting={value}"]}):
        out = run(make_filter(tmp_path, **options), data).data or b""
        edited = stdlib(out)
        for part in edited.walk():
            assert part.get_all("Bcc") is None
        assert [f.name for f in parse(out).headers] == [f.name for f in parse(data).headers]
        [(_, plain), (_, markup)] = body_texts(out)
        clean = " ".join(value.split())
        assert plain == "Hi\n\n" + RENDERED_TEXT.format(greeting=clean)
        assert "<script>" not in markup
        assert "<b>x" not in markup
        assert markup.count("</body>") == 1
        assert "&lt;/body&gt;&lt;script&gt;" in markup or "&lt;b&gt;x" in markup


def test_directory_values_per_sender(tmp_path: Path) -> None:
    (tmp_path / "senders.csv").write_text(
        "Email,Display Name,Title\nanna.schmidt@corp.example,Anna Schmidt,Head of Sales\n",
        encoding="utf-8")
    step = make_filter(tmp_path, text="-- \n%%DisplayName%%, %%Title%%\n", html=None,
                       directory="senders.csv", missing="skip")
    data = HEAD + _leaf("text/plain", "utf-8", "Hi\n", "8bit")
    assert body_texts(run(step, data).data or b"")[0][1] == \
        "Hi\n\n-- \nAnna Schmidt, Head of Sales\n"
    stranger = data.replace(b"anna.schmidt@corp.example", b"someone@corp.example")
    result = run(step, stranger)
    assert result.data == stranger
    assert result.item is not None
    assert result.item.annotation("disclaimer") == "skipped: missing-value"


def test_envelope_sender_is_used_without_from(tmp_path: Path) -> None:
    (tmp_path / "senders.toml").write_text('["j.doe@corp.example"]\ntitle = "CFO"\n',
                                           encoding="utf-8")
    step = make_filter(tmp_path, text="{{title}} {{email}}\n", html=None,
                       directory="senders.toml")
    data = b"To: b@x\r\nSubject: s\r\n\r\nHi\r\n"
    out = run(step, data, Envelope(mail_from="J.Doe@corp.example")).data or b""
    assert body_texts(out)[0][1] == "Hi\n\nCFO j.doe@corp.example\n"


def test_html_without_mime_charset_is_read_as_its_meta_says(tmp_path: Path) -> None:
    html = ('<html><head><meta charset="windows-1252"></head><body><p>Caf\xe9 “x”</p>'
            "</body></html>").encode("windows-1252")
    data = HEAD + b"Content-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + html
    out = run(make_filter(tmp_path, var=[f"greeting={WIDE}"]), data).data or b""
    part = stdlib(out)
    assert part.get_content_charset() == "utf-8"
    text = part.get_content()
    assert '<meta charset="utf-8">' in text
    assert "<p>Café “x”</p>" in text
    assert WIDE in text


def test_unknown_charset_and_encoding_are_left_alone(tmp_path: Path) -> None:
    step = make_filter(tmp_path, var=["greeting=x"])
    for header, reason in ((b"Content-Type: text/plain; charset=x-klingon\r\n", "unknown-charset"),
                           (b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uue\r\n",
                            "invalid-transfer-encoding")):
        data = HEAD + header + b"\r\nqapla\r\n"
        result = run(step, data)
        assert result.data == data
        assert result.item is not None
        assert result.item.annotation("disclaimer") == f"inserted=0 present=0 skipped[]={reason}"


@pytest.mark.parametrize("charset", ["punycode", "undefined", "raw_unicode_escape",
                                     "unicode_escape", "idna", "charmap"])
def test_a_python_codec_that_is_no_charset_is_an_unknown_charset(tmp_path: Path,
                                                                 charset: str) -> None:
    """Found by the disclaimer audit: ``punycode`` and ``undefined`` raised a bare
    UnicodeError (an internal error at every retry); ``raw_unicode_escape`` rewrote
    ``hi\\u0041`` as ``hiA``."""
    data = HEAD + f"Content-Type: text/plain; charset={charset}\r\n".encode() + \
        b"\r\nhi\\u0041 \xe9\r\n"
    result = run(make_filter(tmp_path, var=["greeting=x"]), data)
    assert result.action == "accept"
    assert result.data == data
    assert result.item is not None
    assert result.item.annotation("disclaimer") == "inserted=0 present=0 skipped[]=unknown-charset"


def test_a_flowed_body_gets_a_footer_that_neither_joins_nor_quotes(tmp_path: Path) -> None:
    """Found by the disclaimer audit (RFC 3676): a footer line ending in a space (an empty
    template value before it) joined the next line in a flowed reader, and a footer line
    starting with ``>`` read as a quote."""
    template = "-- \nAnna {{surname}} \n> not a quote\nFrom Cologne\n indented\n"
    step = make_filter(tmp_path, text=template, html=None, var=["surname="])
    data = (HEAD + b"Content-Type: text/plain; charset=us-ascii; format=flowed\r\n\r\n"
            b"A paragraph that flows \r\non here.\r\n")
    result = run(step, data)
    assert result.data is not None
    body = result.data.split(b"\r\n\r\n", 1)[1].decode()
    assert body.endswith("\r\n\r\n-- \r\nAnna\r\n > not a quote\r\n From Cologne\r\n"
                         "  indented\r\n"), body
    assert body.startswith("A paragraph that flows \r\non here.\r\n")
    plain = HEAD + b"Content-Type: text/plain; charset=us-ascii\r\n\r\nA line.\r\n"
    kept = (run(step, plain).data or b"").split(b"\r\n\r\n", 1)[1].decode()
    assert "Anna  \r\n> not a quote\r\nFrom Cologne\r\n indented" in kept


def test_a_template_of_variables_only_is_inserted_once(tmp_path: Path) -> None:
    """Found by the disclaimer audit: with no static text there was nothing to recognise,
    and every pass added the signature again."""
    step = make_filter(tmp_path, text="-- \n%%DisplayName%%\n%%Title%%\n", html=None,
                       var=["display_name=Anna Weber", "title=Sales"])
    data = HEAD + b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello.\r\n"
    once = run(step, data).data
    assert once is not None
    assert once.count(b"Anna Weber") == 1
    assert run(step, once).data == once


def test_a_short_static_text_found_in_a_quote_does_not_stop_the_footer(tmp_path: Path
                                                                        ) -> None:
    """Found by the disclaimer audit: the template's only static text, "Tel.", occurred in
    the partner's quoted signature, and the reply went out without the footer."""
    step = make_filter(tmp_path, text="-- \n{{display_name}}\nTel. {{phone}}\n", html=None,
                       var=["display_name=Anna Weber", "phone=+49 221 1"])
    data = (HEAD + b"Content-Type: text/plain; charset=us-ascii\r\n\r\nThanks!\r\n\r\n"
            b"On Mon, Max wrote:\r\n> See you.\r\n> --\r\n> Max\r\n> Tel. +1 555 0100\r\n")
    once = run(step, data).data
    assert once is not None
    assert once.count(b"Tel. +49 221 1") == 1
    assert run(step, once).data == once


def test_utf16_is_edited_only_in_base64(tmp_path: Path) -> None:
    step = make_filter(tmp_path, var=["greeting=x"])
    encoded = HEAD + _leaf("text/plain", "utf-16", "Hallo\n", "base64")
    assert body_texts(run(step, encoded).data or b"")[0][1] == \
        "Hallo\n\n" + RENDERED_TEXT.format(greeting="x")
    raw = HEAD + _leaf("text/plain", "utf-16", "Hallo\n", "8bit")
    result = run(step, raw)
    assert result.data == raw
    assert result.item is not None
    assert result.item.annotation("disclaimer") == \
        "inserted=0 present=0 skipped[]=charset-needs-base64"


def test_forwarded_message_and_nested_report_are_not_looked_into(tmp_path: Path) -> None:
    body = _leaf("text/plain", "utf-8", "See below\n", "8bit")
    forwarded = (b"Content-Type: message/rfc822\r\n\r\nFrom: c@x\r\nSubject: old\r\n"
                 b"Content-Type: text/plain\r\n\r\nold text\r\n")
    report = (b'Content-Type: multipart/report; report-type=disposition-notification; '
              b'boundary="n"\r\n\r\n--n\r\nContent-Type: text/plain\r\n\r\nread\r\n'
              b"--n\r\nContent-Type: message/disposition-notification\r\n\r\nx: y\r\n--n--\r\n")
    data = _mixed(body, forwarded, report)
    out = run(make_filter(tmp_path, var=["greeting=x"]), data).data or b""
    original, edited = parse(data), parse(out)
    assert edited.part((1,)).to_bytes() == original.part((1,)).to_bytes()
    assert edited.part((2,)).to_bytes() == original.part((2,)).to_bytes()
    assert MARKER in stdlib(edited.part((0,)).to_bytes()).get_content()


def test_signed_part_beside_a_body_is_kept_and_not_wrapped(tmp_path: Path) -> None:
    body = _leaf("text/plain", "utf-8", "Cover note\n", "8bit")
    signed = ENCRYPTED[0]
    data = _mixed(body, signed)
    result = run(make_filter(tmp_path, var=["greeting=x"]), data)
    edited = parse(result.data or b"")
    assert edited.root.mime_type == "multipart/mixed"
    assert edited.part((1,)).to_bytes() == signed
    assert MARKER in stdlib(edited.part((0,)).to_bytes()).get_content()
    assert result.item is not None
    assert result.item.annotation("disclaimer") == "inserted=1 present=0 protected=1"


@pytest.mark.parametrize("attribution", [
    "El lun, 3 mar 2025, Ana escribió:", "Il giorno lun 3 mar 2025, Anna ha scritto:",
    "Op ma 3 mrt 2025 schreef Anna <a@x>:", "----- Forwarded message -----",
])
def test_more_reply_attributions(tmp_path: Path, attribution: str) -> None:
    text = f"Gracias\n\n{attribution}\n> old\n"
    data = HEAD + _leaf("text/plain", "utf-8", text, "8bit")
    out = run(make_filter(tmp_path, var=["greeting=x"], position="reply"), data).data or b""
    [(_, result)] = body_texts(out)
    assert result == ("Gracias\n\n" + RENDERED_TEXT.format(greeting="x") + "\n"
                      + attribution + "\n> old\n")


def test_html_template_defaults_to_the_escaped_text(tmp_path: Path) -> None:
    step = make_filter(tmp_path, text="-- \nA & B <Legal>\n{{greeting}}\n", html=None,
                       var=["greeting=<i>x</i>"])
    data = HEAD + _leaf("text/html", "utf-8", "<html><body><p>Hi</p></body></html>", "8bit")
    [(_, markup)] = body_texts(run(step, data).data or b"")
    assert markup.endswith("-- <br>\nA &amp; B &lt;Legal&gt;<br>\n&lt;i&gt;x&lt;/i&gt;</div>"
                           "</body></html>")


def test_message_with_lf_line_ends(tmp_path: Path) -> None:
    text = _leaf("text/plain", "utf-8", "Hallo Köln\nzweite Zeile\n", "quoted-printable")
    html = _leaf("text/html", "iso-8859-1", "<html><body><p>K\xf6ln</p></body></html>\n",
                 "quoted-printable")
    data = _mixed(text, html, subtype="alternative").replace(b"\r\n", b"\n")
    out = run(make_filter(tmp_path, var=[f"greeting={WIDE}"]), data).data or b""
    assert b"\r" not in out
    [(_, plain), (_, markup)] = body_texts(out)
    assert plain == "Hallo Köln\nzweite Zeile\n\n" + RENDERED_TEXT.format(greeting=WIDE)
    assert markup.startswith("<html><body><p>Köln</p><div data-mailroute-disclaimer=")


def test_defect_in_one_branch_leaves_the_healthy_branch_editable(tmp_path: Path) -> None:
    broken = (b'Content-Type: multipart/mixed; boundary="inner"\r\n\r\n--inner\r\n'
              b"Content-Type: text/plain\r\n\r\nunclosed\r\n")
    body = _leaf("text/plain", "utf-8", "Healthy\n", "8bit")
    data = _mixed(body, broken)
    message = parse(data, on_ambiguity="record")
    assert not message.structurally_sound((1,))
    assert not message.structurally_sound(())
    out = Pipeline(filters=(make_filter(tmp_path, var=["greeting=x"]),)).process(data).data
    edited = parse(out or b"", on_ambiguity="record")
    assert edited.part((1,)).to_bytes() == message.part((1,)).to_bytes()
    assert MARKER in stdlib(edited.part((0,)).to_bytes()).get_content()
