"""What the long-running adapters (``milter``, ``serve``) share: stopping on a signal,
draining messages in flight within a grace period, and running the policy off the event
loop for messages big enough to be worth the hand-off to a worker thread."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import TypeVar

from mailroute.adapters.workerpool import WorkerPool

__all__ = ["EXIT_RESERVE", "PolicyRunner", "drain", "exit_reserve", "stop_on_signals"]

T = TypeVar("T")

#: What a graceful stop keeps of its grace period for after the drain: answering what is
#: left with a tempfail, closing the connections and leaving the interpreter, so that the
#: process is gone within the grace period (CLI.md: within 5 seconds of SIGTERM).
EXIT_RESERVE = 0.5


def exit_reserve(grace: float) -> float:
    """The part of a ``grace`` period kept for after the drain: :data:`EXIT_RESERVE`, or a
    tenth of a grace shorter than 5 seconds (messages in flight still get most of it)."""
    return min(EXIT_RESERVE, grace / 10)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT in the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def drain(busy: Callable[[], bool], grace: float) -> bool:
    """Wait until ``busy()`` is false or ``grace`` seconds less :func:`exit_reserve`
    passed; True when idle."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace - exit_reserve(grace)
    while busy():
        left = deadline - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(0.05, left))
    return True


def may_block(step: object) -> bool:
    """True when ``step`` (a filter, a conditional or a pipeline) has a filter that waits on
    the outside world (DNS, gpg, a directory): its class says ``blocking = True``."""
    inner = getattr(step, "inner", None)
    if inner is not None:
        return may_block(inner)
    filters = getattr(step, "filters", None)
    if filters is not None:
        return any(may_block(f) for f in filters)
    return bool(getattr(step, "blocking", False))


class PolicyRunner:
    """Runs the policy for one message: inline when small and nothing in it blocks, else in
    a thread pool (under the timeout).

    A small message costs less to process than the hand-off to a thread; a large one, or
    one whose policy may wait on DNS or gpg, in the pool leaves the event loop free for the
    other sessions.
    """

    def __init__(self, workers: int, inline_size: int, name: str, *,
                 inline: bool = True) -> None:
        self.pool = WorkerPool(workers, name)
        self.inline_size = inline_size if inline else -1
        self.in_flight = 0

    async def run(self, work: Callable[[], T], size: int, timeout: float) -> T:
        """``work()`` within ``timeout`` seconds.

        Raises:
            TimeoutError: the policy took longer (the thread finishes in the background;
                its result is dropped).
        """
        self.in_flight += 1
        try:
            if size <= self.inline_size:
                return work()
            future = asyncio.get_running_loop().run_in_executor(self.pool, work)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self.in_flight -= 1

    def shutdown(self) -> None:
        """Stop the pool without waiting for work still running."""
        self.pool.shutdown(wait=False, cancel_futures=True)
