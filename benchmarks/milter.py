"""Messages per second through a real Postfix: ``smtp-source`` -> Postfix -> ``smtp-sink``.

Configurations, on one throwaway Postfix 3.7 instance (reloaded between them) on loopback:

* ``postfix``: no milter (the ceiling);
* ``empty``: ``mailroute milter`` with an empty policy (unix socket);
* ``disclaimer``: ``mailroute milter`` with a one-filter disclaimer policy (unix socket);
* ``opendkim``: OpenDKIM 2.11 signing (rsa-sha256, relaxed/relaxed) as the peer (unix socket);
* ``empty-2p``, ``disclaimer-2p``: the same milters with ``--processes 2``.

Cases: 10 KB and 1 MB messages, 1 and 10 sessions. A run is the wall time from the start of
``smtp-source`` until Postfix's queue is empty again (every message relayed to the sink).
Configurations alternate within each round (the machine is shared: the load average is
printed); the median of the rounds is reported with ratios to Postfix alone. Afterwards
10,000 10 KB messages go through the disclaimer milter with 10 sessions and the milter's
peak RSS (VmHWM) is printed.

Targets (issue 14), 10 sessions, 10 KB: empty >= 80 % of Postfix alone; disclaimer >= 70 %
of Postfix alone and >= 1.3x OpenDKIM.

    .venv/bin/python benchmarks/milter.py [--rounds 3] [--small-count 1000] [--large-count 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.adapters.postfix_harness import Postfix, free_port, wait_port

CASES = ((10 * 1024, 1), (10 * 1024, 10), (1024 * 1024, 1), (1024 * 1024, 10))
CONFIGS = ("postfix", "empty", "disclaimer", "opendkim", "empty-2p", "disclaimer-2p")


def load() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@contextmanager
def process(argv: list[str], log: Path, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` for the block; stop it by PID afterwards."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_socket(path: Path, timeout: float = 20.0) -> None:
    """Wait until ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)


def opendkim_conf(root: Path) -> tuple[Path, Path]:
    """An OpenDKIM signing configuration; returns (config, socket)."""
    key = root / "od.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                   capture_output=True)
    os.chmod(key, 0o600)
    sock = root / "od.sock"
    conf = root / "opendkim.conf"
    conf.write_text(f"Mode s\nDomain corp.example\nSelector od\nKeyFile {key}\n"
                    f"Canonicalization relaxed/relaxed\nSocket local:{sock}\nUMask 000\n"
                    f"RequireSafeKeys false\nBackground no\nSyslog no\n"
                    f"PidFile {root / 'od.pid'}\n")
    return conf, sock


