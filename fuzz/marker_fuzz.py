"""atheris harness for marker verification: on any input that parses, verification returns a
verdict (never raises), and no input verifies without the key. Not collected by pytest.

    .venv/bin/python fuzz/marker_fuzz.py -max_total_time=60 -max_len=4096 -rss_limit_mb=2048
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from mailroute.errors import MailrouteError
    from mailroute.marker import check_message, mark, parse_key_ring
    from mailroute.mime import parse

SECRET = "QS1zZWNyZXQtdGhhdC1tdXN0LW5ldmVyLWxlYWstMDE="  # noqa: S105 - a fuzzing key
RING = parse_key_ring({"tag": "g7k2qd", "org_id": "example.net",
                       "key": [{"id": "k1", "secret": SECRET}]})
NOW = 1_790_000_000
PREFIX = b"X-Mailroute-Mark: v1.g7k2qd.k1.1790000000."


def test_one_input(data: bytes) -> None:
    """Fuzzed bytes become the tail of a marker field and the rest of the message."""
    try:
        message = parse(PREFIX + data, on_ambiguity="record")
    except MailrouteError:
        return
    check = check_message(message, RING, now=NOW)
    if check.valid:
        raise AssertionError("a marker nobody minted verified")
    try:
        marked, _ = mark(message, RING, now=NOW, direction=None)
    except MailrouteError:
        return
    again = parse(marked.to_bytes(), on_ambiguity="record")
    if not check_message(again, RING, now=NOW).valid:
        raise AssertionError("a freshly minted marker did not verify")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
