"""The milter codec: a recorded Postfix 3.7 session replayed, every framing error, every
local misuse, the wire form of actions, and the h11 property under hypothesis."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroute.protocols import milter as pm
from tests.protocols.helpers import (
    OFFER,
    at_end_of_message,
    events,
    negotiated,
    optneg,
    pkt,
    pump,
)

DATA = Path(__file__).parent / "data"
RECORDED_MTA = (DATA / "postfix-3.7-session.mta").read_bytes()
RECORDED_FILTER = (DATA / "postfix-3.7-session.filter").read_bytes()
# What the adapter negotiated when the session was recorded: every step shown, no reply
# to any but MAIL, the connection macros per stage.
RECORDED_ACTIONS = pm.ActionFlag(0x133)
RECORDED_PROTOCOL = pm.ProtocolFlag(0x1FB180)
RECORDED_MACROS: tuple[tuple[int, bytes], ...] = (
    (pm.Stage.CONNECT, b"j {daemon_name} {client_addr}"),
    (pm.Stage.HELO, b"{tls_version} {cert_subject} {cert_issuer} {verify}"),
    (pm.Stage.ENVFROM, b"i {auth_authen} {auth_type}"),
    (pm.Stage.EOM, b"i"),
)


def replay(chunks: list[bytes]) -> tuple[list[pm.Event], bytes]:
    """Answer the recorded session the way the adapter did (disclaimer policy)."""
    conn, seen, sent = pm.MilterConnection(), [], bytearray()

    def answer(event: pm.Event) -> None:
        if isinstance(event, pm.OptionNegotiation):
            sent.extend(conn.send(pm.NegotiateReply(RECORDED_ACTIONS & event.actions,
                                                    RECORDED_PROTOCOL & event.protocol,
                                                    RECORDED_MACROS)))
        elif isinstance(event, pm.EndOfMessage):
            sent.extend(conn.send(pm.ReplaceBody(b"hello\r\n\r\nDisclaimer.\r\n")))
            sent.extend(conn.send(pm.Accept()))
        elif conn.owed is not None:
            sent.extend(conn.send(pm.Continue()))

    for chunk in chunks:
        seen += pump(conn, answer, chunk)
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), pm.NeedData)
    assert conn.state is pm.State.CLOSED
    return seen, bytes(sent)


def test_recorded_postfix_session_replays_to_the_recorded_answers() -> None:
    seen, sent = replay([RECORDED_MTA])
    assert sent == RECORDED_FILTER
    kinds = [type(e).__name__ for e in seen if not isinstance(e, pm.Macros)]
    assert kinds == ["OptionNegotiation", "Connect", "Helo", "MailFrom", "RcptTo", "RcptTo",
                     "Data", *["Header"] * 6, "EndOfHeaders", "BodyChunk", "EndOfMessage",
                     "Abort", "Abort", "Quit"]
    headers = [e for e in seen if isinstance(e, pm.Header)]
    assert headers[-1] == pm.Header(b"X-Multi", b" one\n two")   # leading space kept
    connect = next(e for e in seen if isinstance(e, pm.Connect))
    assert connect == pm.Connect(b"localhost", b"4", 37724, b"127.0.0.1")
    mail = next(e for e in seen if isinstance(e, pm.MailFrom))
    assert mail == pm.MailFrom(b"<a@corp.example>", (b"size=157",))
    macros = [e for e in seen if isinstance(e, pm.Macros)]
    assert macros[0].as_dict()[b"{client_addr}"] == b"127.0.0.1"


def test_recorded_session_byte_by_byte_gives_the_same_events() -> None:
    whole, sent_whole = replay([RECORDED_MTA])
    split, sent_split = replay([RECORDED_MTA[i:i + 1] for i in range(len(RECORDED_MTA))])
    assert split == whole
    assert sent_split == sent_whole


def test_empty_macro_packets_make_no_event_when_asked_once_the_conversation_is_open() -> None:
    conn = pm.MilterConnection(skip_empty_macros=True)
    assert events(conn, optneg()) == [OFFER]
    conn.send(pm.NegotiateReply(pm.ActionFlag(0x3F), pm.ProtocolFlag.NONE))
    got = pump(conn, lambda event: conn.send(pm.Continue()) if conn.owed else None,
               pkt(b"D", b"C") + pkt(b"C", b"host\x004\x00\x19127.0.0.1\x00")
               + pkt(b"D", b"H") + pkt(b"H", b"client\x00")
               + pkt(b"D", b"Mi\x00Q1\x00") + pkt(b"M", b"<a@x>\x00"))
    assert [type(event).__name__ for event in got] == ["Connect", "Helo", "Macros", "MailFrom"]
    assert got[2] == pm.Macros(b"M", ((b"i", b"Q1"),))


def test_empty_macro_packets_are_events_by_default() -> None:
    conn = negotiated()
    assert events(conn, pkt(b"D", b"C")) == [pm.Macros(b"C", ())]


def test_a_skipped_empty_macro_packet_still_breaks_the_rules() -> None:
    conn = pm.MilterConnection(skip_empty_macros=True)
    with pytest.raises(pm.RemoteProtocolError, match="before option negotiation"):
        events(conn, pkt(b"D", b"C"))
    conn = pm.MilterConnection(skip_empty_macros=True)
    events(conn, optneg())
    conn.send(pm.NegotiateReply(pm.ActionFlag(0x3F), pm.ProtocolFlag.NONE))
    events(conn, pkt(b"C", b"host\x004\x00\x19127.0.0.1\x00"))   # owed: its reply
    with pytest.raises(pm.RemoteProtocolError, match="before the reply"):
        events(conn, pkt(b"D", b"H"))


FRAMING_ERRORS = {
    "zero length": b"\x00\x00\x00\x00",
    "over the cap": struct.pack(">I", pm.DEFAULT_MAX_PACKET + 1) + b"B",
    "unknown command": pkt(b"Z"),
    "optneg too short": pkt(b"O", b"\x00\x00\x00\x06"),
    "optneg too long": pkt(b"O", b"\x00" * 13),
    "optneg version 1": optneg(version=1),
}
AFTER_NEGOTIATION_ERRORS = {
    "macro without stage": pkt(b"D"),
    "macro not NUL-terminated": pkt(b"DC", b"j\x00x"),
    "macro name without value": pkt(b"DC", b"j\x00"),
    "connect truncated": pkt(b"C", b"host"),
    "connect unknown family": pkt(b"C", b"host\x00X\x00\x19a\x00"),
    "connect port truncated": pkt(b"C", b"host\x004\x00"),
    "connect address not terminated": pkt(b"C", b"host\x004\x00\x19a"),
    "connect family U with data": pkt(b"C", b"host\x00Uextra"),
    "helo not terminated": pkt(b"H", b"name"),
    "helo two strings": pkt(b"H", b"a\x00b\x00"),
    "unknown not terminated": pkt(b"U", b"VRFY"),
    "quit with data": pkt(b"Q", b"x"),
    "abort with data": pkt(b"A", b"x"),
    "header before mail": pkt(b"L", b"Subject\x00 x\x00"),
    "body before mail": pkt(b"B", b"x"),
    "end of message before mail": pkt(b"E"),
    "second negotiation": optneg(),
}


@pytest.mark.parametrize("data", FRAMING_ERRORS.values(), ids=FRAMING_ERRORS.keys())
def test_framing_errors_before_negotiation(data: bytes) -> None:
    conn = pm.MilterConnection()
    with pytest.raises(pm.RemoteProtocolError):
        events(conn, data)
    assert conn.state is pm.State.ERROR
    with pytest.raises(pm.RemoteProtocolError):
        conn.next_event()
    with pytest.raises(pm.LocalProtocolError):
        conn.send(pm.Continue())


@pytest.mark.parametrize("data", AFTER_NEGOTIATION_ERRORS.values(),
                         ids=AFTER_NEGOTIATION_ERRORS.keys())
def test_framing_and_order_errors_after_negotiation(data: bytes) -> None:
    conn = negotiated()
    events(conn, pkt(b"C", b"host\x004\x00\x19127.0.0.1\x00"))
    conn.send(pm.Continue())
    with pytest.raises(pm.RemoteProtocolError):
        events(conn, data)
    assert conn.state is pm.State.ERROR


@pytest.mark.parametrize(("command", "data"), [
    (b"M", b"\x00"), (b"M", b"<a@b>"), (b"R", b"<a@b>"), (b"T", b"x"), (b"L", b"Subject\x00"),
    (b"L", b"\x00value\x00"), (b"N", b"x"),
])
def test_message_command_errors(command: bytes, data: bytes) -> None:
    conn = negotiated()
    for good in (pkt(b"C", b"h\x00U"), pkt(b"M", b"<a@b>\x00")):
        events(conn, good)
        conn.send(pm.Continue())
    if command == b"M":
        with pytest.raises(pm.RemoteProtocolError):
            events(conn, pkt(command, data))
        return
    events(conn, pkt(b"R", b"<c@d>\x00"))
    conn.send(pm.Continue())
    with pytest.raises(pm.RemoteProtocolError):
        events(conn, pkt(command, data))


def test_command_before_negotiation_is_an_error() -> None:
    for data in (pkt(b"C", b"h\x00U"), pkt(b"A"), pkt(b"DC", b"j\x00x\x00")):
        with pytest.raises(pm.RemoteProtocolError):
            events(pm.MilterConnection(), data)


def test_command_while_a_reply_is_owed_is_an_error() -> None:
    conn = negotiated()
    events(conn, pkt(b"C", b"h\x00U"))
    with pytest.raises(pm.RemoteProtocolError, match="before the reply"):
        events(conn, pkt(b"H", b"x\x00"))


def test_stream_closed_inside_a_packet_is_an_error() -> None:
    conn = pm.MilterConnection()
    conn.receive_data(optneg()[:7])
    conn.receive_data(b"")
    with pytest.raises(pm.RemoteProtocolError, match="inside a packet"):
        conn.next_event()


def test_data_after_quit_is_an_error() -> None:
    conn = negotiated()
    with pytest.raises(pm.RemoteProtocolError, match="after quit"):
        events(conn, pkt(b"Q") + pkt(b"A"))


def test_oversized_length_is_refused_before_the_packet_arrives() -> None:
    conn = pm.MilterConnection(max_packet=1000)
    with pytest.raises(pm.RemoteProtocolError, match="exceeds"):
        events(conn, struct.pack(">I", 1001))


def _owed(conn: pm.MilterConnection) -> pm.Command | None:
    """``conn.owed`` read afresh: mypy keeps an attribute narrowed across the calls that
    change it."""
    return conn.owed


def test_no_reply_flags_and_repeats() -> None:
    conn = negotiated(protocol=pm.ProtocolFlag.NR_HDR | pm.ProtocolFlag.NR_BODY
                      | pm.ProtocolFlag.NR_CONN)
    events(conn, pkt(b"C", b"h\x00U"))
    assert conn.owed is None
    events(conn, pkt(b"H", b"a\x00"))
    conn.send(pm.Continue())
    events(conn, pkt(b"H", b"b\x00"))      # EHLO again
    conn.send(pm.Continue())
    events(conn, pkt(b"M", b"<a@b>\x00"))
    conn.send(pm.Continue())
    found = events(conn, pkt(b"L", b"A\x00 1\x00") + pkt(b"L", b"B\x00 2\x00")
                   + pkt(b"B", b"x") + pkt(b"B", b"y"))
    assert [type(e) for e in found] == [pm.Header, pm.Header, pm.BodyChunk, pm.BodyChunk]
    assert conn.owed is None
    events(conn, pkt(b"E"))
    assert _owed(conn) is pm.Command.BODYEOB
    conn.send(pm.Accept())
    events(conn, pkt(b"M", b"<next@b>\x00"))   # a second transaction
    conn.send(pm.Continue())
    events(conn, pkt(b"A") + pkt(b"K"))
    assert conn.phase == 0
    events(conn, pkt(b"C", b"h\x00U"))          # the next SMTP connection


def test_negotiation_asking_more_than_offered_is_a_local_error() -> None:
    conn = pm.MilterConnection()
    events(conn, optneg(actions=0x01, protocol=0x0))
    with pytest.raises(pm.LocalProtocolError):
        conn.send(pm.NegotiateReply(pm.ActionFlag.CHGBODY, pm.ProtocolFlag.NONE))


def test_negotiation_reply_carries_macro_lists() -> None:
    conn = pm.MilterConnection()
    events(conn, optneg())
    wire = conn.send(pm.NegotiateReply(pm.ActionFlag.ADDHDRS, pm.ProtocolFlag.NONE,
                                       ((pm.Stage.EOM, b"i"),)))
    assert wire == pkt(b"O", struct.pack(">IIII", 6, 1, 0, 5) + b"i\x00")


@pytest.mark.parametrize("action", [
    pm.AddHeader(b"X", b" y"), pm.ReplaceBody(b"x"), pm.Quarantine(b"why"),
    pm.ChangeHeader(1, b"X", b""),
])
def test_modifications_outside_end_of_message_are_local_errors(action: pm.Action) -> None:
    conn = negotiated()
    events(conn, pkt(b"C", b"h\x00U"))
    with pytest.raises(pm.LocalProtocolError, match="end-of-message"):
        conn.send(action)
    assert conn.state is pm.State.ERROR


def test_modification_not_negotiated_is_a_local_error() -> None:
    conn = at_end_of_message(actions=pm.ActionFlag.ADDHDRS)
    conn.send(pm.AddHeader(b"X", b" y"))
    with pytest.raises(pm.LocalProtocolError, match="not negotiated"):
        conn.send(pm.ReplaceBody(b"x"))


def test_body_replacement_must_be_one_run() -> None:
    conn = at_end_of_message()
    conn.send(pm.ReplaceBody(b"a"))
    conn.send(pm.ReplaceBody(b"b"))
    conn.send(pm.AddHeader(b"X", b" y"))
    with pytest.raises(pm.LocalProtocolError, match="contiguous"):
        conn.send(pm.ReplaceBody(b"c"))


def test_reply_without_command_and_skip_rules() -> None:
    conn = negotiated()
    with pytest.raises(pm.LocalProtocolError, match="without a command"):
        conn.send(pm.Continue())
    conn = at_end_of_message()
    with pytest.raises(pm.LocalProtocolError, match="skip"):
        conn.send(pm.Skip())


def test_progress_keeps_the_reply_owed() -> None:
    conn = at_end_of_message()
    assert conn.send(pm.Progress()) == pkt(b"p")
    assert conn.owed is pm.Command.BODYEOB
    assert conn.send(pm.Accept()) == pkt(b"a")
    assert conn.owed is None


def test_wire_forms() -> None:
    assert pm.InsertHeader(0, b"X-A", b" v").packets() == [
        pkt(b"i", b"\x00\x00\x00\x00X-A\x00 v\x00")]
    assert pm.ChangeHeader(2, b"X-A", b"").packets() == [
        pkt(b"m", b"\x00\x00\x00\x02X-A\x00\x00")]
    assert pm.AddRecipient(b"<x@y>").packets() == [pkt(b"+", b"<x@y>\x00")]
    assert pm.AddRecipient(b"<x@y>", b"NOTIFY=NEVER").packets() == [
        pkt(b"2", b"<x@y>\x00NOTIFY=NEVER\x00")]
    assert pm.DeleteRecipient(b"<x@y>").packets() == [pkt(b"-", b"<x@y>\x00")]
    assert pm.ChangeFrom(b"<x@y>").packets() == [pkt(b"e", b"<x@y>\x00")]
    assert pm.Quarantine(b"held").packets() == [pkt(b"q", b"held\x00")]
    assert pm.Discard().packets() == [pkt(b"d")]
    assert pm.TempFail().packets() == [pkt(b"t")]
    assert pm.Reject().packets() == [pkt(b"r")]


def test_reply_code_multi_line_and_percent() -> None:
    reply = pm.ReplyCode(550, "5.7.1", ("first 100%", "second"))
    assert reply.packets() == [pkt(b"y", b"550-5.7.1 first 100%%\r\n550 5.7.1 second\x00")]


@pytest.mark.parametrize(("code", "status", "lines"), [
    (250, "2.0.0", ("ok",)), (550, "4.7.1", ("x",)), (451, "4.3", ("x",)),
    (451, "4.3.0", ()), (451, "4.3.0", ("a\r\nb",)),
])
def test_reply_code_validation(code: int, status: str, lines: tuple[str, ...]) -> None:
    with pytest.raises(pm.LocalProtocolError):
        pm.ReplyCode(code, status, lines)


@pytest.mark.parametrize(("name", "value"), [
    (b"", b" x"), (b"Bad:Name", b" x"), (b"Bad Name", b" x"), (b"X", b" a\nb"),
    (b"X", b" a\0"), (b"X", b" a\rb"),
])
def test_header_action_validation(name: bytes, value: bytes) -> None:
    with pytest.raises(pm.LocalProtocolError):
        pm.AddHeader(name, value)


def test_folded_header_values_are_allowed() -> None:
    assert pm.InsertHeader(0, b"X", b" a\n b").value == b" a\n b"
    with pytest.raises(pm.LocalProtocolError):
        pm.ChangeHeader(0, b"X", b" y")


def test_body_replacement_chunks_are_at_most_65535_bytes() -> None:
    body = bytes(range(256)) * 1000
    packets = pm.ReplaceBody(body).packets()
    assert [len(p) - 5 for p in packets] == [65535, 65535, 65535, 59395]
    assert b"".join(p[5:] for p in packets) == body
    assert pm.ReplaceBody(b"").packets() == [pkt(b"b")]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=50))
def test_arbitrary_bytes_give_events_or_a_remote_error(data: bytes, step: int) -> None:
    for prefix in (b"", optneg()):
        conn = pm.MilterConnection(max_packet=4096)
        stream = prefix + data

        def answer(event: pm.Event, conn: pm.MilterConnection = conn) -> None:
            if isinstance(event, pm.OptionNegotiation):
                conn.send(pm.NegotiateReply(pm.ActionFlag.NONE,
                                            pm.ProtocolFlag(0x1FFFFF) & event.protocol,
                                            version=min(event.version, 6)))
            elif conn.owed is not None:
                conn.send(pm.Continue())

        try:
            for i in range(0, len(stream), step):
                pump(conn, answer, stream[i:i + step])
            conn.receive_data(b"")
            pump(conn, answer)
        except pm.RemoteProtocolError:
            assert conn.state is pm.State.ERROR


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"C", b"H", b"M", b"R", b"T", b"L", b"N", b"B", b"E", b"A",
                                 b"K", b"U", b"D", b"Q"]), max_size=30),
       st.binary(max_size=20))
def test_arbitrary_command_sequences_give_events_or_a_remote_error(
        commands: list[bytes], payload: bytes) -> None:
    conn = negotiated(protocol=pm.ProtocolFlag(0))

    def answer(event: pm.Event) -> None:
        assert not isinstance(event, pm.OptionNegotiation)
        if conn.owed is not None:
            conn.send(pm.Continue())

    try:
        for command in commands:
            pump(conn, answer, pkt(command, payload))
    except pm.RemoteProtocolError:
        assert conn.state is pm.State.ERROR


def test_offer_constant_matches_helper() -> None:
    assert events(pm.MilterConnection(), optneg()) == [OFFER]
