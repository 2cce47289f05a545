"""atheris harness for the milter protocol (h11's fuzz property): whatever bytes the MTA
sends, the connection yields events or raises RemoteProtocolError, and answering every
owed command never raises. Not collected by pytest.

    .venv/bin/python fuzz/milter_fuzz.py -max_total_time=60 -max_len=8192 DIR

``fuzz/run milter`` seeds it with the recorded Postfix 3.7 session.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from mailroute.protocols import milter as pm


def answer(conn: pm.MilterConnection, event: pm.Event) -> None:
    """Reply as a filter that takes every step and edits at end-of-message."""
    if isinstance(event, pm.OptionNegotiation):
        conn.send(pm.NegotiateReply(pm.ActionFlag.ADDHDRS & event.actions,
                                    pm.ProtocolFlag.NR_HDR & event.protocol,
                                    version=min(event.version, pm.PROTOCOL_VERSION)))
    elif isinstance(event, pm.EndOfMessage) and conn.actions & pm.ActionFlag.ADDHDRS:
        conn.send(pm.AddHeader(b"X-Fuzz", b" yes"))
        conn.send(pm.Accept())
    elif conn.owed is not None:
        conn.send(pm.Continue())


def test_one_input(data: bytes) -> None:
    """Feed ``data`` in pieces of a size taken from its first byte."""
    step = (data[0] if data else 1) or 1
    conn = pm.MilterConnection(max_packet=4096)
    try:
        for start in range(1, len(data), step):
            conn.receive_data(data[start:start + step])
            while not isinstance(event := conn.next_event(), pm.NeedData):
                answer(conn, event)
        conn.receive_data(b"")
        conn.next_event()
    except pm.RemoteProtocolError:
        if conn.state is not pm.State.ERROR:
            raise AssertionError("a remote error left the connection usable") from None


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
