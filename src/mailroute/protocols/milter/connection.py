"""The filter side of one milter connection, as a state machine over bytes.

Theory of operation
-------------------

The MTA is the client. It opens with option negotiation (``O``), then walks through the
SMTP conversation one command at a time: connect, helo, and per message mail, rcpt...,
data, header..., end-of-headers, body..., end-of-message. Macros (``D``) precede the
command they belong to and are never answered. The MTA waits for the filter's reply to
every command except those the negotiation exempted (the ``SMFIP_NR_*`` flags), macros,
abort, quit and quit-new-connection.

Two rules keep this file the single place where transitions are decided:

1. ``phase`` is the position of the last command in the conversation order (the table
   ``_ORDER``). A command is accepted when it comes later in that order, or repeats a
   repeatable one (helo, rcpt, header, body). MAIL and HELO may start over from any point
   after connect (a new transaction or a new EHLO); the message commands after MAIL need a
   transaction. End-of-message and abort close the transaction; quit-new-connection goes
   back to before connect (or to a new negotiation).
2. ``owed`` says whether the MTA is waiting for a reply. While a reply is owed the MTA
   sends nothing but abort or quit; ``send`` refuses a reply nobody asked for, a
   modification outside end-of-message, a modification the negotiation did not grant, and a
   body replacement split by another action (Postfix's rule: one contiguous run).

The first violation moves the connection to ``ERROR`` for good: a remote one raises
:class:`~mailroute.protocols.milter.errors.RemoteProtocolError` from :meth:`next_event`, a
local one :class:`~mailroute.protocols.milter.errors.LocalProtocolError` from :meth:`send`.
Nothing here does I/O: the caller feeds bytes in and writes the bytes :meth:`send` returns.
"""

from __future__ import annotations

import enum
from typing import Final

from mailroute.protocols.milter import events as ev
from mailroute.protocols.milter.actions import (
    REQUIRED_FLAG,
    Accept,
    Action,
    AddRecipient,
    Continue,
    Discard,
    NegotiateReply,
    Progress,
    Reject,
    ReplaceBody,
    ReplyCode,
    Skip,
    TempFail,
)
from mailroute.protocols.milter.constants import (
    DEFAULT_MAX_PACKET,
    PROTOCOL_VERSION,
    ActionFlag,
    Command,
    ProtocolFlag,
)
from mailroute.protocols.milter.errors import LocalProtocolError, RemoteProtocolError
from mailroute.protocols.milter.framing import DECODERS, PacketBuffer

__all__ = ["NEED_DATA", "MilterConnection", "NeedData", "State"]


class State(enum.Enum):
    """Where the connection stands."""

    NEGOTIATE = "negotiate"      # waiting for the MTA's option negotiation
    OPEN = "open"                # negotiated; the conversation goes on
    CLOSED = "closed"            # the MTA said quit, or closed the stream
    ERROR = "error"              # a protocol violation: close the connection


class NeedData:
    """The type of :data:`NEED_DATA`."""

    def __repr__(self) -> str:
        return "NEED_DATA"


#: :meth:`MilterConnection.next_event` returns this when no complete packet is buffered.
NEED_DATA: Final = NeedData()

# The conversation order; 0 is "negotiated, before connect".
_ORDER: dict[Command, int] = {
    Command.CONNECT: 1, Command.HELO: 2, Command.MAIL: 3, Command.RCPT: 4, Command.DATA: 5,
    Command.HEADER: 6, Command.EOH: 7, Command.BODY: 8, Command.BODYEOB: 9,
}
_MAIL_PHASE = _ORDER[Command.MAIL]
_HELO_PHASE = _ORDER[Command.HELO]
_NOMAIL = int(ProtocolFlag.NOMAIL)
_NOCONNECT = int(ProtocolFlag.NOCONNECT)
_REPEATABLE = frozenset({Command.HELO, Command.RCPT, Command.HEADER, Command.BODY})
# The flag that exempts a command from a reply.
_NO_REPLY_FLAG: dict[Command, ProtocolFlag] = {
    Command.CONNECT: ProtocolFlag.NR_CONN, Command.HELO: ProtocolFlag.NR_HELO,
    Command.MAIL: ProtocolFlag.NR_MAIL, Command.RCPT: ProtocolFlag.NR_RCPT,
    Command.DATA: ProtocolFlag.NR_DATA, Command.HEADER: ProtocolFlag.NR_HDR,
    Command.EOH: ProtocolFlag.NR_EOH, Command.BODY: ProtocolFlag.NR_BODY,
    Command.UNKNOWN: ProtocolFlag.NR_UNKN,
}
_NO_REPLY_BIT = {command: int(flag) for command, flag in _NO_REPLY_FLAG.items()}
#: The action flag each modification needs, as ints (checked for every one sent).
_REQUIRED_BITS = {kind: int(flag) for kind, flag in REQUIRED_FLAG.items()}
_ADDRCPT_PAR_BIT = int(ActionFlag.ADDRCPT_PAR)
# Per conversation command, read once per packet: its position in _ORDER, whether it may
# repeat at that position, and its no-reply bit.
_STEP = {command: (order, command in _REPEATABLE, _NO_REPLY_BIT[command])
         for command, order in _ORDER.items() if command in _NO_REPLY_BIT}
