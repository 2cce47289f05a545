"""L5: templates let ``javascript:`` links, variables in unquoted attributes and bidi controls
through. The administrator's template is refused at load when it has them (a configuration
error naming the key); values are neutralised when rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute.disclaimer.template import Template, clean_value
from mailroute.errors import ConfigError
from tests.disclaimer.conftest import make_filter


@pytest.mark.parametrize(("html", "reason"), [
    ('<a href=javascript:alert(1)>x</a>', "javascript: URL"),
    ('<a href="jav&#x09;ascript:alert(1)">x</a>', "javascript: URL"),
    ("<a href='VBScript:x'>x</a>", "vbscript: URL"),
    ('<a href=" data:text/html,x">x</a>', "data: URL"),
    ('<img src="data:image/svg+xml,x">', "data: URL"),
    ("<a href={{url}}>x</a>", "not inside a quoted attribute value"),
    ("<p {{attrs}}>x</p>", "not inside a quoted attribute value"),
    ("<{{tag}}>x", "tag name"),
    ('<a onclick="f(\'{{name}}\')">x</a>', "event handler"),
    ("<p>\u202eevil</p>", "bidi"),
])
def test_refused_at_load(tmp_path: Path, html: str, reason: str) -> None:
    with pytest.raises(ConfigError, match="html") as caught:
        make_filter(tmp_path, html=html)
    assert reason in str(caught.value)


def test_bidi_override_in_the_text_template_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="text"):
        make_filter(tmp_path, text="Confidential \u2067x\u2069\n", html=None)


@pytest.mark.parametrize("html", [
    '<a href="https://example.net/{{user}}">{{name}}</a>',
    '<a href="{{url}}" title="{{name}}">x</a>',
    '<img src="data:image/png;base64,iVBORw0KGgo=" alt="logo">',
    "<p class=footer>Confidential</p>",
    "<p>\u200fשלום</p>",  # a direction mark in the template itself is the admin's choice
])
def test_accepted_at_load(tmp_path: Path, html: str) -> None:
    make_filter(tmp_path, html=html)


@pytest.mark.parametrize(("value", "rendered"), [
    ("javascript:alert(1)", "about:invalid"),
    ("  JavaScript:alert(1)", "about:invalid"),
    ("vbscript:x", "about:invalid"),
    ("data:text/html,x", "about:invalid"),
    ("https://example.net/a?b=c", "https://example.net/a?b=c"),
    ("mailto:anna@example.net", "mailto:anna@example.net"),
    ("/relative/path:x", "/relative/path:x"),
])
def test_a_value_that_decides_the_scheme_is_neutralised(value: str, rendered: str) -> None:
    template = Template.parse('<a href="{{url}}">{{url}}</a>', is_html=True)
    out = template.render({"url": value})
    assert out is not None
    assert out.startswith(f'<a href="{rendered}">')


def test_split_scheme_over_two_values_is_neutralised() -> None:
    template = Template.parse('<a href="{{a}}{{b}}">x</a>', is_html=True)
    assert template.render({"a": "javascript", "b": ":alert(1)"}) == (
        '<a href="javascriptabout:invalid">x</a>')


def test_a_value_after_a_fixed_scheme_is_left_alone() -> None:
    template = Template.parse('<a href="https://example.net/{{user}}">x</a>', is_html=True)
    assert template.render({"user": "javascript:x"}) == (
        '<a href="https://example.net/javascript:x">x</a>')


def test_bidi_and_direction_marks_are_removed_from_values() -> None:
    for mark in ("\u202a", "\u202e", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c"):
        assert clean_value(f"Anna{mark}Weber") == "Anna Weber"
