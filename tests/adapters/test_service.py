"""The shutdown drain shared by ``milter`` and ``serve``: messages in flight get the grace
period less what is kept for leaving, so the process is gone within the grace."""

from __future__ import annotations

import asyncio
import time

import pytest

from mailroute.adapters.service import EXIT_RESERVE, drain, exit_reserve


def test_the_default_grace_keeps_half_a_second_and_a_short_one_a_tenth() -> None:
    assert exit_reserve(5.0) == EXIT_RESERVE == 0.5
    assert exit_reserve(0.3) == pytest.approx(0.03)


def test_drain_waits_for_the_grace_less_the_reserve() -> None:
    started = time.monotonic()
    assert asyncio.run(drain(lambda: True, 1.0)) is False
    assert 0.9 <= time.monotonic() - started < 1.0


def test_a_short_grace_still_goes_mostly_to_the_messages_in_flight() -> None:
    started = time.monotonic()
    assert asyncio.run(drain(lambda: True, 0.3)) is False
    assert time.monotonic() - started >= 0.27


def test_drain_returns_as_soon_as_nothing_is_in_flight() -> None:
    ends = time.monotonic() + 0.2
    started = time.monotonic()
    assert asyncio.run(drain(lambda: time.monotonic() < ends, 5.0)) is True
    assert time.monotonic() - started < 1.0
