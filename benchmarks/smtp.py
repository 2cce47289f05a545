"""Messages per second through ``mailroute serve``: ``smtp-source`` -> serve -> ``smtp-sink``.

Configurations, all on loopback:

* ``ceiling``: ``smtp-source`` straight to ``smtp-sink``;
* ``empty``: ``mailroute serve`` with an empty policy in between;
* ``disclaimer``: ``mailroute serve`` with a one-filter disclaimer policy;
* ``postfix``: a throwaway Postfix 3.7 as a plain relay (no filter), for comparison.

Cases: 10 KB and 1 MB messages, 1 and 10 sessions. A serve run ends when ``smtp-source``
ends (serve answers 250 only after the sink accepted the message); a Postfix run ends when
its queue is empty again. Configurations alternate within each round, in an order that
rotates from round to round (the machine is shared: the load average is printed); the median
of the rounds is reported with ratios. Afterwards 10,000 10 KB messages go through the
disclaimer service with 10 sessions and its peak RSS (VmHWM) is printed.

Target (issue 15), 10 KB with 10 sessions: empty policy faster than Postfix relaying the
same messages; stretch: at least 70 % of the ceiling.

    .venv/bin/python benchmarks/smtp.py [--rounds 3] [--small-count 1000] [--large-count 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.milter import (
    add_throughput_arguments,
    cpu_seconds,
    load,
    peak_rss_kib,
    process,
    run_in_root,
)
from tests.adapters.postfix_harness import Postfix, free_port, wait_port

CASES = ((10 * 1024, 1), (10 * 1024, 10), (1024 * 1024, 1), (1024 * 1024, 10))
CONFIGS = ("ceiling", "empty", "disclaimer", "postfix")


def source(port: int, size: int, sessions: int, count: int) -> None:
    """``smtp-source`` to ``port``; raises when it fails."""
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size),
                    "-f", "alice@corp.example", "-t", "bob@partner.example",
                    f"127.0.0.1:{port}"], check=True, capture_output=True, timeout=1800)


def run_case(port: int, size: int, sessions: int, count: int,
             postfix: Postfix | None = None) -> float:
    """Messages per second for one run."""
    started = time.monotonic()
    source(port, size, sessions, count)
    while postfix is not None and postfix.queue_count():
        time.sleep(0.01)
    return count / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_throughput_arguments(parser, CONFIGS)
    return run_in_root("mailroute-bench-smtp-", ("postfix", "smtp-source", "smtp-sink"), bench,
                       parser.parse_args())


def bench(root: Path, args: argparse.Namespace) -> int:
    (root / "empty.toml").write_text("")
    (root / "d.txt").write_text("-- \nVertraulich / Confidential. mailroute-disclaimer-v1\n")
    (root / "disclaimer.toml").write_text('[[pipeline]]\nfilter = "disclaimer"\ntext = "d.txt"\n')
    sink = free_port()
    ports = {"ceiling": sink, "empty": free_port(), "disclaimer": free_port()}
    serve = [sys.executable, "-m", "mailroute", "serve", "--next-hop", f"127.0.0.1:{sink}",
             "--log", "none"]
    with process(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink}", "256"], root / "sink.log"), \
         process([*serve, "--config", str(root / "empty.toml"),
                  "--listen", f"127.0.0.1:{ports['empty']}"], root / "s1.log") as empty, \
         process([*serve, "--config", str(root / "disclaimer.toml"),
                  "--listen", f"127.0.0.1:{ports['disclaimer']}"], root / "s2.log") as disc:
        for port in ports.values():
            wait_port(port)
        postfix = Postfix(root / "pf", free_port(), sink,
                          settings={"smtpd_milters": "", "default_process_limit": "100"})
        postfix.start()
        ports["postfix"] = postfix.smtpd_port
        try:
            return measure(ports, postfix, args, {"empty": empty.pid, "disclaimer": disc.pid})
        finally:
            postfix.stop()


def measure(ports: dict[str, int], postfix: Postfix, args: argparse.Namespace,
            serve_pids: dict[str, int]) -> int:
    print(f"# load average before: {load()}; CPUs: {os.cpu_count()}")
    results: dict[tuple[str, int, int], list[float]] = {}
    cpu_ms: dict[tuple[str, int, int], list[float]] = {}   # serve CPU per message
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    for round_ in range(args.rounds):
        # Rotate the order: a run right after the ceiling's flood of connections is slower.
        for config in configs[round_ % len(configs):] + configs[:round_ % len(configs)]:
            for size, sessions in CASES:
                count = args.small_count if size < 100_000 else args.large_count
                pid = serve_pids.get(config)
                cpu = cpu_seconds(pid) if pid else 0.0
                rate = run_case(ports[config], size, sessions, count,
                                postfix if config == "postfix" else None)
                results.setdefault((config, size, sessions), []).append(rate)
                if pid:
                    cpu_ms.setdefault((config, size, sessions), []).append(
                        (cpu_seconds(pid) - cpu) / count * 1000)
        print(f"# round {round_ + 1} done, load average: {load()}", flush=True)
    ratios = [(a, b) for a, b in (("empty", "postfix"), ("empty", "ceiling"),
                                   ("disclaimer", "postfix")) if a in configs and b in configs]
    print("\n| case | " + " | ".join(configs) + "".join(f" | {a}/{b}" for a, b in ratios)
          + " |")
    print("|---" * (len(configs) + len(ratios) + 1) + "|")
    for size, sessions in CASES:
        med = {c: statistics.median(results[(c, size, sessions)]) for c in configs}
        label = f"{size // 1024} KB, {sessions} session{'s' if sessions > 1 else ''}"
        cells = " | ".join(f"{med[c]:.0f}" for c in configs)
        print(f"| {label} | {cells}" + "".join(f" | {med[a] / med[b]:.2f}" for a, b in ratios)
              + " |")
    print(f"\n(messages per second, median of {args.rounds} rounds; runs: {results})")
    for (config, size, sessions), values in cpu_ms.items():
        print(f"# serve CPU, {config}, {size // 1024} KB, {sessions} sessions: "
              f"{statistics.median(values):.3f} ms per message (median)")
    disclaimer_pid = serve_pids["disclaimer"]
    started, cpu = time.monotonic(), cpu_seconds(disclaimer_pid)
    run_case(ports["disclaimer"], 10 * 1024, 10, args.rss_count)
    cpu_ms = (cpu_seconds(disclaimer_pid) - cpu) / args.rss_count * 1000
    print(f"\n# {args.rss_count} x 10 KB through serve with the disclaimer policy in "
          f"{time.monotonic() - started:.1f} s, serve CPU {cpu_ms:.2f} ms per message; peak "
          f"RSS {peak_rss_kib(disclaimer_pid) / 1024:.1f} MiB; load average: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
