"""The cheaper aiosmtpd session of ``mailroute serve`` behaves as aiosmtpd's own."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from typing import Protocol, TypedDict, cast

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroute.adapters.serve import GatewaySMTP, Hooks
from mailroute.adapters.smtp_fast import FastSMTP, SessionTemplate, has_control_character
from mailroute.pipeline import Pipeline
from tests.serve.harness import InProcess
from tests.smtpsink import SmtpSink


class _Settings(TypedDict):
    data_size_limit: int
    enable_SMTPUTF8: bool
    hostname: str
    ident: str
    timeout: float


class _ConnectionState(Protocol):
    """What asyncio's StreamReaderProtocol keeps per connection (private: typeshed has none)."""

    _stream_reader: asyncio.StreamReader | None
    _closed: asyncio.Future[None]


SETTINGS: _Settings = {"data_size_limit": 1000, "enable_SMTPUTF8": True, "hostname": "gw.test",
                       "ident": "mailroute", "timeout": 30.0}


def _built_both_ways() -> tuple[SMTP, FastSMTP, FastSMTP]:
    """One session set up by aiosmtpd's ``__init__``, two from one template."""
    async def build() -> tuple[SMTP, FastSMTP, FastSMTP]:
        handler = Hooks()
        template = SessionTemplate(FastSMTP, handler, **SETTINGS)
        return SMTP(handler, **SETTINGS), FastSMTP(template), FastSMTP(template)

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(build())
    finally:
        loop.close()


REFERENCE, FAST, OTHER = _built_both_ways()


def test_a_session_from_the_template_has_what_aiosmtpds_init_sets() -> None:
    reference, fast = vars(REFERENCE), vars(FAST)
    assert set(reference) <= set(fast)
    for name, value in reference.items():
        got = fast[name]
        if name in ("_smtp_methods", "_auth_methods"):
            assert set(got) == set(value), name
            for key, method in got.items():
                bound = method.method if name == "_auth_methods" else method
                if inspect.ismethod(bound) and isinstance(bound.__self__, SMTP):
                    assert bound.__self__ is FAST, (name, key)   # bound to its own session
        elif isinstance(value, (str, int, float, bool, type(None))):
            assert got == value, name


def test_sessions_from_one_template_share_no_connection_state() -> None:
    fast, other = cast("_ConnectionState", FAST), cast("_ConnectionState", OTHER)
    assert fast._stream_reader is not other._stream_reader
    assert fast._closed is not other._closed
    assert FAST._smtp_methods is not OTHER._smtp_methods
    assert FAST._smtp_methods["MAIL"].__self__ is FAST
    assert OTHER._smtp_methods["MAIL"].__self__ is OTHER
    assert FAST._handle_hooks is OTHER._handle_hooks      # the one shared handler


def test_a_template_is_for_one_session_class() -> None:
    async def build() -> None:
        FastSMTP(SessionTemplate(GatewaySMTP, Hooks(), **SETTINGS))

    with pytest.raises(TypeError, match="a template for GatewaySMTP"):
        asyncio.run(build())


ADDRESSES = [
    "<alice@corp.example>", "<alice@corp.example> SIZE=10 BODY=8BITMIME", "<>", "<> SIZE=1",
    "alice@corp.example", "<Alice.B+x@Corp.Example>x", "<a..b@c>", "<.a@c>", "<a@c.>",
    "<a@-c>", "<a@c..d>", "<a@[1.2.3.4]>", '<"a b"@c>', "<a@b", "<a>", "<@x:a@b>", "<a@b>>",
    "<a@b><c@d>", " <a@b>", "<a@b> ", "<ä@b>", "<a@bä>", "<a@b_c>", "<a@1.2>", "<a@b> (c)",
    "<a@b>(c)", "<a@b>\tSIZE=1", "<a@b>  SIZE=1", "<a@b> SIZE=1 (c)", "<a@b.>", "<a@b-.c>",
    "<a(c)@b>", "<a@b c>", "<a @b>", "<{x}|~`!#$%&'*/=?^_@y-z.example>", "<a@b>x y",
]


def _reference(text: str) -> tuple[str | None, str | None]:
    """aiosmtpd's parsing; where the parser itself fails (``<`` alone), or the address part
    has a control character (which it would read as a space), malformed."""
    try:
        address, rest = REFERENCE._getaddr(text)
    except (IndexError, AttributeError, NameError):
        return None, None
    if address is not None and has_control_character(text, rest):
        return None, None
    return address, rest


def test_the_fast_address_path_gives_what_aiosmtpds_parser_gives() -> None:
    for text in ADDRESSES:
        assert FAST._getaddr(text) == _reference(text), text


@pytest.mark.parametrize("text", ["<a@x\r.example>", "<a\tb@x.example>", "<a\x00b@x>",
                                  "<a@b\x1b>", "<\"a\rb\"@x>", "a@x\r.example", "<a@x\n>"])
def test_a_control_character_in_the_address_is_malformed_where_aiosmtpd_reads_a_space(
        text: str) -> None:
    assert FAST._getaddr(text) == (None, None)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="aZ09.@<>-_+ ()[]\"\\:,;\tä=", max_size=30))
def test_any_address_text_parses_as_aiosmtpd_parses_it(text: str) -> None:
    assert FAST._getaddr(text) == _reference(text)


_ATOMS = st.text(alphabet="aZ09!#$%&'*+/=?^_`{|}~-", max_size=4)
_LABELS = st.text(alphabet="aZ09-_", max_size=4)
_AFTER = st.lists(st.sampled_from([" ", "\t", "(", ")", "x", "SIZE=1", "<", ">", "@", "ä",
                                   "\x0b", "\xa0", "\x1c", "\u3000", "\x85", "\x00"]),
                  max_size=4).map("".join)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_ATOMS, min_size=1, max_size=3), st.lists(_LABELS, min_size=1, max_size=3),
       _AFTER)
def test_paths_near_the_fast_form_parse_as_aiosmtpd_parses_them(
        atoms: list[str], labels: list[str], after: str) -> None:
    text = f"<{'.'.join(atoms)}@{'.'.join(labels)}>{after}"
    assert FAST._getaddr(text) == _reference(text)


def test_an_address_that_breaks_aiosmtpds_parser_is_malformed_not_an_internal_error() -> None:
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port) as serve, serve.client() as smtp:
        smtp.ehlo()
        assert smtp.docmd("MAIL FROM:<")[0] == 553
        assert smtp.docmd("MAIL FROM:<alice@corp.example>")[0] == 250
        assert smtp.docmd("RCPT TO:<")[0] == 553


def test_the_local_part_limit_still_applies_on_the_fast_path() -> None:
    FAST.local_part_limit = 5
    try:
        assert FAST._getaddr("<abcdef@x.example>") == (None, None)
        assert FAST._getaddr("<abcde@x.example>") == ("abcde@x.example", "")
    finally:
        del FAST.local_part_limit


def test_an_idle_client_is_disconnected_after_the_timeout_and_commands_postpone_it() -> None:
    with SmtpSink() as sink, InProcess(Pipeline(), sink.port, client_timeout=0.6) as serve, \
            socket.create_connection(("127.0.0.1", serve.port), timeout=5) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220")
        started = time.monotonic()
        for _ in range(5):            # 1.5 s of activity, every 0.3 s
            time.sleep(0.3)
            raw.sendall(b"NOOP\r\n")
            assert reader.readline().startswith(b"250")
        idle = time.monotonic()
        assert reader.readline() == b""          # then idle: closed by us
        closed = time.monotonic()
    assert idle - started > 1.4
    assert 0.4 < closed - idle < 2.0
