"""The ``argparse`` side of the command line: loaded only when argparse reads the arguments
(see :func:`mailroute.cli.quick_args` for when it does not)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["HelpFormatter", "Parser"]


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, set up only when it formats something.

    argparse makes a formatter for every ``add_argument`` (to check the metavar), and the
    stock one asks ``shutil`` for the terminal's width each time: importing ``shutil`` (with
    ``bz2``, ``lzma`` and ``zlib``) costs a run that never shows help about 1.4 ms. This one
    keeps its arguments until an attribute the metavar check does not use is first read, then
    becomes exactly the stock formatter, so help and usage text are unchanged.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        self._deferred = (prog, indent_increment, max_help_position, width)

    def __getattr__(self, name: str) -> Any:
        deferred = self.__dict__.pop("_deferred", None)
        if deferred is None:
            raise AttributeError(name)
        super().__init__(*deferred)
        return getattr(self, name)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter` (subcommands inherit both)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
