"""Where the one log line per message goes (``--log``), set up only by commands that log:
importing :mod:`logging` costs start-up time every other run can spare."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from mailroute.adapters.messagelog import MESSAGE_LOG, LogFormat, MessageLog
from mailroute.commands.common import SYSLOG_SOCKET

__all__ = ["message_log"]

#: The handler installed last, replaced by the next configuration (tests run many commands).
_installed: list[logging.Handler] = []


def message_log(target: str, fmt: LogFormat) -> MessageLog:
    """The message log sent to ``target`` (syslog, stderr, none, auto) in format ``fmt``."""
    logger = logging.getLogger(MESSAGE_LOG)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    while _installed:
        old = _installed.pop()
        logger.removeHandler(old)
        old.close()
    handler = _message_handler(target)
    if isinstance(handler, logging.NullHandler):  # --log none: no line is even made
        logger.setLevel(logging.CRITICAL + 1)
    _installed.append(handler)
    logger.addHandler(handler)
    return MessageLog(fmt, logger)


def _message_handler(target: str) -> logging.Handler:
    if target == "auto":
        target = "syslog" if os.path.exists(SYSLOG_SOCKET) else "stderr"
    if target == "none":
        return logging.NullHandler()
    if target == "syslog":
        from logging.handlers import SysLogHandler  # only here: it loads pickle, socket ...

        try:
            handler: logging.Handler = SysLogHandler(SYSLOG_SOCKET,
                                                     facility=SysLogHandler.LOG_MAIL)
            handler.setFormatter(logging.Formatter("mailroute[%(process)d]: %(message)s"))
            return handler
        except OSError:  # no syslog listening: the line must not be lost either
            pass
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("mailroute: %(message)s"))
    return handler


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is written, not when configured."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


