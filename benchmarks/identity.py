"""Parse + emit of an unmodified 28 MB message: mailroute vs the stdlib round trip.

Both run in this process on the same bytes. Time is the best of several runs; memory is the
tracemalloc peak of one run, beyond the input that both already hold.

    .venv/bin/python benchmarks/identity.py [--runs N] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._corpus import corpus_dir
from benchmarks._results import Results, add_json_argument

from mailroute.mime import parse


def mailroute_round_trip(data: bytes) -> bytes:
    """Parse, then serialise the tree (what an edit elsewhere in the message costs; a
    message no filter changes is not even serialised: ``to_bytes()`` is the input)."""
    return parse(data).root.to_bytes()


def stdlib_round_trip(data: bytes) -> bytes:
    """The stdlib's parse + as_bytes, as a filter built on `email` would do it."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
    return message.as_bytes()


def best_time(function: Callable[[bytes], bytes], data: bytes, runs: int) -> float:
    """The fastest of ``runs`` calls, in seconds."""
    timings = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        function(data)
        timings.append(time.perf_counter() - start)
    return min(timings)


def peak_memory(function: Callable[[bytes], bytes], data: bytes) -> int:
    """Peak bytes allocated by one call (output included), beyond the input."""
    gc.collect()
    tracemalloc.start()
    result = function(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak


def main() -> None:
    """Print the figures and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=None)
    add_json_argument(parser)
    args = parser.parse_args()
    folder = corpus_dir(args.corpus) if args.corpus else corpus_dir()
    path = folder / "large-000.eml"
    data = path.read_bytes()
    size = len(data)
    assert mailroute_round_trip(data) == data, "mailroute round trip is not the identity"
    identical = stdlib_round_trip(data) == data
    ours_t = best_time(mailroute_round_trip, data, args.runs)
    theirs_t = best_time(stdlib_round_trip, data, max(1, args.runs // 2))
    ours_m = peak_memory(mailroute_round_trip, data)
    theirs_m = peak_memory(stdlib_round_trip, data)
    mib = 1024 * 1024
    print(f"message: {path.name}, {size / mib:.1f} MiB")
    print(f"mailroute parse+emit : {ours_t * 1000:8.1f} ms  peak {ours_m / mib:7.1f} MiB "
          f"({ours_m / size:.2f}x message)  byte-identical: True")
    print(f"stdlib parse+as_bytes: {theirs_t * 1000:8.1f} ms  peak {theirs_m / mib:7.1f} MiB "
          f"({theirs_m / size:.2f}x message)  byte-identical: {identical}")
    print(f"speed-up: {theirs_t / ours_t:.1f}x   memory ratio stdlib/mailroute: "
          f"{theirs_m / ours_m:.1f}x")
    results = Results("identity")
    series = ["mailroute", "stdlib email"]
    results.chart(f"Parse and re-emit a {size / mib:.0f} MiB message", "ms", series,
                  lower_is_better=True).append(
        {"case": path.name, "values": {series[0]: ours_t * 1e3, series[1]: theirs_t * 1e3}})
    results.chart(f"Peak memory, {size / mib:.0f} MiB message", "MiB", series,
                  lower_is_better=True).append(
        {"case": path.name, "values": {series[0]: ours_m / mib, series[1]: theirs_m / mib}})
    results.write(args.json)


if __name__ == "__main__":
    main()
