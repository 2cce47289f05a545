"""M2: the scanner's limits hold while it scans, before memory grows with the input.

Before, ``max_parts`` was checked only after every delimiter line had been collected (48 MB of
``--b`` lines: 904 MB, then exit 65), and nothing bounded the header fields of all parts
together (38 MB of headers, 999 per part: 1.65 GB, accepted).

The complexity checks take the minimum of several runs of ``time.process_time`` (CPU time of
this process, so other load on the machine does not count) at n and 8n; peak memory is the
tracemalloc peak while parsing, the input already allocated.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from mailroute.errors import LimitExceededError
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.mime import parse
from mailroute.mime.defects import DefectKind
from tests.regressions.complexity import RATIO, growth

HEAD = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
MIB = 1024 * 1024


def delimiter_flood(lines: int) -> bytes:
    return HEAD + b"--b\r\n" * lines


def header_flood(fields: int, per_part: int = 999) -> bytes:
    part = b"--b\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(per_part)) + b"\r\nx\r\n"
    return HEAD + part * max(1, fields // per_part) + b"--b--\r\n"


def _parse(data: bytes, limits: Limits = DEFAULT_LIMITS) -> str:
    try:
        parse(data, limits=limits, on_ambiguity="record")
    except LimitExceededError as error:
        return error.limit
    return "accepted"


def _peak(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[str, int]:
    tracemalloc.start()
    try:
        outcome = _parse(data, limits)
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_delimiter_flood_stops_at_max_parts_plus_one() -> None:
    data = delimiter_flood(48 * MIB // 5)  # the review's 48 MB of "--b" lines
    outcome, peak = _peak(data)
    assert outcome == "max_parts"
    assert peak < 4 * MIB  # was 904 MB


def test_a_header_flood_stops_at_max_total_header_fields() -> None:
    data = header_flood(38 * MIB // 10)  # the review's 38 MB of headers, 999 per part
    outcome, peak = _peak(data)
    assert outcome == "max_total_header_fields"
    assert peak < 16 * MIB  # was 1.65 GB


@pytest.mark.parametrize(("make", "limit"), [
    (delimiter_flood, "max_parts"), (header_flood, "max_total_header_fields")],
    ids=["delimiters", "headers"])
def test_peak_memory_is_at_most_three_times_the_message_plus_a_constant(
        make: Callable[[int], bytes], limit: str) -> None:
    for size in (100_000, 800_000):
        data = make(size)
        outcome, peak = _peak(data)
        assert outcome in (limit, "accepted")
        assert peak <= 3 * len(data) + 16 * MIB, (size, peak)


# Limits high enough that nothing is refused: the scan itself must be linear.
UNBOUNDED = Limits(max_parts=10**7, max_total_header_fields=10**8)


def nested_comments(depth: int) -> bytes:
    """A Content-Type with ``depth`` nested comments, folded into short lines."""
    value = b"(" * depth + b")" * depth
    folded = b"\r\n ".join(value[i:i + 500] for i in range(0, len(value), 500))
    return b"Content-Type: text/plain " + folded + b"; charset=utf-8\r\n\r\nx\r\n"


@pytest.mark.parametrize(("make", "n"), [
    (delimiter_flood, 5_000), (header_flood, 10_000),
    (lambda n: HEAD + b"--bx\r\n" * n, 20_000), (nested_comments, 5_000)],
    ids=["delimiters", "headers", "prefix-lines", "nested-comments"])
@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, UNBOUNDED], ids=["default", "unbounded"])
def test_scan_time_is_linear(make: Callable[[int], bytes], n: int, limits: Limits) -> None:
    ratio = growth(make, lambda data: _parse(data, limits), n)
    assert ratio <= RATIO, ratio


def test_max_parts_is_exact() -> None:
    limits = Limits(max_parts=21)  # the root and 20 children
    body = b"--b\r\n\r\nx\r\n" * 20 + b"--b--\r\n"
    assert _parse(HEAD + body, limits) == "accepted"
    assert _parse(HEAD + b"--b\r\n\r\nx\r\n" + body, limits) == "max_parts"


def test_max_total_header_fields_is_exact() -> None:
    limits = Limits(max_total_header_fields=31)  # Content-Type of the root and 3 x 10 fields
    part = b"--b\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10)) + b"\r\nx\r\n"
    assert _parse(HEAD + part * 3 + b"--b--\r\n", limits) == "accepted"
    extra = b"--b\r\nX-Extra: v\r\n\r\nx\r\n"
    assert _parse(HEAD + part * 3 + extra + b"--b--\r\n", limits) == "max_total_header_fields"


def test_the_default_total_is_documented_and_above_one_entitys_limit() -> None:
    assert DEFAULT_LIMITS.max_total_header_fields == 20_000
    assert DEFAULT_LIMITS.max_total_header_fields > DEFAULT_LIMITS.max_header_fields


def test_a_flood_of_one_defect_is_recorded_once() -> None:
    prefixes = parse(HEAD + b"--bx\r\n" * 1000 + b"--b\r\n\r\nx\r\n--b--\r\n",
                     on_ambiguity="record")
    assert [d.kind for d in prefixes.defects].count(DefectKind.BOUNDARY_PREFIX_LINE) == 1
    bare_cr = parse(b"Subject: x\r\n" + b"\tx\rx\r\n" * 1000 + b"\r\nbody",
                    on_ambiguity="record")
    assert [d.kind for d in bare_cr.defects] == [DefectKind.BARE_CR_IN_HEADER]
