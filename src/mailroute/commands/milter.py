"""``mailroute milter``: run the milter adapter for Postfix or Sendmail."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from mailroute.commands.common import add_log_arguments, message_log_from_args
from mailroute.commands.metricsopt import add_metrics_argument, metrics_address, start_metrics
from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode

if TYPE_CHECKING:
    from mailroute.pipeline import Pipeline

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
                    "(at most 5 s) and exits; SIGHUP loads POLICY again (a policy that does "
                    "not load is logged, the running one kept). Exit codes: 0 stopped, "
                    "2 usage, 75 cannot listen, 78 bad policy.")
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
    add_log_arguments(parser, default="auto")
    add_metrics_argument(parser)
    parser.set_defaults(handler=run)


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner when it is installed (the ``milter`` extra): the same protocol code,
    with libuv doing the socket work at a fraction of the CPU of asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


_NEEDS_SHARED_STORE = ("--processes above 1 needs [gateway] state_dir: the marker filters' "
                       "processed-message store must be shared by the processes")


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
    """Load the policy and serve until SIGTERM.

    Start-up problems are written as ``mailroute milter: ...`` (no SMTP status code: no MTA
    reads this output; systemd's journal does).
    """
    from mailroute.adapters.milter import MilterSettings, parse_socket, serve
    from mailroute.policy import load_policy
    from mailroute.records import replace

    try:
        spec = parse_socket(args.socket)
        listen = metrics_address(args.metrics)
    except ValueError as error:
        return _fail(ExitCode.USAGE, str(error))
    if spec.family == "inet" and (args.socket_group is not None or args.socket_mode is not None):
        return _fail(ExitCode.USAGE, "--socket-group and --socket-mode apply to a unix socket "
                                     "only")
    if args.workers is not None and args.workers < 1:
        return _fail(ExitCode.USAGE, "--workers must be at least 1")
    if args.processes < 1:
        return _fail(ExitCode.USAGE, "--processes must be at least 1")
    if args.processes > 1 and listen is not None:
        return _fail(ExitCode.USAGE, "--metrics works with one process only (--processes 1)")

    def load() -> Pipeline:
        """The policy file, loaded at the start and again on SIGHUP."""
        fresh = load_policy(args.config)
        if args.processes > 1 and _counts_in_memory(fresh):
            raise ConfigError(_NEEDS_SHARED_STORE)
        return fresh

    # A SIGHUP from now until the server handles it (``systemctl reload`` right after the
    # start) is held, then loads the policy again, instead of ending the milter at once.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        pipeline = load()
    except ConfigError as error:
        return _fail(ExitCode.CONFIG, f"configuration error: {error}")
    settings = MilterSettings()
    if args.workers is not None:
        settings = replace(settings, workers=args.workers)
    metrics = start_metrics("milter", listen, pipeline.quarantine_dir, _fail)
    if isinstance(metrics, ExitCode):
        return metrics
    message_log = message_log_from_args(args)
    try:
        if args.processes > 1:
            from mailroute.adapters.milter_processes import serve_processes

            return serve_processes(pipeline, spec, processes=args.processes,
                                   runner=_event_loop_runner(), settings=settings,
                                   mode=args.socket_mode, group=args.socket_group,
                                   message_log=message_log, reload=load)
        _event_loop_runner()(serve(pipeline, spec, settings=settings, mode=args.socket_mode,
                                   group=args.socket_group, message_log=message_log,
                                   metrics=metrics, reload=load))
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
