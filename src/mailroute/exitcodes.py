"""Exit codes of the ``mailroute`` command: sysexits, as Postfix pipe(8) and Exim read them."""

from __future__ import annotations

import enum

__all__ = ["ExitCode"]


class ExitCode(enum.IntEnum):
    """The exit codes of CLI.md; stable public interface."""

    OK = 0
    NEGATIVE = 1
    USAGE = 2
    DATAERR = 65
    UNAVAILABLE = 69
    TEMPFAIL = 75
    CONFIG = 78
