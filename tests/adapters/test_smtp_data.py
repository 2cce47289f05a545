"""DATA reading and writing of ``mailroute serve`` (mailroute.adapters.smtp_data)."""

from __future__ import annotations

import asyncio

import pytest

from mailroute.adapters.reinject import wire_format
from mailroute.adapters.smtp_data import DataReader, read_data, to_wire, unstuff


def read(stream: bytes, *, limit: int = 1 << 20, spool_above: int = 1 << 20,
         chunk: int = 64 * 1024) -> tuple[bytes | None, bytes]:
    """The content read_data returns (None when too big) and what is left in the stream."""
    async def run() -> tuple[bytes | None, bytes]:
        reader = asyncio.StreamReader(limit=chunk)
        reader.feed_data(stream)
        reader.feed_eof()
        got = await read_data(reader, DataReader(limit=limit, spool_above=spool_above))
        content = None if got.too_big else got.content()
        return content, await reader.read()
    return asyncio.run(run())


def test_the_end_is_crlf_dot_crlf_and_what_follows_is_left_for_the_next_command() -> None:
    assert read(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n") == (
        b"Subject: x\r\n\r\nbody\r\n", b"QUIT\r\n")


def test_an_empty_message_ends_at_the_first_line() -> None:
    assert read(b".\r\nRSET\r\n") == (b"", b"RSET\r\n")


@pytest.mark.parametrize("smuggled", [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r"])
def test_a_bare_lf_or_cr_dot_never_ends_data(smuggled: bytes) -> None:
    stream = b"a\r\n" + smuggled + b"MAIL FROM:<x@y>\r\n.\r\n"
    content, rest = read(stream)
    assert content is not None
    assert b"MAIL FROM:<x@y>" in content
    assert rest == b""


def test_dot_stuffed_lines_are_unstuffed_and_lines_ending_in_a_dot_are_content() -> None:
    content, _ = read(b"..leading\r\nend of sentence.\r\n...\r\n.\r\n")
    assert content == b".leading\r\nend of sentence.\r\n..\r\n"


def test_blocks_larger_than_the_reader_limit_and_a_terminator_across_them() -> None:
    body = b"".join(b"%05d" % n + b"x" * 70 + b"\r\n" for n in range(3000))
    content, rest = read(body + b".\r\nQUIT\r\n", chunk=1000)
    assert content == body
    assert rest == b"QUIT\r\n"


def test_spooled_content_is_read_back_whole(tmp_path: object) -> None:
    body = b"line\r\n" * 50_000
    assert read(body + b".\r\n", spool_above=4096) == (body, b"")


def test_over_the_limit_is_read_to_the_end_and_reported_not_kept() -> None:
    assert read(b"x" * 5000 + b"\r\n.\r\nQUIT\r\n", limit=1000) == (None, b"QUIT\r\n")


def test_to_wire_makes_crlf_lines_and_doubles_leading_dots() -> None:
    assert to_wire(b".a\n.\nb\r\n..c") == b"..a\r\n..\r\nb\r\n...c"
    assert unstuff(to_wire(b".a\r\n.\r\nb\r\n")) == b".a\r\n.\r\nb\r\n"


@pytest.mark.parametrize("data", [b"a\r\nb\r\n", b"a\nb\n", b"a\r\nb\n", b"a\r\r\nb", b"",
                                  b"a\rb\r\n"])
def test_wire_format_fast_path_agrees_with_the_regex(data: bytes) -> None:
    import re

    assert wire_format(data) == re.sub(rb"\r?\n", b"\r\n", data)


def test_a_dot_stuffed_after_a_bare_lf_is_removed_once() -> None:
    """smtplib stuffs the dot after a bare LF (its bytes messages keep their LF), as
    Postfix's smtpd unstuffs it; left there, the way out (CRLF, stuffed again) sent the
    content ".one" as "..one" (found with a real client's LF message through serve)."""
    content, _ = read(b"l1\n..two\n.one\r\n..three\r\n.\r\n")
    assert content == b"l1\n.two\none\r\n.three\r\n"
    assert to_wire(content) == b"l1\r\n..two\r\none\r\n..three\r\n"
    assert unstuff(b"a\r..b\r\n") == b"a\r..b\r\n"   # no line starts after a bare CR
