"""M3: decoding for the disclaimer copied a large body per line or per junk run: a lenient
base64 decode by regex substitution (48 MB: 4.25 GB) and line lists for ``position = "reply"``
(48 MB of short ``>`` lines: 4.3 GB). Both stay within 3x the message now."""

from __future__ import annotations

import base64
import random
import re

import pytest

from mailroute.disclaimer.insert import decode_body
from mailroute.mime import decode_payload, transfer
from mailroute.mime.defects import DefectKind
from mailroute.mime.transfer import long_line
from tests.regressions.complexity import (
    RATIO,
    fits_memory,
    growth,
    insert,
    message,
)

_LINE = base64.b64encode(b"x" * 57).decode()


def _junk_base64(n: int) -> str:
    return "\r\n".join(_LINE + "!!" for _ in range(n)) + "\r\n"


def _quoted_reply(n: int) -> str:
    return "Thanks.\r\n\r\nOn Monday Anna wrote:\r\n" + ">a\r\n" * n


def test_lenient_base64_decodes_in_bounded_memory() -> None:
    msg = message(_junk_base64(200_000), subtype="plain", encoding="base64")  # 16 MB
    size = len(msg.to_bytes())
    decoded = decode_payload(msg.root)
    assert decoded.defects == (DefectKind.INVALID_BASE64,)
    assert decoded.data == b"x" * 57 * 200_000
    assert fits_memory(size, lambda: decode_payload(msg.root))
    assert fits_memory(size, lambda: insert(msg))
    assert growth(lambda n: message(_junk_base64(n), subtype="plain", encoding="base64"),
                  lambda m: decode_payload(m.root), 20_000) <= RATIO


def test_lenient_base64_keeps_its_meaning() -> None:
    for text, data in (("QUJD!!REVG", b"ABCDEF"), ("QU=JD", b"ABC"), ("QUJDR", b"ABC"),
                       ("QUJDRA", b"ABCD"), ("QUJDREU", b"ABCDE")):
        msg = message(text + "*\r\n", subtype="plain", encoding="base64")
        assert decode_payload(msg.root).data == data


def test_reply_placement_in_bounded_memory_and_linear_time() -> None:
    msg = message(_quoted_reply(2_000_000), subtype="plain")  # 8 MB of short quoted lines
    size = len(msg.to_bytes())
    assert fits_memory(size, lambda: insert(msg, "reply"))
    assert growth(lambda n: message(_quoted_reply(n), subtype="plain"),
                  lambda m: insert(m, "reply"), 100_000) <= RATIO
    text, _ = decode_body(insert(msg, "reply").root)
    assert text is not None
    head, _, quoted = text.partition("On Monday Anna wrote:")
    assert "Confidential" in head
    assert "Confidential" not in quoted


def test_reply_placement_in_a_quoted_printable_body_rewrites_one_line() -> None:
    msg = message(_quoted_reply(2_000_000), subtype="plain", encoding="quoted-printable")
    size = len(msg.to_bytes())
    assert fits_memory(size, lambda: insert(msg, "reply"))
    out = insert(msg, "reply").root.body_bytes()
    original = msg.root.body_bytes()
    at = original.index(b"On Monday")
    assert out.startswith(original[:at])  # the sender's bytes before and after are kept
    assert out.endswith(original[at:])
    assert b"Confidential" in out[at:-len(original[at:]) or None]


def test_long_line_detection_matches_the_definition_and_grows_linearly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(5)
    for size in (65_536, 7):
        monkeypatch.setattr(transfer, "_LINE_SLICE", size)
        for _ in range(300):
            data = bytes(rnd.choice(b"a\r\n") if rnd.random() < 0.004 else 97
                         for _ in range(rnd.randint(0, 2500)))
            assert long_line(data) == bool(re.search(rb"[^\r\n]{999}", data))
            assert long_line(data, 76) == bool(re.search(rb"[^\r\n]{77}", data))
    assert growth(lambda n: b"x" * 990 + b"\r\n" * n, long_line, 500_000) <= RATIO
    many = b">a\r\n" * 2_000_000
    assert fits_memory(len(many), lambda: long_line(many))
