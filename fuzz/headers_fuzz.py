"""atheris harness for the header writer: a field built from any name and value either is
refused with a typed error or reads back as exactly that one field, the rest of the message
unchanged. Not collected by pytest; run with fuzz/run headers.

    fuzz/.venv/bin/python fuzz/headers_fuzz.py -max_total_time=60 -max_len=8192
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from mailroute.errors import MailrouteError
    from mailroute.mime import parse
    from mailroute.mime.headers import make_field

BASE = {
    b"\r\n": b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n",
    b"\n": b"From: a@example.org\nTo: b@example.net\nSubject: hi\n\nbody\n",
}


def test_one_input(data: bytes) -> None:
    """The property, for both line endings and both positions."""
    provider = atheris.FuzzedDataProvider(data)
    newline = b"\r\n" if provider.ConsumeBool() else b"\n"
    position = "top" if provider.ConsumeBool() else "bottom"
    name = provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 40))
    value = provider.ConsumeUnicodeNoSurrogates(provider.remaining_bytes())
    try:
        field = make_field(name, value, newline=newline)
    except (MailrouteError, ValueError):
        return
    original = parse(BASE[newline])
    again = parse(original.with_field(field, position=position).to_bytes())
    fields = again.headers.fields
    added, rest = (fields[0], fields[1:]) if position == "top" else (fields[-1], fields[:-1])
    if added.raw != field.raw or added.name != name:
        raise AssertionError("the new field does not read back as itself")
    body, before = again.root.body.span.to_bytes(), original.root.body.span.to_bytes()
    if rest != original.headers.fields or body != before:
        raise AssertionError("the rest of the message changed")
    expected = value.strip(" \t")
    if value.isascii() and added.value != expected:
        raise AssertionError("the value does not unfold to what was given")
    if not value.isascii() and added.decoded() != value:
        raise AssertionError("the encoded value does not decode to what was given")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
