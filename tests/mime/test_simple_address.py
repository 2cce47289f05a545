"""parse_addresses reads plain `addr` and `Name <addr>` values itself, as email.utils would."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroute.mime.headers import HeaderField, _simple_address, parse_addresses


def _stdlib(value: str) -> tuple[str, ...]:
    pairs = email.utils.getaddresses([value])
    return tuple(addr.lower() for _, addr in pairs if addr and "@" in addr)


def _field(value: str) -> HeaderField:
    return HeaderField(f"From: {value}\r\n".encode(), "From")


@pytest.mark.parametrize("value", [
    "anna.weber@example.net",
    "Anna Weber <Anna.Weber@Example.NET>",
    "J. R. Smith <j.smith@example.org>",
    "<bounce+x=y@lists.example.com>",
    "  a@b  ",
    "o'brien@example.ie",
    "=?utf-8?q?Anna?= <anna@example.net>",  # the phrase is not decoded: only addr counts
])
def test_plain_values_are_read_without_the_email_package(value: str) -> None:
    assert _simple_address().fullmatch(_field(value).value)
    assert parse_addresses(_field(value)) == _stdlib(_field(value).value)


@pytest.mark.parametrize("value", [
    '"Weber, Anna" <anna@example.net>',
    "anna@example.net (Anna)",
    "a@example.net, b@example.net",
    "Group: a@example.net;",
    "a..b@example.net",
    "Anna <a@example.net> <b@example.net>",
    "Anna <a@example.net",
])
def test_anything_else_goes_to_the_email_package(value: str) -> None:
    assert _simple_address().fullmatch(_field(value).value) is None
    assert parse_addresses(_field(value)) == _stdlib(_field(value).value)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab.@<> \t\"(),;:\\-=?_'", max_size=24))
def test_both_readings_agree_wherever_the_plain_one_applies(value: str) -> None:
    field = _field(value)
    if _simple_address().fullmatch(field.value):
        assert parse_addresses(field) == _stdlib(field.value)
