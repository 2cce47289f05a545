"""atheris harness for the scanner: any input parses (and emits itself) or raises a
MailrouteError. Not collected by pytest; run with fuzz/run.

    .venv/bin/python fuzz/scan_fuzz.py -max_total_time=60 -max_len=8192 -rss_limit_mb=2048
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from mailroute.errors import MailrouteError
    from mailroute.mime import decode_payload, parse


def test_one_input(data: bytes) -> None:
    """The property: identity or a documented error, and decoding never crashes."""
    try:
        message = parse(data, on_ambiguity="record")
    except MailrouteError:
        return
    if message.root.to_bytes() != data:
        raise AssertionError("parse/emit is not the identity")
    for _, part in message.walk():
        if not part.is_multipart:
            with contextlib.suppress(MailrouteError):
                decode_payload(part)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
