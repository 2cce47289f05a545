"""``--metrics HOST:PORT`` of the resident adapters (``milter``, ``serve``): the Prometheus
exporter, started only when asked for (it needs ``mailroute[metrics]``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mailroute.exitcodes import ExitCode

if TYPE_CHECKING:
    from mailroute.adapters.metrics import Metrics

__all__ = ["add_metrics_argument", "metrics_address", "start_metrics"]


def add_metrics_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--metrics HOST:PORT``."""
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="export Prometheus metrics on http://HOST:PORT/metrics (needs "
                             "mailroute[metrics]); e.g. 127.0.0.1:9188")


def metrics_address(text: str | None) -> tuple[str, int] | None:
    """``--metrics`` as ``(host, port)``.

    Raises:
        ValueError: not ``HOST:PORT``.
    """
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--metrics must be HOST:PORT, not {text!r}")
    return host, int(port)


def start_metrics(adapter: str, listen: tuple[str, int] | None, quarantine: Path | None,
                  fail: Callable[[ExitCode, str], int]) -> Metrics | ExitCode | None:
    """The exporter of ``adapter``'s metrics on ``listen`` (``None`` without ``--metrics``),
    or the exit code after ``fail`` said why not."""
    if listen is None:
        return None
    try:
        from mailroute.adapters.metrics import Metrics, directory_size
    except ImportError:
        return ExitCode(fail(ExitCode.CONFIG, "--metrics needs prometheus_client: install "
                                              "mailroute[metrics]"))
    metrics = Metrics(adapter)
    if quarantine is not None:
        metrics.track_size("quarantine", directory_size(quarantine))
    try:
        metrics.serve(*listen)
    except OSError as error:
        return ExitCode(fail(ExitCode.TEMPFAIL, f"cannot listen on --metrics "
                                                f"{listen[0]}:{listen[1]}: "
                                                f"{error.strerror or error}"))
    return metrics
