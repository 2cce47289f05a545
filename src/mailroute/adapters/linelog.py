"""The one log line per message of the command-line adapters (``pipe``, ``process --log``,
``milter``, ``serve``), written without the :mod:`logging` package.

A mail server starts ``pipe`` once per message, and importing :mod:`logging` (with
``traceback``, ``threading``, ``weakref`` ...) costs each run about 3.5 ms on the development
machine; in a resident milter, logging's record, formatter and handler cost more per
message than making the line. Each line goes straight to where ``--log`` says:

- ``syslog``: one datagram to the local syslog socket, facility mail, priority info, the
  bytes :class:`logging.handlers.SysLogHandler` sends for the same line
  (``<22>mailroute[PID]: LINE`` and a NUL; tests/adapters/test_linelog.py compares them);
  when nothing listens there, the line goes to standard error instead of being lost;
- ``stderr``: ``mailroute: LINE`` on standard error (after the status line);
- ``none``: nowhere, and the line is not even made; ``auto``: syslog when the socket
  exists, else standard error.

A Python caller's ``MessageLog()`` still writes to the logger ``mailroute.messages``.
"""

from __future__ import annotations

import os
import sys
from _thread import allocate_lock
from typing import TYPE_CHECKING

from mailroute.adapters.messagelog import LogFormat, MessageLog, no_line

if TYPE_CHECKING:
    import socket

__all__ = ["SyslogLine", "line_log", "stderr_line"]

#: facility mail (2) * 8 + severity info (6), as RFC 3164 encodes them
_MAIL_INFO = b"<22>"


def stderr_line(line: str) -> None:
    """Write ``line`` to standard error as it is when the line is written."""
    sys.stderr.write(f"mailroute: {line}\n")


class SyslogLine:
    """Lines to the syslog socket at ``path`` (a unix datagram or, failing that, stream socket).

    Raises:
        OSError: at construction, when nothing listens at ``path``.
    """

    def __init__(self, path: str, ident: str = "mailroute") -> None:
        self.path = path
        self.ident = ident
        self._reconnecting = allocate_lock()  # a resident adapter writes from its threads
        self._socket = self._connect()

    def _connect(self) -> socket.socket:
        import socket  # only when logging to syslog

        try:
            return self._open(socket.SOCK_DGRAM)
        except OSError:  # a syslog daemon that listens on a stream socket
            return self._open(socket.SOCK_STREAM)

    def _open(self, kind: int) -> socket.socket:
        import socket

        connection = socket.socket(socket.AF_UNIX, kind)
        try:
            connection.connect(self.path)
        except OSError:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        """Close the socket (a process that exits need not)."""
        self._socket.close()

    def __call__(self, line: str) -> None:
        """Send ``line``; a failure reconnects once, and then the line goes to stderr."""
        # the pid of the process that writes (milter --processes: each worker its own)
        data = _MAIL_INFO + f"{self.ident}[{os.getpid()}]: {line}\0".encode()
        try:
            self._socket.send(data)
        except OSError:
            with self._reconnecting:
                self._socket.close()
                try:
                    self._socket = self._connect()
                    self._socket.send(data)
                except OSError:
                    stderr_line(line)


def line_log(target: str, fmt: LogFormat, *, syslog_socket: str) -> MessageLog:
    """The message log sent to ``target`` (see the module)."""
    if target == "auto":
        target = "syslog" if os.path.exists(syslog_socket) else "stderr"
    if target == "none":
        return MessageLog(fmt, sink=no_line)
    if target == "syslog":
        try:
            return MessageLog(fmt, sink=SyslogLine(syslog_socket))
        except OSError:  # nothing listens: the line must not be lost either
            pass
    return MessageLog(fmt, sink=stderr_line)
