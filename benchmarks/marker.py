"""Marker throughput: mints + verifies per second, in-process, on a small message.

Claim (issue 4): over 20,000 mint+verify pairs per second. Printed:

- core: ``mark()`` then ``check_message()`` on an already parsed message (the work the
  marker-set and marker-verify filters add to a gateway pipeline);
- pipeline: the ``marker-set`` filter and the ``marker-verify`` filter each run through
  ``Pipeline.process`` (bytes in, bytes out, parsing and serialising included);
- floor: two bare HMAC-SHA-256 computations over the same MAC input with the stdlib, the
  cheapest any implementation of the design could be; the ratio shows the marker's overhead.

Each figure is given per wall-clock second and per CPU second of the process; on a shared,
busy machine the CPU figure is the one to compare with the target.

Run: ``.venv/bin/python benchmarks/marker.py [--seconds N]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import logging
import time
import tomllib
from collections.abc import Callable

from mailroute import Context, Envelope, Pipeline, parse
from mailroute.filters.marker import MarkerSetFilter, MarkerVerifyFilter
from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.gateway.settings import GatewaySettings
from mailroute.item import Direction
from mailroute.marker import binding_of, check_message, mark
from mailroute.marker.binding import mac_input
from mailroute.marker.keyring import parse_key_ring

NOW = 1_790_000_000
RING = parse_key_ring(tomllib.loads(
    'tag = "g7k2qd"\norg_id = "example.net"\n[[key]]\nid = "k1"\n'
    f'secret = "{base64.b64encode(bytes(range(32))).decode()}"\n'))
MESSAGE = (b"Received: from client.example.net by mx.example.net\r\n"
           b"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: hi\r\n"
           b"Message-ID: <bench.1@example.net>\r\nDate: Mon, 21 Sep 2026 10:00:00 +0000\r\n"
           b"\r\nHello Bob,\r\nsee you tomorrow.\r\n")


def rate(work: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Calls of ``work`` per wall-clock second and per CPU second of this process, measured
    for about ``seconds`` (the CPU figure is the one a busy shared machine distorts least)."""
    for _ in range(200):
        work()
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(500):
            work()
        calls += 500
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start), calls / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    seconds = parser.parse_args().seconds
    # The verifier logs every verdict; a gateway's log handler is not what is measured here.
    logging.disable(logging.CRITICAL)

    message = parse(MESSAGE)

    def core() -> None:
        marked, _ = mark(message, RING, now=NOW, direction=Direction.OUTBOUND)
        assert check_message(marked, RING, now=NOW).valid

    setter = Pipeline(filters=(MarkerSetFilter(ring=RING),))
    verifier = Pipeline(filters=(MarkerVerifyFilter(
        ring=RING, settings=GatewaySettings(processed_limit=0)),))
    context = Context(clock=lambda: NOW, processed=InMemoryProcessedStore())
    envelope = Envelope(rcpt_to=("bob@example.org",), direction=Direction.OUTBOUND)

    def pipeline() -> None:
        out = setter.process(MESSAGE, envelope, context=context).data
        assert out is not None
        assert verifier.process(out, envelope, context=context).data is not None

    key = RING.keys[0].mac_key
    data = mac_input(tag=RING.tag, kid="k1", t=str(NOW), nonce="A" * 16, d="o",
                     org_id=RING.org_id, binding=binding_of(message))

    def floor() -> None:
        hmac.new(key, data, hashlib.sha256).digest()
        hmac.new(key, data, hashlib.sha256).digest()

    core_rate, core_cpu = rate(core, seconds)
    pipe_rate, pipe_cpu = rate(pipeline, seconds)
    floor_rate, floor_cpu = rate(floor, seconds)
    print(f"message: {len(MESSAGE)} bytes, {seconds:.1f} s per measurement")
    print(f"{'':10}{'per wall second':>18}{'per CPU second':>18}")
    print(f"{'core':10}{core_rate:18,.0f}{core_cpu:18,.0f}   mint+verify pairs")
    print(f"{'pipeline':10}{pipe_rate:18,.0f}{pipe_cpu:18,.0f}   mint+verify pairs, parse and "
          "emit included")
    print(f"{'floor':10}{floor_rate:18,.0f}{floor_cpu:18,.0f}   2x bare HMAC-SHA-256")
    print(f"ratio core/floor: {core_cpu / floor_cpu:.3f}   pipeline/floor: "
          f"{pipe_cpu / floor_cpu:.3f}   (CPU)")
    verdict = "met" if core_cpu > 20_000 else "NOT met"
    print(f"target > 20,000 core pairs per second: {verdict}")

if __name__ == "__main__":
    main()
