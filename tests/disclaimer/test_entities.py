"""The disclaimer's escape and unescape give exactly what html.escape and html.unescape
give, and load the html module only for text that has something to escape or decode."""

from __future__ import annotations

import html
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from mailroute.disclaimer.entities import escape, unescape

TEXT = st.lists(st.sampled_from([*"ab &<>\"';#x0123456789ü", "&amp;", "&nbsp;", "&#x27;",
                                 "&#228;", "&auml"])).map("".join)


@given(TEXT, st.booleans())
def test_escape_is_html_escape(text: str, quote: bool) -> None:
    assert escape(text, quote=quote) == html.escape(text, quote=quote)


@given(TEXT)
def test_unescape_is_html_unescape(text: str) -> None:
    assert unescape(text) == html.unescape(text)


def test_html_is_loaded_only_for_text_with_something_to_do() -> None:
    probe = ("import sys\nfrom mailroute.disclaimer.entities import escape, unescape\n"
             "assert escape('Anna Weber', quote=True) == 'Anna Weber'\n"
             "assert unescape('Grüße aus Köln') == 'Grüße aus Köln'\n"
             "before = 'html' in sys.modules\n"
             "assert unescape('a&amp;b') == 'a&b'\n"
             "print(before, 'html' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.split() == ["False", "True"]
