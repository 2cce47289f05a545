"""Loggers that import :mod:`logging` only when a record can be shown.

A mail server starts ``mailroute`` once per message, and the logging module is a noticeable
part of that start-up. Until something imports it, no handler and no level can have been
configured, so Python's defaults hold: the root logger passes WARNING and above to standard
error, and drops DEBUG and INFO. A :class:`LazyLogger` therefore drops debug and info records
while ``logging`` is not loaded, and imports it for a warning or worse, or once anyone else has
loaded it (a test's ``caplog``, an application that configures logging, ``mailroute -v``).

The command line's ``basicConfig`` waits in :func:`configure` until the module is loaded.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import logging

__all__ = ["LOG_FORMATS", "LazyLogger", "LogFormat", "configure", "configured"]

#: How the one line per message is written (mailroute.adapters.messagelog); here so that the
#: command line can offer the choice without loading the message log.
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

_pending: dict[str, Any] | None = None
_configured = False


def configure(*, now: bool = False, **basic_config: Any) -> None:
    """``logging.basicConfig(**basic_config)`` now if logging is loaded (or ``now``), else
    when it is."""
    global _pending, _configured
    _pending = basic_config
    _configured = True
    if now or "logging" in sys.modules:
        _logging()


def configured() -> bool:
    """True once :func:`configure` ran: the command line owns this process's logging (a
    program that imports mailroute keeps its own, which mailroute leaves alone)."""
    return _configured


def _logging() -> Any:
    global _pending
    import logging

    if _pending is not None:
        pending, _pending = _pending, None
        logging.basicConfig(**pending)
    return logging


class LazyLogger:
    """The :class:`logging.Logger` called ``name``, loaded on the first record that counts."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def logger(self) -> logging.Logger:
        """The real logger (imports :mod:`logging`)."""
        result: logging.Logger = _logging().getLogger(self.name)
        return result

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        """``Logger.debug``: nothing to do while logging is not loaded."""
        if "logging" in sys.modules:
            self.logger.debug(msg, *args, stacklevel=2, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        """``Logger.info``: nothing to do while logging is not loaded."""
        if "logging" in sys.modules:
            self.logger.info(msg, *args, stacklevel=2, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        """``Logger.warning``."""
        self.logger.warning(msg, *args, stacklevel=2, **kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        """``Logger.error``."""
        self.logger.error(msg, *args, stacklevel=2, **kwargs)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        """``Logger.exception``: an error with the exception being handled."""
        self.logger.exception(msg, *args, stacklevel=2, **kwargs)