_STEP[Command.BODYEOB] = (_ORDER[Command.BODYEOB], False, 0)
_ENDS = (Command.ABORT, Command.QUIT, Command.QUIT_NC)
# Enum members under module names, for the per-packet code: reading ``State.OPEN`` goes
# through the enum class's attribute lookup (about 100 ns), a global takes a tenth of that.
_NEGOTIATE = State.NEGOTIATE
_OPEN = State.OPEN
_CLOSED = State.CLOSED
_ERROR = State.ERROR
_MACRO = Command.MACRO
_MACRO_CODE = Command.MACRO.value[0]
_QUIT = Command.QUIT
_QUIT_NC = Command.QUIT_NC
_OPTNEG = Command.OPTNEG
_UNKNOWN = Command.UNKNOWN
_CONNECT = Command.CONNECT
_HELO = Command.HELO
_MAIL = Command.MAIL
_BODY = Command.BODY
_BODYEOB = Command.BODYEOB
_SKIP_BIT = int(ProtocolFlag.SKIP)
_REPLIES = (Continue, Accept, Reject, TempFail, Discard, ReplyCode, Skip)


class MilterConnection:
    """The filter's side of one milter connection (sans-I/O).

    Args:
        max_packet: the largest packet accepted from the MTA (length field value).
        skip_empty_macros: make no event of a macro packet without values once the
            conversation is open (Postfix sends one per stage, for the stages a filter
            asked nothing of too: about a third of its packets; they carry nothing).

    Attributes (read them, never set them):
        state: where the connection stands.
        phase: the position of the last command in the conversation.
        owed: the command the MTA waits for a reply to, if any.
        actions, protocol: what the negotiation granted.
    """

    def __init__(self, *, max_packet: int = DEFAULT_MAX_PACKET,
                 skip_empty_macros: bool = False) -> None:
        self._buffer = PacketBuffer(max_packet)
        self._skip_empty_macros = skip_empty_macros
        self.state = _NEGOTIATE
        self.phase = 0
        self.actions = ActionFlag.NONE
        self._action_bits = 0  # int(self.actions), for the check of every modification
        self.protocol = ProtocolFlag.NONE
        self._protocol_bits = 0  # int(self.protocol): tested per packet without enum arithmetic
        self._offered: ev.OptionNegotiation | None = None
        self.owed: Command | None = None
        self._body_run = 0   # 0 none yet, 1 sending body chunks, 2 body run over
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the MTA; ``b""`` means the MTA closed the stream."""
        if not data:
            self._eof = True
        else:
            self._buffer.feed(data)

    def next_event(self) -> ev.Event | NeedData:
        """The next event, or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: the MTA broke the protocol (the state is ``ERROR``).
        """
        state = self.state
        if state is _ERROR:
            raise RemoteProtocolError("connection already failed")
        try:
            found = self._buffer.next_packet()
            if self._skip_empty_macros and state is _OPEN:
                while (found is not None and found[0] == _MACRO_CODE and len(found[1]) == 1
                       and self.owed is None):
                    found = self._buffer.next_packet()
            if found is None:
                if self._eof and state is not _CLOSED:
                    if self._buffer.pending:
                        raise RemoteProtocolError("stream closed inside a packet")
                    self.state = _CLOSED
                return NEED_DATA
            if state is _CLOSED:
                raise RemoteProtocolError("data after quit")
            code, data = found
            entry = DECODERS.get(code)
            if entry is None:
                raise RemoteProtocolError(f"unknown milter command {bytes([code])!r}")
            command, decoder = entry
            event = decoder(data)
            # a macro packet changes nothing once the conversation is open (the most
            # frequent packet: one before nearly every command)
            if command is not _MACRO or self.owed is not None or state is not _OPEN:
                self._transition(command, event)
        except RemoteProtocolError:
            self.state = _ERROR
            raise
        return event

    def _transition(self, command: Command, event: ev.Event) -> None:
        if command in _ENDS:
            if self.state is _NEGOTIATE and command is not _QUIT:
                raise RemoteProtocolError(f"command {command.value!r} before negotiation")
            self.owed = None
            if command is _QUIT:
                self.state = _CLOSED
            elif command is _QUIT_NC:
                self.phase = 0
            elif self.phase >= _MAIL_PHASE:
                self.phase = _HELO_PHASE
            return
        if self.owed is not None:
            raise RemoteProtocolError(f"command {command.value!r} before the reply to "
                                      f"{self.owed.value!r}")
        if command is _OPTNEG:
            if self.state is not _NEGOTIATE and self.phase != 0:
                raise RemoteProtocolError("option negotiation in mid-conversation")
            assert isinstance(event, ev.OptionNegotiation)
            if event.version < 2:
                raise RemoteProtocolError(f"milter protocol version {event.version}")
            self.state, self._offered, self.owed = _NEGOTIATE, event, command
            return
        if self.state is not _OPEN:
            raise RemoteProtocolError(f"command {command.value!r} before option negotiation")
        if command is _MACRO:
            return
        if command is _UNKNOWN:
            if not self._protocol_bits & _NO_REPLY_BIT[command]:
                self.owed = command
            return
        self._advance(command)

    def _advance(self, command: Command) -> None:
        """Move to ``command``'s position in the conversation, and owe its reply."""
        order, repeatable, no_reply = _STEP[command]
        phase, bits = self.phase, self._protocol_bits
        if command is _CONNECT:
            allowed = phase == 0
        elif command is _HELO or command is _MAIL:
            allowed = phase >= 1 or bool(bits & _NOCONNECT)
        else:
            allowed = ((phase >= _MAIL_PHASE or bool(bits & _NOMAIL))
                       and (order > phase or (order == phase and repeatable)))
        if not allowed:
            raise RemoteProtocolError(f"command {command.value!r} out of order")
        self.phase = order
        if command is _BODYEOB:
            self._body_run = 0
        if not bits & no_reply:
            self.owed = command

    def send(self, action: Action) -> bytes:
        """The bytes of ``action``, after checking it is legal now.

        Raises:
            LocalProtocolError: the action is not allowed here (the state is ``ERROR``).
        """
        if self.state is _ERROR:
            raise LocalProtocolError("connection already failed")
        try:
            self._check(action)
        except LocalProtocolError:
            self.state = _ERROR
            raise
        return b"".join(action.packets())

    def _check(self, action: Action) -> None:
        owed = self.owed
        if isinstance(action, NegotiateReply):
            self._check_negotiation(action)
            return
        if owed is None:
            raise LocalProtocolError(f"{type(action).__name__} without a command to answer")
        if isinstance(action, Progress):
            return
        if isinstance(action, _REPLIES):
            if isinstance(action, Skip) and (owed is not _BODY
                                             or not self._protocol_bits & _SKIP_BIT):
                raise LocalProtocolError("skip only answers a body chunk, when negotiated")
            self.owed = None
            if owed is _BODYEOB:
                self.phase = _HELO_PHASE
            return
        if owed is not _BODYEOB:
            raise LocalProtocolError(f"{type(action).__name__} only at end-of-message")
        if not self.permits(action):
            raise LocalProtocolError(f"{type(action).__name__} was not negotiated")
        if isinstance(action, ReplaceBody):
            if self._body_run == 2:
                raise LocalProtocolError("body replacement must be one contiguous run")
            self._body_run = 1
        elif self._body_run == 1:
            self._body_run = 2

    def permits(self, action: Action) -> bool:
        """True when the negotiated actions allow ``action`` (a modification needs its
        flag; replies need none)."""
        needed = _REQUIRED_BITS.get(type(action))
        if needed is None:
            return True
        if isinstance(action, AddRecipient) and action.args:
            needed = _ADDRCPT_PAR_BIT
        return bool(self._action_bits & needed)

    def _check_negotiation(self, action: NegotiateReply) -> None:
        offered = self._offered
        if self.owed is not _OPTNEG or offered is None:
            raise LocalProtocolError("negotiation reply without the MTA's offer")
        if action.version > offered.version or action.version > PROTOCOL_VERSION:
            raise LocalProtocolError("negotiated version above the MTA's")
        # as plain ints: flag-enum arithmetic costs microseconds, once per MTA connection
        protocol = int(action.protocol)
        if int(action.actions) & ~int(offered.actions):
            raise LocalProtocolError("asked for actions the MTA does not allow")
        if protocol & ~int(offered.protocol):
            raise LocalProtocolError("asked for protocol steps the MTA does not offer")
        self.actions, self.protocol = action.actions, action.protocol
        self._protocol_bits, self._action_bits = protocol, int(action.actions)
        self.state, self.phase, self.owed = _OPEN, 0, None
