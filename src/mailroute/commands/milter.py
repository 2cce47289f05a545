"""``mailroute milter``: run the milter adapter for Postfix or Sendmail."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailroute.pipeline import Pipeline

from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode

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
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="worker processes sharing the socket (default 1; a policy with "
                             "marker filters needs [gateway] state_dir for more)")
    parser.set_defaults(handler=run)


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner when it is installed (the ``milter`` extra): the same protocol code,
    with libuv doing the socket work at a fraction of the CPU of asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def _counts_in_memory(pipeline: Pipeline) -> bool:
    """True when a marker filter counts processed messages in a store private to the
    process (no ``[gateway] state_dir``)."""
    from mailroute.gateway.processed import InMemoryProcessedStore

    store = pipeline.context.processed if pipeline.context is not None else None
    if not isinstance(store, InMemoryProcessedStore):
        return False
    steps = list(pipeline.filters)
    while steps:
        step = steps.pop()
        inner = getattr(step, "inner", None)
        if inner is not None:
            steps.append(inner)
        steps.extend(getattr(step, "filters", ()))
        if step.name.startswith("marker-"):
            return True
    return False


def run(args: argparse.Namespace) -> int:
    """Load the policy and serve until SIGTERM."""
    from dataclasses import replace

    from mailroute.adapters.milter import MilterSettings, parse_socket, serve
    from mailroute.policy import load_policy

    try:
        spec = parse_socket(args.socket)
    except ValueError as error:
        sys.stderr.write(f"mailroute milter: {error}\n")
        return ExitCode.USAGE
    try:
        pipeline = load_policy(args.config)
    except ConfigError as error:
        sys.stderr.write(f"4.3.5 configuration error: {error}\n")
        return ExitCode.CONFIG
    settings = MilterSettings()
    if args.workers is not None:
        if args.workers < 1:
            sys.stderr.write("mailroute milter: --workers must be at least 1\n")
            return ExitCode.USAGE
        settings = replace(settings, workers=args.workers)
    if args.processes < 1:
        sys.stderr.write("mailroute milter: --processes must be at least 1\n")
        return ExitCode.USAGE
    if args.processes > 1 and _counts_in_memory(pipeline):
        sys.stderr.write("4.3.5 configuration error: --processes above 1 needs [gateway] "
                         "state_dir: the marker filters' processed-message store must be "
                         "shared by the processes\n")
        return ExitCode.CONFIG
    try:
        if args.processes > 1:
            from mailroute.adapters.milter_processes import serve_processes

            return serve_processes(pipeline, spec, processes=args.processes,
                                   runner=_event_loop_runner(), settings=settings,
                                   mode=args.socket_mode, group=args.socket_group)
        _event_loop_runner()(serve(pipeline, spec, settings=settings, mode=args.socket_mode,
                                   group=args.socket_group))
    except ConfigError as error:
        sys.stderr.write(f"4.3.5 configuration error: {error}\n")
        return ExitCode.CONFIG
    except OSError as error:
        sys.stderr.write(f"4.3.0 cannot listen on {args.socket}: {error.strerror or error}\n")
        return ExitCode.TEMPFAIL
    return ExitCode.OK
