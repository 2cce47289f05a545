"""Several milter worker processes on one listening socket (``mailroute milter --processes``).

One Python process gets one CPU's worth of time at most, and on a busy machine the
scheduler shares the CPUs per runnable process: a single milter process next to dozens of
Postfix processes waits for its turn (measured: runnable but not running three times as long
as it ran). The supervisor binds the socket once, forks the workers, which accept on it
in turn (the kernel hands each connection to one of them), and forwards SIGTERM and SIGINT:
each worker shuts down as a single milter does (messages in flight finish within the grace
period). A worker that dies is replaced, unless it died within seconds of its start (a
broken start-up would otherwise loop); then the others are stopped and the supervisor
returns 75.

Workers share nothing but the socket: a policy whose filters count processed messages
(``marker-*``) needs the shared ``[gateway] state_dir`` store.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

from mailroute.adapters.messagelog import MessageLog
from mailroute.adapters.milter import (
    MilterSettings,
    SocketSpec,
    listening_socket,
    remove_socket_file,
    serve,
    socket_file_id,
)
from mailroute.adapters.service import exit_reserve
from mailroute.pipeline import Pipeline

__all__ = ["serve_processes"]

log = logging.getLogger("mailroute.milter")

_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1  # prctl(2)
#: A worker that dies sooner than this after its start died early ...
MIN_LIFETIME = 5.0
#: ... and this many early deaths in a row (none of a worker that lived longer between
#: them) mean the workers cannot run: the supervisor stops instead of restarting them for
#: ever. One early death alone (an OOM kill, a crash) is replaced like any other.
MAX_EARLY_DEATHS = 3

Runner = Callable[[Coroutine[Any, Any, None]], None]


def serve_processes(pipeline: Pipeline, spec: SocketSpec, *, processes: int, runner: Runner,
                    settings: MilterSettings | None = None, mode: int | None = None,
                    group: str | None = None, message_log: MessageLog | None = None,
                    reload: Callable[[], Pipeline] | None = None) -> int:
    """Serve ``spec`` with ``processes`` workers until SIGTERM or SIGINT; the exit status
    (0 after a graceful stop, 75 when workers kept dying). SIGHUP is passed on to the
    workers, which load the policy again with ``reload`` (ignored without)."""
    settings = settings or MilterSettings()
    sock = listening_socket(spec, mode=mode, group=group)
    own = socket_file_id(spec.path) if spec.path is not None else None
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    started: dict[int, float] = {}
    supervisor = os.getpid()

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker: its own event loop on the shared socket
            _stop_with(supervisor)
            # SIGHUP stays blocked (held, not lost) until serve() handles it on its loop
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS - {signal.SIGHUP})
            code = 0
            try:
                runner(serve(pipeline, spec, settings=settings, listening=sock,
                             message_log=message_log, reload=reload))
            except BaseException:
                log.exception("milter worker failed")
                code = 75
            finally:
                logging.shutdown()
            os._exit(code)
        started[pid] = time.monotonic()

    status = 0
    try:
        for _ in range(processes):
            spawn()
        log.info("milter listening on %s with %d processes", spec, processes)
        stopping_since: float | None = None
        kill_at = math.inf
        early_deaths = 0
        while started:
            found = signal.sigtimedwait(_SIGNALS,
                                        max(0.01, min(1.0, kill_at - time.monotonic())))
            if found is not None and found.si_signo == signal.SIGHUP and reload is not None:
                _signal_all(started, signal.SIGHUP)
            if (found is not None and found.si_signo in (signal.SIGTERM, signal.SIGINT)
                    and stopping_since is None):
                stopping_since = time.monotonic()
                _signal_all(started, signal.SIGTERM)
            for pid, lived in _reap(started):
                if stopping_since is not None:
                    continue
                early_deaths = early_deaths + 1 if lived < MIN_LIFETIME else 0
                if early_deaths >= MAX_EARLY_DEATHS:
                    log.error("milter worker %d died %.1f s after its start, the %d. worker "
                              "in a row to die within %.0f s: stopping", pid, lived,
                              early_deaths, MIN_LIFETIME)
                    status = 75
                    stopping_since = time.monotonic()
                    _signal_all(started, signal.SIGTERM)
                else:
                    log.warning("milter worker %d died %.1f s after its start: starting "
                                "another", pid, lived)
                    spawn()
            if stopping_since is not None and kill_at == math.inf:
                # a worker still there then is stuck (its event loop blocked): the MTA
                # tempfails what it had, and the supervisor is gone within the grace too
                grace = settings.shutdown_grace
                kill_at = stopping_since + grace - exit_reserve(grace) / 2
            if time.monotonic() >= kill_at:
                _signal_all(started, signal.SIGKILL)
    finally:
        sock.close()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        if spec.path is not None:
            remove_socket_file(spec.path, own)
    return status


def _stop_with(supervisor: int) -> None:
    """Have the kernel send this worker SIGTERM when the supervisor dies (Linux), so that
    a killed supervisor leaves no worker serving a socket nobody manages."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes  # only in a worker, once

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _signal_all(workers: dict[int, float], signum: int) -> None:
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _reap(workers: dict[int, float]) -> list[tuple[int, float]]:
    """The workers that exited, with how long each lived (removed from ``workers``)."""
    gone = []
    while workers:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid in workers:
            gone.append((pid, time.monotonic() - workers.pop(pid)))
    return gone
