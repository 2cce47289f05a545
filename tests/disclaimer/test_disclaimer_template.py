"""Templates, values and the sender directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute.disclaimer.directory import load_directory
from mailroute.disclaimer.template import (
    Template,
    canonical_name,
    clean_value,
    compact_text,
    contains_pieces,
)


def test_exchange_tokens_and_braces_name_the_same_variable() -> None:
    template = Template.parse("%%DisplayName%% | {{ display_name }} | %%PhoneNumber%% "
                              "| {{Phone}}", is_html=False)
    assert template.variables == {"displayname", "phone"}
    assert template.render({"displayname": "Anna", "phone": "+49 221 1"}) == \
        "Anna | Anna | +49 221 1 | +49 221 1"


@pytest.mark.parametrize(("written", "canonical"), [
    ("Display Name", "displayname"), ("display_name", "displayname"),
    ("Title", "title"), ("JobTitle", "title"), ("MobileNumber", "mobile"),
    ("PrimarySmtpAddress", "email"), ("CountryOrRegion", "country"),
])
def test_canonical_names(written: str, canonical: str) -> None:
    assert canonical_name(written) == canonical


def test_html_values_are_escaped() -> None:
    template = Template.parse("<b>{{title}}</b>", is_html=True)
    rendered = template.render({"title": '</body><script>alert("x")</script>'})
    assert rendered == ("<b>&lt;/body&gt;&lt;script&gt;alert(&quot;x&quot;)"
                        "&lt;/script&gt;</b>")


def test_text_values_lose_control_and_bidi_characters() -> None:
    assert clean_value("Anna\r\nBcc: x@evil.example") == "Anna Bcc: x@evil.example"
    assert clean_value("a\u202eb\u2028c\x00d\x1be") == "a b c d e"
    template = Template.parse("Name: {{name}}\n", is_html=False)
    assert template.render({"displayname": "A\r\nBcc: x"}) == "Name: A Bcc: x\n"


def test_missing_values_render_empty_or_skip() -> None:
    template = Template.parse("{{title}} at Corp", is_html=False)
    assert template.render({}) == " at Corp"
    assert template.render({}, missing="skip") is None
    assert template.render({"title": " \r\n "}, missing="skip") is None
    assert template.render({"title": "CEO"}, missing="skip") == "CEO at Corp"


def test_fingerprint_is_the_static_text_without_spacing() -> None:
    template = Template.parse("-- \n{{name}}\nConfidential: this message is for {{to}} only.",
                              is_html=False)
    assert template.fingerprint == ("Confidential:thismessageisfor", "only.")
    quoted = "> -- \n> Anna\n> Confidential: this message\n> is for Bob only.\n"
    assert contains_pieces(compact_text(quoted), template.fingerprint)
    assert not contains_pieces(compact_text("Confidential: nothing"), template.fingerprint)


def test_html_fingerprint_ignores_markup() -> None:
    template = Template.parse('<p><b>Vertraulich</b> &amp; geheim</p>', is_html=True)
    assert template.fingerprint == ("Vertraulich&geheim",)


def test_a_template_of_variables_only_has_no_fingerprint() -> None:
    template = Template.parse("{{name}} -- {{title}}", is_html=False)
    assert template.fingerprint == ()
    assert not contains_pieces("anything", template.fingerprint)


def test_token_depends_on_source_and_kind() -> None:
    a = Template.parse("x", is_html=True)
    assert a.token == Template.parse("x", is_html=True).token
    assert a.token != Template.parse("x", is_html=False).token
    assert a.token != Template.parse("y", is_html=True).token


def test_directory_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "senders.csv"
    path.write_text("Email,Display Name,Title,Phone Number\n"
                    "Anna.Schmidt@corp.example,Anna Schmidt,Head of Sales,+49 221 100\n"
                    "\n", encoding="utf-8")
    directory = load_directory(path)
    entry = directory.lookup("anna.schmidt@CORP.example")
    assert entry["displayname"] == "Anna Schmidt"
    assert entry["phone"] == "+49 221 100"
    assert directory.lookup("nobody@corp.example") == {}
    assert len(directory) == 1


def test_directory_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "senders.toml"
    path.write_text('["j.doe@corp.example"]\ndisplay_name = "J. Doe"\nextension = 42\n',
                    encoding="utf-8")
    entry = load_directory(path).lookup("j.doe@corp.example")
    assert entry == {"displayname": "J. Doe", "extension": "42", "email": "j.doe@corp.example"}


@pytest.mark.parametrize(("name", "content", "problem"), [
    ("a.csv", "Name,Title\nA,B\n", "no email/address column"),
    ("a.csv", "Email,Title\na@x,B,C\n", "line 2 has 3 columns"),
    ("a.toml", 'title = "x"\n', "table named by an e-mail address"),
    ("a.toml", '["a@x"]\nlist = [1]\n', "must be a string or number"),
    ("a.json", "{}", "must be a .csv or .toml file"),
])
def test_directory_errors_say_what_is_wrong(tmp_path: Path, name: str, content: str,
                                            problem: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=problem):
        load_directory(path)