def run_case(postfix: Postfix, size: int, sessions: int, count: int) -> float:
    """Messages per second for one run."""
    started = time.monotonic()
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size),
                    "-f", "alice@corp.example", "-t", "bob@partner.example",
                    f"127.0.0.1:{postfix.smtpd_port}"], check=True, capture_output=True,
                   timeout=900)
    while postfix.queue_count():
        time.sleep(0.01)
    return count / (time.monotonic() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    """VmHWM of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_throughput_arguments(parser, CONFIGS)
    parser.add_argument("--small-only", action="store_true", help="only the 10 KB cases")
    args = parser.parse_args()
    return run_in_root("mailroute-bench-milter-",
                       ("postfix", "smtp-source", "smtp-sink", "opendkim"), bench, args)


def add_throughput_arguments(parser: argparse.ArgumentParser, configs: tuple[str, ...]) -> None:
    """The options every SMTP throughput benchmark takes."""
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small-count", type=int, default=1000)
    parser.add_argument("--large-count", type=int, default=100)
    parser.add_argument("--rss-count", type=int, default=10_000)
    parser.add_argument("--configs", default=",".join(configs),
                        help="comma-separated subset of " + ", ".join(configs))


def run_in_root(prefix: str, tools: tuple[str, ...],
                bench: Callable[[Path, argparse.Namespace], int],
                args: argparse.Namespace) -> int:
    """``bench(root, args)`` in a temporary directory Postfix can traverse, removed after;
    1 when a tool is missing."""
    for tool in tools:
        if not shutil.which(tool):
            print(f"{tool} not installed (scripts/setup-system)", file=sys.stderr)
            return 1
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)  # noqa: S103 - the postfix user must traverse it
    try:
        return bench(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench(root: Path, args: argparse.Namespace) -> int:
    (root / "empty.toml").write_text("")
    (root / "d.txt").write_text("-- \nVertraulich / Confidential. mailroute-disclaimer-v1\n")
    (root / "disclaimer.toml").write_text('[[pipeline]]\nfilter = "disclaimer"\ntext = "d.txt"\n')
    od_conf, od_sock = opendkim_conf(root)
    sink_port = free_port()
    sockets = {"empty": root / "empty.sock", "disclaimer": root / "disclaimer.sock",
               "empty-2p": root / "empty-2p.sock", "disclaimer-2p": root / "disclaimer-2p.sock"}
    mailroute = [sys.executable, "-m", "mailroute", "milter"]
    with process(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "256"],
                 root / "sink.log"), \
         process([*mailroute, "--config", str(root / "empty.toml"), "--socket",
                  f"unix:{sockets['empty']}", "--socket-mode", "0666"], root / "m1.log"), \
         process([*mailroute, "--config", str(root / "disclaimer.toml"), "--socket",
                  f"unix:{sockets['disclaimer']}", "--socket-mode", "0666"],
                 root / "m2.log") as disclaimer_milter, \
         process([*mailroute, "--config", str(root / "empty.toml"), "--socket",
                  f"unix:{sockets['empty-2p']}", "--socket-mode", "0666", "--processes",
                  "2"], root / "m3.log"), \
         process([*mailroute, "--config", str(root / "disclaimer.toml"), "--socket",
                  f"unix:{sockets['disclaimer-2p']}", "--socket-mode", "0666", "--processes",
                  "2"], root / "m4.log"), \
         process(["opendkim", "-x", str(od_conf)], root / "od.log"):
        wait_port(sink_port)
        for path in (*sockets.values(), od_sock):
            wait_socket(path)
        milters = {"postfix": "", "empty": f"unix:{sockets['empty']}",
                   "disclaimer": f"unix:{sockets['disclaimer']}",
                   "opendkim": f"unix:{od_sock}",
                   "empty-2p": f"unix:{sockets['empty-2p']}",
                   "disclaimer-2p": f"unix:{sockets['disclaimer-2p']}"}
        postfix = Postfix(root / "pf", free_port(), sink_port,
                          settings={"smtpd_milters": "", "default_process_limit": "100"})
        postfix.start()
        try:
            return measure(postfix, milters, args, disclaimer_milter.pid)
        finally:
            postfix.stop()


def measure(postfix: Postfix, milters: dict[str, str], args: argparse.Namespace,
            disclaimer_pid: int) -> int:
    print(f"# load average before: {load()}; CPUs: {os.cpu_count()}")
    results: dict[tuple[str, int, int], list[float]] = {}
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    cases = [case for case in CASES if not args.small_only or case[0] < 100_000]
    for round_ in range(args.rounds):
        for config in configs:
            postfix.reload(smtpd_milters=milters[config])
            for size, sessions in cases:
                count = args.small_count if size < 100_000 else args.large_count
                rate = run_case(postfix, size, sessions, count)
                results.setdefault((config, size, sessions), []).append(rate)
        print(f"# round {round_ + 1} done, load average: {load()}", flush=True)
    ratios = [(a, b) for a, b in (("empty", "postfix"), ("disclaimer", "postfix"),
                                   ("disclaimer", "opendkim"), ("empty-2p", "postfix"),
                                   ("disclaimer-2p", "postfix"), ("disclaimer-2p", "opendkim"))
              if a in configs and b in configs]
    print("\n| case | " + " | ".join(configs) + "".join(f" | {a}/{b}" for a, b in ratios)
          + " |")
    print("|---" * (len(configs) + len(ratios) + 1) + "|")
    for size, sessions in cases:
        med = {c: statistics.median(results[(c, size, sessions)]) for c in configs}
        label = f"{size // 1024} KB, {sessions} session{'s' if sessions > 1 else ''}"
        cells = " | ".join(f"{med[c]:.0f}" for c in configs)
        print(f"| {label} | {cells}" + "".join(f" | {med[a] / med[b]:.2f}" for a, b in ratios)
              + " |")
    print("\n(messages per second, median of "
          f"{args.rounds} rounds; runs: {results})")
    postfix.reload(smtpd_milters=milters["disclaimer"])
    started, cpu = time.monotonic(), cpu_seconds(disclaimer_pid)
    run_case(postfix, 10 * 1024, 10, args.rss_count)
    cpu_ms = (cpu_seconds(disclaimer_pid) - cpu) / args.rss_count * 1000
    print(f"\n# {args.rss_count} x 10 KB through the disclaimer milter in "
          f"{time.monotonic() - started:.1f} s, milter CPU {cpu_ms:.2f} ms per message; peak RSS "
          f"{peak_rss_kib(disclaimer_pid) / 1024:.1f} MiB; load average: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
