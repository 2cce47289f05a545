"""A do-nothing milter in Python on uvloop: the ceiling of "Postfix + a Python milter".

benchmarks/null_milter.c in Python, with the same command line and answers: it negotiates
what it is told (the action and protocol flags and macro lists, intersected with the MTA's
offer as mailroute does), answers "accept" to end-of-message and to DATA when it is owed (as
mailroute does for a policy without filters), "continue" to every other command the
negotiation left owed, and does nothing else. What mailroute's milter costs above this
one is mailroute's own work; what this one costs above the C one is the interpreter and the
event loop being woken for every write of the MTA.

    python benchmarks/null_milter.py [-a TEXT] SOCKET_PATH ACTIONS PROTOCOL [STAGE NAMES]...

With ``-a`` it answers end-of-message as null_milter.c does: the body it was shown followed
by TEXT, then accept (the ceiling of a Python milter that changes the body).

Benchmark helper only: no part of mailroute. SIGTERM ends it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys
from typing import cast

import uvloop

#: The reply-exempting protocol flag of each command byte (absent: always answered).
NO_REPLY = {ord("C"): 0x1000, ord("H"): 0x2000, ord("M"): 0x4000, ord("R"): 0x8000,
            ord("T"): 0x10000, ord("U"): 0x20000, ord("N"): 0x40000, ord("B"): 0x80000,
            ord("L"): 0x80}
SILENT = {ord("D"), ord("A"), ord("K")}
CONTINUE, ACCEPT = b"\0\0\0\1c", b"\0\0\0\1a"
BODY_OR_END = {ord("B"), ord("E")}


def replacement(body: bytes) -> list[bytes]:
    """``body`` as body-replacement packets of at most 65,535 bytes."""
    return [struct.pack(">I", len(chunk) + 1) + b"b" + chunk
            for chunk in (body[at:at + 65535] for at in range(0, len(body), 65535))]


class NullMilter(asyncio.Protocol):
    """One MTA connection."""

    def __init__(self, actions: int, protocol: int, macros: bytes,
                 append: bytes | None = None) -> None:
        self.want_actions, self.want_protocol, self.macros = actions, protocol, macros
        self.append = append
        self.body: list[bytes] = []
        self.protocol = 0
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream server's transport (uvloop's is not an asyncio.Transport subclass)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer, start, out = self.buffer + data, 0, []
        while len(buffer) - start >= 4:
            (length,) = struct.unpack_from(">I", buffer, start)
            if length == 0 or len(buffer) - start - 4 < length:
                break
            command = buffer[start + 4]
            packet = buffer[start + 5:start + 4 + length]
            start += 4 + length
            if command == ord("Q"):
                assert self.transport is not None
                self.transport.close()
                break
            if self.append is not None and command in BODY_OR_END and packet:
                self.body.append(packet)
            if command in SILENT:
                if command != ord("D"):
                    self.body = []
                continue
            if command == ord("O"):
                out.append(self.negotiate(packet))
            elif command == ord("E"):
                if self.append is not None:
                    out += replacement(b"".join([*self.body, self.append]))
                    self.body = []
                out.append(ACCEPT)
            elif not self.protocol & NO_REPLY.get(command, 0):
                # DATA is owed only in a no-filter negotiation, which accepts there
                out.append(ACCEPT if command == ord("T") else CONTINUE)
        self.buffer = buffer[start:]
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def negotiate(self, offer: bytes) -> bytes:
        version, actions, offered = struct.unpack(">III", offer[:12])
        version = min(version, 6)
        mine = self.want_actions & actions
        self.protocol = self.want_protocol & offered
        extra = self.macros if version >= 6 and mine & 0x100 else b""
        if not extra:
            mine &= ~0x100
        data = struct.pack(">III", version, mine, self.protocol) + extra
        return struct.pack(">I", len(data) + 1) + b"O" + data


async def serve(path: str, actions: int, protocol: int, macros: bytes,
                append: bytes | None) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    server = await loop.create_unix_server(
        lambda: NullMilter(actions, protocol, macros, append), path)
    os.chmod(path, 0o666)  # noqa: S103 - Postfix's smtpd and cleanup connect to it
    await stop
    server.close()


def main() -> None:
    args = sys.argv[1:]
    append = None
    if args[:1] == ["-a"]:
        append, args = args[1].encode(), args[2:]
    path, actions, protocol, *lists = args
    macros = b"".join(struct.pack(">I", int(stage)) + names.encode() + b"\0"
                      for stage, names in zip(lists[::2], lists[1::2], strict=True))
    if os.path.exists(path):
        os.unlink(path)
    uvloop.run(serve(path, int(actions, 0), int(protocol, 0), macros, append))


if __name__ == "__main__":
    main()
