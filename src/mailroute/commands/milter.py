"""``mailroute milter``: run the milter adapter for Postfix or Sendmail."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mailroute.commands.common import add_log_arguments, message_log_from_args
from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode

if TYPE_CHECKING:
    from mailroute.adapters.metrics import Metrics

__all__ = ["register"]


def _mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an octal mode such as 0660") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError("must be an octal mode such as 0660")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``milter``."""
    parser = subparsers.add_parser(
        "milter", help="run the milter adapter (Postfix smtpd_milters, Sendmail INPUT_MAIL_FILTER)",
        description="Serve the milter protocol on SOCKET and run POLICY over every message. "
                    "Internal failures answer 451 4.3.0; SIGTERM finishes messages in flight "
                    "(at most 5 s) and exits. Exit codes: 0 stopped, 2 usage, 75 cannot "
                    "listen, 78 bad policy.")
    parser.add_argument("--config", required=True, metavar="POLICY.toml", help="the policy file")
    parser.add_argument("--socket", required=True, metavar="inet:PORT@HOST|unix:PATH",
                        help="where to listen")
    parser.add_argument("--socket-mode", type=_mode, metavar="MODE",
                        help="permissions of a unix socket, octal (e.g. 0660)")
    parser.add_argument("--socket-group", metavar="GROUP",
                        help="group of a unix socket (e.g. postfix)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="threads that run the policy (default: CPUs + 1, at most 8)")
    add_log_arguments(parser, default="auto")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="export Prometheus metrics on http://HOST:PORT/metrics (needs "
                             "mailroute[metrics]); e.g. 127.0.0.1:9188")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the policy and serve until SIGTERM.

    Start-up problems are written as ``mailroute milter: ...`` (no SMTP status code: no MTA
    reads this output; systemd's journal does).
    """
    from dataclasses import replace

    from mailroute.adapters.milter import MilterSettings, parse_socket, serve
    from mailroute.policy import load_policy

    try:
        spec = parse_socket(args.socket)
        listen = _metrics_address(args.metrics)
    except ValueError as error:
        return _fail(ExitCode.USAGE, str(error))
    if args.workers is not None and args.workers < 1:
        return _fail(ExitCode.USAGE, "--workers must be at least 1")
    try:
        pipeline = load_policy(args.config)
    except ConfigError as error:
        return _fail(ExitCode.CONFIG, f"configuration error: {error}")
    settings = MilterSettings()
    if args.workers is not None:
        settings = replace(settings, workers=args.workers)
    metrics = None
    if listen is not None:
        started = _start_metrics(listen, pipeline.quarantine_dir)
        if isinstance(started, ExitCode):
            return started
        metrics = started
    try:
        asyncio.run(serve(pipeline, spec, settings=settings, mode=args.socket_mode,
                          group=args.socket_group, message_log=message_log_from_args(args),
                          metrics=metrics))
    except ConfigError as error:
        return _fail(ExitCode.CONFIG, f"configuration error: {error}")
    except OSError as error:
        return _fail(ExitCode.TEMPFAIL,
                     f"cannot listen on {args.socket}: {error.strerror or error}")
    finally:
        if metrics is not None:
            metrics.close()
    return ExitCode.OK


def _fail(code: ExitCode, text: str) -> int:
    sys.stderr.write(f"mailroute milter: {text}\n")
    return code


def _metrics_address(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--metrics must be HOST:PORT, not {text!r}")
    return host, int(port)


def _start_metrics(listen: tuple[str, int], quarantine: Path | None) -> Metrics | ExitCode:
    """The Prometheus exporter on ``listen``, or the exit code after saying why not."""
    try:
        from mailroute.adapters.metrics import Metrics, directory_size
    except ImportError:
        return ExitCode(_fail(ExitCode.CONFIG, "--metrics needs prometheus_client: install "
                                               "mailroute[metrics]"))
    metrics = Metrics("milter")
    if quarantine is not None:
        metrics.track_size("quarantine", directory_size(quarantine))
    try:
        metrics.serve(*listen)
    except OSError as error:
        return ExitCode(_fail(ExitCode.TEMPFAIL, f"cannot listen on --metrics "
                                                 f"{listen[0]}:{listen[1]}: "
                                                 f"{error.strerror or error}"))
    return metrics
