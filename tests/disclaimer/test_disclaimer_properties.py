"""Properties over generated input: the linear scan agrees with html5lib whenever it claims to
be unambiguous, and text of any charset survives insertion character for character."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailroute.disclaimer.htmlparse import parse_points
from mailroute.disclaimer.htmlscan import scan_html
from mailroute.disclaimer.template import clean_value
from tests.disclaimer.conftest import make_filter
from tests.disclaimer.helpers import RENDERED_TEXT, body_texts, run

SNIPPETS = [
    "<html>", "</html>", "<head>", "</head>", "<body>", '<body class="x">', "</body>",
    "</BODY >", "<p>", "</p>", "<div>", "</div>", "text", " ", "\r\n", "\n", "<br>", "<hr>",
    "<!-- c -->", "<!-- </body> -->", "<!---->", "<script>x='</body>'</script>",
    "<style>p{}</style>", "<title>t</title>", "<textarea></body></textarea>",
    '<a href="</body>">a</a>', "<a title='>'>b</a>", "<table><tr><td>", "</td></tr></table>",
    '<div id="appendonsend"></div>', '<div id="divRplyFwdMsg">F</div>',
    '<div class="gmail_quote">q</div>', '<blockquote type="cite">q</blockquote>',
    '<div class="moz-cite-prefix">m</div>', "<!DOCTYPE html>", "<img src=x>", "&amp;", "<",
    "<b>", "</b>", "<span>", "</span>", "<svg>", "</svg>", "<template>", "</template>",
    "<select>", "</select>", "<li>", "<ul>", "</ul>", "<![CDATA[x]]>", "</ p>", "<a b='c",
    "<HTML>", "<BODY BGCOLOR=white>", "</Html>", "<noscript>n</noscript>", "<xmp></body></xmp>",
    "<iframe>i</iframe>", "<plaintext>", "<math>", "<frameset>", "<p/>", "<br/>", "</br>",
    "<o:p></o:p>", "<!--[if mso]><table><![endif]-->", "<?xml version='1.0'?>", "\t", "\f",
    '<DIV ID="appendonsend">', "<hr/>", "<HR>", "<form>", "</form>", "<button>", "<option>",
    "<caption>", "<colgroup>", "<frame>", "<image>", "<isindex>", "<nobr>", "<a>", "</a>",
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(SNIPPETS), max_size=25))
def test_scan_agrees_with_html5lib_when_simple(pieces: list[str]) -> None:
    document = "".join(pieces)
    scanned = scan_html(document)
    if not scanned.simple:
        return
    parsed = parse_points(document)
    assert scanned.bottom == parsed.bottom
    assert scanned.top == parsed.top
    assert scanned.quote == parsed.quote


ASCII = "abc XYZ 019 .,;:!?-_=<>&\"'/\\()[]{}@#$%*+~|^`\t\n"
ALPHABETS = {
    "utf-8": ASCII + "äöüßéèçñøåœ€–—“”‘’…Привет東京한국🙂\u00a0\u200d",
    "iso-8859-1": ASCII + "äöüßéèçñøåÄÖÜ°±²³µ¶·¼½¾×÷\u00a0",
    "windows-1252": ASCII + "äöüßéèçñ€–—“”‘’…œŠž",
    "koi8-r": ASCII + "ПриветмиръЁё",
    "shift_jis": ASCII + "東京で会いましょうカタカナ",
    "utf-16": ASCII + "äöüß東京🙂",
}


def _message(text: str, charset: str, cte: str) -> bytes:
    data = text.encode(charset)
    if cte == "base64":
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    elif cte == "quoted-printable":  # line breaks as line breaks: the body can be spliced
        body = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True)
        body = body.replace(b"\n", b"\r\n")
    elif cte == "qp-binary":  # line breaks as =0D=0A: splicing must notice and step back
        body, cte = binascii.b2a_qp(data, istext=False), "quoted-printable"
    else:
        body = data
    return (b"From: a@corp.example\r\nTo: b@partner.example\r\nSubject: p\r\nMIME-Version: 1.0"
            + f"\r\nContent-Type: text/plain; charset={charset}\r\n"
              f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode() + body)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data(), st.sampled_from(sorted(ALPHABETS)),
       st.sampled_from(["base64", "quoted-printable", "qp-binary", "8bit"]),
       st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1,
               max_size=40))
def test_text_survives_in_every_charset(tmp_path: Path, data: st.DataObject, charset: str,
                                        cte: str, greeting: str) -> None:
    text = data.draw(st.text(st.sampled_from(ALPHABETS[charset]), max_size=300))
    if charset == "utf-16":
        cte = "base64"  # the only way UTF-16 text travels in mail
    message = _message(text.replace("\n", "\r\n") + "\r\n", charset, cte)
    step = make_filter(tmp_path, var=[f"greeting={greeting}"])
    [(_, result)] = body_texts(run(step, message).data or b"")
    clean = clean_value(greeting)  # bidi controls and direction marks are dropped
    assert result == text + "\n\n" + RENDERED_TEXT.format(greeting=clean)
