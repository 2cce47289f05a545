"""Regression: ``Message.wrap`` picks a boundary that occurs in no wrapped part, without
joining copies of the parts (a 28 MB message was copied twice just to choose a boundary)."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from mailroute.mime import build_leaf, parse

BODY = b"line with =_mailroute_" + b"a" * 24 + b" inside\r\n"


def test_wrap_skips_a_boundary_that_occurs_in_the_content(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    tokens = iter([b"\xaa" * 12, b"\xbb" * 12])
    monkeypatch.setattr(os, "urandom", lambda _: next(tokens))
    message = parse(b"Subject: x\r\nContent-Type: text/plain\r\n\r\n" + BODY)
    wrapped = message.wrap((), after=(build_leaf("text/plain", "extra\r\n"),))
    assert wrapped.root.content_type.param("boundary") == "=_mailroute_" + "b" * 24
    assert wrapped.part((0,)).body_bytes() == BODY


def test_wrap_does_not_copy_a_large_entity() -> None:
    big = b"Subject: x\r\nContent-Type: application/octet-stream\r\n\r\n" + b"x" * 8_000_000
    message = parse(big)
    tracemalloc.start()
    wrapped = message.wrap((), after=(build_leaf("text/plain", "extra\r\n"),))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000
    assert wrapped.part((0,)).body_bytes() == big.split(b"\r\n\r\n", 1)[1]
