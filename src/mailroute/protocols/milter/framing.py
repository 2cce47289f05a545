"""Packets off the wire: the length prefix, the cap, and command data decoding.

The buffer keeps a read offset instead of slicing the front off after every packet, so
splitting a large read into packets costs O(n) in the bytes received (h11's receive-buffer
rule: a quadratic rescan is a denial-of-service vector). The length is checked against the
cap before anything is buffered for the packet.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

from mailroute.protocols.milter import events as ev
from mailroute.protocols.milter.constants import ActionFlag, Command, ProtocolFlag
from mailroute.protocols.milter.errors import RemoteProtocolError

__all__ = ["PacketBuffer", "decode"]


_LENGTH = struct.Struct(">I").unpack_from


class PacketBuffer:
    """Bytes in, ``(command byte, data)`` packets out, with a size cap.

    While no partial packet is pending the buffer is the received ``bytes`` object itself,
    so a read holding whole packets is sliced without being copied first; a partial packet
    moves to a ``bytearray`` that later reads are appended to.
    """

    def __init__(self, max_packet: int) -> None:
        self._data: bytes | bytearray = b""
        self._start = 0
        self.max_packet = max_packet

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        start, held = self._start, self._data
        if start >= len(held):
            self._data, self._start = (data if type(data) is bytes else bytes(data)), 0
            return
        if isinstance(held, bytes):
            self._data, self._start = bytearray(memoryview(held)[start:]), 0
        elif start * 2 > len(held):
            del held[:start]
            self._start = 0
        self._data += data

    @property
    def pending(self) -> int:
        """Bytes received and not yet consumed as a packet."""
        return len(self._data) - self._start

    def next_packet(self) -> tuple[int, bytes] | None:
        """The next complete packet (its command byte as a number), or ``None`` when more
        bytes are needed.

        Raises:
            RemoteProtocolError: a zero length or a length over the cap.
        """
        data, start = self._data, self._start
        if len(data) - start < 4:
            return None
        (length,) = _LENGTH(data, start)
        if length == 0:
            raise RemoteProtocolError("milter packet without a command byte")
        if length > self.max_packet:
            raise RemoteProtocolError(f"milter packet of {length} bytes exceeds the "
                                      f"{self.max_packet}-byte limit")
        end = start + 4 + length
        if len(data) < end:
            return None
        self._start = end
        payload = data[start + 5:end]
        return data[start + 4], (payload if type(payload) is bytes else bytes(payload))


def _strings(data: bytes, what: str) -> list[bytes]:
    """NUL-terminated strings; the data must end with a NUL."""
    if not data.endswith(b"\0"):
        raise RemoteProtocolError(f"{what}: data not NUL-terminated")
    return data[:-1].split(b"\0")


def _exact(data: bytes, count: int, what: str) -> list[bytes]:
    parts = _strings(data, what)
    if len(parts) != count:
        raise RemoteProtocolError(f"{what}: expected {count} strings, got {len(parts)}")
    return parts


def _empty(data: bytes, what: str) -> None:
    if data:
        raise RemoteProtocolError(f"{what}: unexpected data")


@functools.lru_cache(maxsize=16)
def _optneg(data: bytes) -> ev.OptionNegotiation:
    """The offer, decoded once per distinct offer (an MTA makes the same one on every
    connection; its flag enums are slow to build)."""
    if len(data) != 12:
        raise RemoteProtocolError("option negotiation: expected 12 bytes")
    version, actions, protocol = struct.unpack(">III", data)
    return ev.OptionNegotiation(version, ActionFlag(actions), ProtocolFlag(protocol))


#: The macro packet without values of each stage, made once: the most frequent packet when
#: a filter asks for few macros (Postfix sends one per stage, skipped steps included).
_EMPTY_MACROS: dict[bytes, ev.Macros] = {}


def _macro(data: bytes) -> ev.Macros:
    if len(data) == 1:
        empty = _EMPTY_MACROS.get(data)
        if empty is None:
            empty = _EMPTY_MACROS[data] = ev.Macros(data, ())
        return empty
    if not data:
        raise RemoteProtocolError("macro: no stage")
    stage = data[:1]
    if data[-1] != 0:
        raise RemoteProtocolError("macro: data not NUL-terminated")
    parts = data[1:-1].split(b"\0")
    if len(parts) % 2:
        raise RemoteProtocolError("macro: a name without a value")
    pairs = iter(parts)
    return ev.Macros(stage, tuple(zip(pairs, pairs, strict=True)))


def _connect(data: bytes) -> ev.Connect:
    end = data.find(b"\0")
    if end < 0 or len(data) < end + 2:
        raise RemoteProtocolError("connect: truncated")
    hostname, family, rest = data[:end], data[end + 1:end + 2], data[end + 2:]
    if family == b"U":
        _empty(rest, "connect")
        return ev.Connect(hostname, family, 0, b"")
    if family not in (b"4", b"6", b"L"):
        raise RemoteProtocolError("connect: unknown address family")
    if len(rest) < 2:
        raise RemoteProtocolError("connect: truncated")
    (port,) = struct.unpack(">H", rest[:2])
    (address,) = _exact(rest[2:], 1, "connect")
    return ev.Connect(hostname, family, port, address)


def _envelope(data: bytes, what: str) -> tuple[bytes, tuple[bytes, ...]]:
    parts = _strings(data, what)
    if not parts[0]:
        raise RemoteProtocolError(f"{what}: empty address")
    return parts[0], tuple(parts[1:])


def _mail(data: bytes) -> ev.MailFrom:
    return ev.MailFrom(*_envelope(data, "mail"))


def _rcpt(data: bytes) -> ev.RcptTo:
    return ev.RcptTo(*_envelope(data, "rcpt"))


def _header(data: bytes) -> ev.Header:
    name, value = _exact(data, 2, "header")
    if not name:
        raise RemoteProtocolError("header: empty name")
    return ev.Header(name, value)


def _no_data(event: ev.Event) -> Callable[[bytes], ev.Event]:
    def decode_empty(data: bytes) -> ev.Event:
        _empty(data, type(event).__name__)
        return event
    return decode_empty


_DECODERS: dict[Command, Callable[[bytes], ev.Event]] = {
    Command.OPTNEG: _optneg,
    Command.MACRO: _macro,
    Command.CONNECT: _connect,
    Command.HELO: lambda d: ev.Helo(*_exact(d, 1, "helo")),
    Command.MAIL: _mail,
    Command.RCPT: _rcpt,
    Command.HEADER: _header,
    Command.BODY: ev.BodyChunk,
    Command.BODYEOB: ev.EndOfMessage,
    Command.UNKNOWN: lambda d: ev.Unknown(*_exact(d, 1, "unknown")),
    Command.DATA: _no_data(ev.Data()),
    Command.EOH: _no_data(ev.EndOfHeaders()),
    Command.ABORT: _no_data(ev.Abort()),
    Command.QUIT: _no_data(ev.Quit()),
    Command.QUIT_NC: _no_data(ev.QuitNewConnection()),
}


#: Command byte value -> (command, decoder): one lookup per packet (the connection's too).
DECODERS = {cmd.value[0]: (cmd, _DECODERS[cmd]) for cmd in Command}


def decode(command: int, data: bytes) -> tuple[Command, ev.Event]:
    """The event of one packet (``command`` is the command byte's value).

    Raises:
        RemoteProtocolError: an unknown command or data that does not fit it.
    """
    found = DECODERS.get(command)
    if found is None:
        raise RemoteProtocolError(f"unknown milter command {bytes([command])!r}")
    return found[0], found[1](data)
