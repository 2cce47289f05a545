"""Real Postfix 3.7 conversations, replayed through the milter adapter in-process.

The recordings (tests/adapters/milter_recordings.py) were taken from a real Postfix with
the milter as it was before its per-message CPU was cut: whatever the adapter's and the
protocol's fast paths do, the answers must stay the same bytes, however the MTA's writes
are split into reads.
"""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroute.adapters.messagelog import MessageLog
from mailroute.adapters.milter import MilterConnectionHandler, MilterServer
from mailroute.policy import load_policy
from tests.adapters.milter_recordings import (
    DISCLAIMER_TEXT,
    RECORDED,
    Conversation,
    load_conversations,
    write_policies,
)

POLICIES = ["empty", "disclaimer"]
#: Per policy: the server (its policy as recorded) and its message log's lines.
Servers = dict[str, tuple[MilterServer, io.StringIO]]
CONVERSATIONS = load_conversations(RECORDED, POLICIES)


class MemoryTransport(asyncio.Transport):
    """What the handler writes, kept; the calls uvloop's transport offers."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def replay(server: MilterServer, reads: list[bytes]) -> tuple[bytes, bool]:
    """Feed ``reads`` to a new connection; what it answered and whether it closed."""
    transport = MemoryTransport()

    async def converse() -> None:  # the handler belongs to a running event loop
        handler = MilterConnectionHandler(server)
        handler.connection_made(transport)
        for data in reads:
            handler.data_received(data)
        handler.eof_received()
        handler.connection_lost(None)

    asyncio.run(converse())
    return b"".join(transport.written), transport.closed


def mta_reads(talk: Conversation) -> list[bytes]:
    return [data for from_mta, data in talk if from_mta]


def answers(talk: Conversation) -> bytes:
    return b"".join(data for from_mta, data in talk if not from_mta)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Servers:
    root = tmp_path_factory.mktemp("policies")
    write_policies(root)
    made = {}
    for policy in POLICIES:
        lines = io.StringIO()
        logger = logging.getLogger(f"tests.recorded.{policy}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler(lines))
        made[policy] = (MilterServer(load_policy(str(root / f"{policy}.toml")),
                                     message_log=MessageLog("text", logger)), lines)
    return made


@pytest.mark.parametrize("policy", POLICIES)
def test_recorded_conversation_gets_the_recorded_answers(
        policy: str, servers: Servers) -> None:
    server, lines = servers[policy]
    talk = CONVERSATIONS[policy]
    got, closed = replay(server, mta_reads(talk))
    assert got == answers(talk)
    assert closed  # Postfix said quit
    line = lines.getvalue().splitlines()[-1]
    assert line.startswith("accept 2.0.0 ")
    assert "sender=<alice@corp.example> recipients=1" in line
    assert "client=127.0.0.1 helo=vm " in line  # smtp-source on the recording machine


def test_the_disclaimer_recording_replaces_the_body_once() -> None:
    """The recording is what it claims: the disclaimer policy's answer carries the text."""
    assert answers(CONVERSATIONS["disclaimer"]).count(
        DISCLAIMER_TEXT.splitlines()[1].encode()) == 1
    assert answers(CONVERSATIONS["empty"]).endswith(b"\x00\x00\x00\x01a")  # accept only


def turns(talk: Conversation) -> list[bytes]:
    """What the MTA wrote between two answers, joined: it waits for each answer it owes."""
    found: list[bytes] = []
    answered = True
    for from_mta, data in talk:
        if from_mta:
            if answered:
                found.append(b"")
            found[-1] += data
        answered = not from_mta
    return found


@settings(max_examples=40, deadline=None)
@given(policy=st.sampled_from(POLICIES),
       cuts=st.lists(st.tuples(st.integers(0, 3), st.integers(min_value=0)), max_size=12))
def test_answers_do_not_depend_on_how_the_writes_are_split(
        policy: str, cuts: list[tuple[int, int]],
        servers: Servers) -> None:
    """The same bytes in other reads (each turn of the MTA split anywhere, or whole) get
    the same answers."""
    talk = CONVERSATIONS[policy]
    reads: list[bytes] = []
    for index, turn in enumerate(turns(talk)):
        points = sorted({at % (len(turn) + 1) for which, at in cuts if which == index})
        reads += [turn[a:b] for a, b in zip([0, *points], [*points, len(turn)], strict=True)
                  if b > a]
    got, _ = replay(servers[policy][0], reads)
    assert got == answers(talk)
