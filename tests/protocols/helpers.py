"""Tiny helpers for the milter protocol tests: build MTA packets, collect events."""

from __future__ import annotations

import struct
from collections.abc import Callable

from mailroute.protocols import milter as pm

ALL_EDITS = pm.ActionFlag(0x3F)
OFFER = pm.OptionNegotiation(6, pm.ActionFlag(0x1FF), pm.ProtocolFlag(0x1FFFFF))


def pkt(command: bytes, data: bytes = b"") -> bytes:
    """One MTA packet."""
    return struct.pack(">I", len(data) + 1) + command + data


def optneg(version: int = 6, actions: int = 0x1FF, protocol: int = 0x1FFFFF) -> bytes:
    """The MTA's option negotiation packet."""
    return pkt(b"O", struct.pack(">III", version, actions, protocol))


def events(conn: pm.MilterConnection, data: bytes = b"") -> list[pm.Event]:
    """Feed ``data`` and return every event it completes, answering none."""
    return pump(conn, lambda event: None, data)


def pump(conn: pm.MilterConnection, answer: Callable[[pm.Event], object],
         data: bytes = b"") -> list[pm.Event]:
    """Feed ``data``; take events one at a time, answering each before parsing the next
    (the MTA waits for replies, so a recorded stream is only valid read this way)."""
    if data:
        conn.receive_data(data)
    found: list[pm.Event] = []
    while True:
        event = conn.next_event()
        if isinstance(event, pm.NeedData):
            return found
        found.append(event)
        answer(event)


def negotiated(actions: pm.ActionFlag = ALL_EDITS,
               protocol: pm.ProtocolFlag = pm.ProtocolFlag.NONE) -> pm.MilterConnection:
    """A connection after negotiation with the given grants."""
    conn = pm.MilterConnection()
    assert events(conn, optneg()) == [OFFER]
    conn.send(pm.NegotiateReply(actions, protocol))
    return conn


def at_end_of_message(actions: pm.ActionFlag = ALL_EDITS) -> pm.MilterConnection:
    """A connection waiting for the reply to end-of-message."""
    conn = negotiated(actions)
    for command, data in ((b"C", b"host\x004\x00\x19127.0.0.1\x00"), (b"M", b"<a@b>\x00"),
                          (b"R", b"<c@d>\x00"), (b"L", b"Subject\x00 hi\x00"), (b"N", b""),
                          (b"B", b"body\r\n"), (b"E", b"")):
        events(conn, pkt(command, data))
        if command != b"E":
            conn.send(pm.Continue())
    assert conn.owed is pm.Command.BODYEOB
    return conn
