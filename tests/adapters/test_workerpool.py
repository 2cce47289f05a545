"""WorkerPool: the policy runs' thread pool whose threads never hold up the exit."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError

import pytest

from mailroute.adapters.workerpool import WorkerPool


def test_results_and_exceptions_reach_the_future() -> None:
    pool = WorkerPool(2, "test")
    assert pool.submit(pow, 2, 10).result(timeout=5) == 1024
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 // 0).result(timeout=5)
    assert pool.submit(sorted, [3, 1, 2], reverse=True).result(timeout=5) == [3, 2, 1]
    pool.shutdown()


def test_threads_start_as_needed_up_to_the_limit_and_are_reused() -> None:
    pool = WorkerPool(3, "test")
    for _ in range(20):  # one at a time: one idle thread serves them all
        pool.submit(time.sleep, 0).result(timeout=5)
    names = {pool.submit(lambda: threading.current_thread().name).result(timeout=5)
             for _ in range(5)}
    assert names == {"test_0"}
    release = threading.Event()
    running = [pool.submit(release.wait, 5) for _ in range(6)]
    time.sleep(0.2)
    assert sum(future.running() for future in running) == 3  # the other 3 wait their turn
    release.set()
    assert all(future.result(timeout=5) for future in running)
    assert sum(thread.name.startswith("test_") for thread in threading.enumerate()) == 3
    pool.shutdown()


def test_shutdown_cancels_what_has_not_started_and_refuses_new_work() -> None:
    pool = WorkerPool(1, "test")
    release = threading.Event()
    started = pool.submit(release.wait, 5)
    waiting = [pool.submit(time.sleep, 0) for _ in range(3)]
    time.sleep(0.1)
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError):
        pool.submit(time.sleep, 0)
    release.set()
    assert started.result(timeout=5) is True
    for future in waiting:
        with pytest.raises(CancelledError):
            future.result(timeout=5)


def test_a_stuck_run_does_not_hold_up_the_interpreter_exit() -> None:
    """A ThreadPoolExecutor's thread is joined at exit: this process would live 30 s."""
    program = ("import time; from mailroute.adapters.workerpool import WorkerPool\n"
               "WorkerPool(1, 'stuck').submit(time.sleep, 30); time.sleep(0.1)\n")
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", program], check=True, timeout=20)
    assert time.monotonic() - started < 5
