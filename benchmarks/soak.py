"""Soak: many corpus messages through an SMTP endpoint, every delivery counted.

10 concurrent SMTP sessions send 10,000 messages taken in turn from the project's corpus
(corpus/generate.py; messages over ``--max-size`` are left out) into the target's SMTP port.
Each copy gets an ``X-Soak-Id`` field first, so the sink behind the target can count
deliveries per message without keeping them. A 4xx is counted as deferred and sent again
later (up to ``--retries`` times, as a client's queue would); a 5xx is counted as refused.
At the end the target's queue must drain. The report:

* sent: messages the target answered 250; deferred: 4xx answers; refused: 5xx answers;
* delivered: distinct messages the sink received; duplicates: extra copies;
* lost: accepted (250) but never delivered; and the filter process's RSS after 1,000 and
  after all messages, with the growth between them. Both samples are taken with nothing in
  flight: the clients pause after 1,000 until the target's queue is empty.

Targets are pluggable: a target starts the MTA/filter pair with the sink as next hop and
says where to send, which process is the filter, and whether its queue is empty.

* ``milter``: a throwaway Postfix 3.7 with ``mailroute milter`` (unix socket, the policy of
  ``--policy``: ``disclaimer`` by default, or ``empty``) as ``smtpd_milters``.
* ``serve``: ``mailroute serve`` (the same policies) with the sink as its next hop. It keeps
  no queue (a before-queue proxy: 250 only after the sink took the message), so "queued" is
  always 0 and every accepted message must already be at the sink.

    .venv/bin/python benchmarks/soak.py [--target milter|serve] [--messages 10000] [--sessions 10]

Exit status 0 when nothing was lost or duplicated and every message was delivered.
"""

from __future__ import annotations

import argparse
import itertools
import os
import queue
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._corpus import corpus_dir, manifest
from tests.adapters.postfix_harness import Delivered, Postfix, SinkServer, free_port

SOAK_ID = b"X-Soak-Id: "
RSS_MARK = 1000


# -- the sink: counts deliveries per X-Soak-Id, keeps no message ----------------------------


class CountingSink(SinkServer):
    """An SMTP sink that counts what it receives by ``X-Soak-Id``."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.counts: Counter[int] = Counter()
        self.unknown = 0

    def add(self, message: Delivered) -> None:
        """Count one delivery (the message itself is dropped)."""
        start = message.data.find(SOAK_ID)
        end = message.data.find(b"\r\n", start)
        with self.lock:
            if start < 0 or end < 0 or not message.data[start + len(SOAK_ID):end].isdigit():
                self.unknown += 1
            else:
                self.counts[int(message.data[start + len(SOAK_ID):end])] += 1

    def total(self) -> int:
        """Deliveries so far."""
        with self.lock:
            return sum(self.counts.values()) + self.unknown


# -- targets ----------------------------------------------------------------------------------


class Target(Protocol):
    """What the soak drives: an SMTP endpoint relaying to the sink through a filter."""

    name: str

    def start(self, root: Path, sink_port: int) -> None:
        """Start everything, relaying to 127.0.0.1:``sink_port``."""

    @property
    def smtp_port(self) -> int:
        """Where the clients connect (127.0.0.1)."""
        ...

    def filter_pid(self) -> int:
        """The process whose RSS is measured."""
        ...

    def queued(self) -> int:
        """Messages the target still holds."""
        ...

    def stop(self) -> None:
        """Stop everything started."""


@dataclass
class MilterTarget:
    """Postfix + ``mailroute milter`` on a unix socket."""

    policy: str = "disclaimer"
    processes: int = 1
    name: str = "milter"
    postfix: Postfix | None = None
    milter: subprocess.Popen[bytes] | None = None

    def start(self, root: Path, sink_port: int) -> None:
        policy = _write_policy(root, self.policy)
        sock = root / "milter.sock"
        with (root / "milter.log").open("ab") as log:
            self.milter = subprocess.Popen(
                [sys.executable, "-m", "mailroute", "milter", "--config", str(policy),
                 "--socket", f"unix:{sock}", "--socket-mode", "0666",
                 "--processes", str(self.processes)],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.milter.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "milter.log").read_text()[-2000:])
            time.sleep(0.05)
        self.postfix = Postfix(root / "pf", free_port(), sink_port, settings={
            "smtpd_milters": f"unix:{sock}", "default_process_limit": "100"})
        self.postfix.start()

    @property
    def smtp_port(self) -> int:
        assert self.postfix is not None
        return self.postfix.smtpd_port

    def filter_pid(self) -> int:
        assert self.milter is not None
        return self.milter.pid

    def queued(self) -> int:
        assert self.postfix is not None
        return self.postfix.queue_count()

    def stop(self) -> None:
        if self.postfix is not None:
            self.postfix.stop()
        _stop_process(self.milter)


def _write_policy(root: Path, policy: str) -> Path:
    """The soak policy: ``empty`` or ``disclaimer`` (a text footer)."""
    (root / "d.txt").write_text("-- \nVertraulich / Confidential. mailroute-disclaimer-v1\n")
    path = root / "policy.toml"
    path.write_text("" if policy == "empty"
                    else '[[pipeline]]\nfilter = "disclaimer"\ntext = "d.txt"\n')
    return path


def _stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class ServeTarget:
    """``mailroute serve`` in front of the sink."""

    policy: str = "disclaimer"
    name: str = "serve"
    port: int = 0
    serve: subprocess.Popen[bytes] | None = None

    def start(self, root: Path, sink_port: int) -> None:
        policy = _write_policy(root, self.policy)
        self.port = free_port()
        with (root / "serve.log").open("ab") as log:
            self.serve = subprocess.Popen(
                [sys.executable, "-m", "mailroute", "serve", "--config", str(policy),
                 "--listen", f"127.0.0.1:{self.port}", "--next-hop", f"127.0.0.1:{sink_port}",
                 "--log", "none"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as smtp:
                    smtp.noop()
                return
            except OSError:
                if self.serve.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((root / "serve.log").read_text()[-2000:]) from None
                time.sleep(0.1)

    @property
    def smtp_port(self) -> int:
        return self.port

    def filter_pid(self) -> int:
        assert self.serve is not None
        return self.serve.pid

    def queued(self) -> int:
        return 0

    def stop(self) -> None:
        _stop_process(self.serve)


#: ``--target`` name -> the target, built from the command line.
TARGETS: dict[str, Callable[[argparse.Namespace], Target]] = {
    "milter": lambda args: MilterTarget(policy=args.policy, processes=args.processes),
    "serve": lambda args: ServeTarget(policy=args.policy),
}


# -- the clients and the accounting ---------------------------------------------------------


@dataclass
class Accounting:
    """What the clients saw."""

    sent: set[int] = field(default_factory=set)
    deferred: int = 0
    refused: set[int] = field(default_factory=set)
    gave_up: set[int] = field(default_factory=set)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settled(self) -> int:
        """Messages with a final answer (250 or 5xx, or retries exhausted)."""
        with self.lock:
            return len(self.sent) + len(self.refused) + len(self.gave_up)


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its child processes (milter workers) in KiB."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(stat.parent.name) != pid and int(fields[1]) != pid:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, ValueError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def drain(target: Target, sink: CountingSink, books: Accounting, count: int,
          timeout: float) -> None:
    """Wait until the first ``count`` messages are settled and the target's queue is empty
    (at most ``timeout`` seconds for the queue)."""
    while books.settled() < count:
        time.sleep(0.1)
    deadline = time.monotonic() + timeout
    while (target.queued() or sink.total() < len(books.sent)) and time.monotonic() < deadline:
        time.sleep(0.2)


def client(port: int, work: queue.Queue[tuple[int, bytes, int]], books: Accounting,
           retries: int, stop: threading.Event) -> None:
    """One SMTP session at a time: send, reconnect per message, requeue a 4xx."""
    while not stop.is_set():
        try:
            number, data, tries = work.get(timeout=0.2)
        except queue.Empty:
            continue
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as smtp:
                smtp.sendmail("alice@corp.example", ["bob@partner.example"], data)
            code = 250
        except smtplib.SMTPResponseException as error:
            code = error.smtp_code
        except smtplib.SMTPRecipientsRefused as error:
            code = next(iter(error.recipients.values()))[0]
        except (smtplib.SMTPException, OSError):
            code = 421
        with books.lock:
            books.attempts += 1
            if code == 250:
                books.sent.add(number)
            elif 500 <= code <= 599:
                books.refused.add(number)
            else:
                books.deferred += 1
        if 400 <= code <= 499 or code < 200:
            if tries >= retries:
                with books.lock:
                    books.gave_up.add(number)
            else:
                time.sleep(1.0)
                work.put((number, data, tries + 1))
        work.task_done()


def run(target: Target, args: argparse.Namespace, root: Path) -> int:
    """Start ``target``, push the messages through it, wait for the queue, report."""
    corpus = corpus_dir()
    bodies = [(corpus / str(e["file"])).read_bytes() for e in manifest(corpus)
              if int(str(e["bytes"])) <= args.max_size]
    sink = CountingSink(free_port())
    sink.start()
    target.start(root, sink.server_address[1])
    books = Accounting()
    work: queue.Queue[tuple[int, bytes, int]] = queue.Queue(maxsize=args.sessions * 4)
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(target.smtp_port, work, books,
                                                     args.retries, stop), daemon=True)
               for _ in range(args.sessions)]
    for thread in threads:
        thread.start()
    pid = target.filter_pid()
    rss: dict[str, int] = {}
    started = time.monotonic()
    print(f"# soak: target {target.name}, {args.messages} messages from {len(bodies)} corpus "
          f"files, {args.sessions} sessions; load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        for number, body in zip(range(args.messages), itertools.cycle(bodies), strict=False):
            if number == RSS_MARK:
                # RSS is compared between two quiet moments: after 1,000 and at the end,
                # with nothing in flight, so neither sample catches a large message mid-way
                drain(target, sink, books, number, args.drain_timeout)
                rss["after_1000"] = rss_kib(pid)
            work.put((number, SOAK_ID + str(number).encode() + b"\r\n" + body, 0))
            if number and number % 1000 == 0:
                print(f"#   {number} queued, {books.settled()} settled, "
                      f"{sink.total()} delivered, filter RSS {rss_kib(pid) / 1024:.1f} MiB, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
        drain(target, sink, books, args.messages, args.drain_timeout)
        rss["after_all"] = rss_kib(pid)
        elapsed = time.monotonic() - started
        held = target.queued()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        target.stop()
        sink.stop()
    if held:
        print(f"# the target still holds {held} messages (deferred or stuck)")
    return report(books, sink, rss, elapsed, args)


def report(books: Accounting, sink: CountingSink, rss: dict[str, int], elapsed: float,
           args: argparse.Namespace) -> int:
    """Print the figures; 0 when every accepted message arrived exactly once."""
    delivered = set(sink.counts)
    duplicates = sum(count - 1 for count in sink.counts.values() if count > 1)
    lost = books.sent - delivered
    unexpected = delivered - books.sent
    first, last = rss.get("after_1000", 0), rss.get("after_all", 0)
    growth = (last - first) / first * 100 if first else float("nan")
    print(f"sent (250)        {len(books.sent)}")
    print(f"deferred (4xx)    {books.deferred} answers; gave up on {len(books.gave_up)}")
    print(f"refused (5xx)     {len(books.refused)}")
    print(f"delivered         {len(delivered)} distinct, {duplicates} duplicate copies, "
          f"{sink.unknown} without an id")
    print(f"delivered but never accepted  {len(unexpected)}")
    print(f"lost              {len(lost)}" + (f" (ids {sorted(lost)[:20]})" if lost else ""))
    print(f"filter RSS        {first / 1024:.1f} MiB after {RSS_MARK}, {last / 1024:.1f} MiB "
          f"after {args.messages} ({growth:+.1f} %)")
    print(f"time              {elapsed:.0f} s ({args.messages / elapsed:.0f} messages/s); "
          f"load average {os.getloadavg()[0]:.2f}")
    ok = not lost and not duplicates and not unexpected and not books.gave_up
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="milter")
    parser.add_argument("--policy", choices=("disclaimer", "empty"), default="disclaimer",
                        help="the target's policy")
    parser.add_argument("--processes", type=int, default=1,
                        help="the milter target's --processes")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--retries", type=int, default=5, help="resends after a 4xx")
    parser.add_argument("--max-size", type=int, default=4 * 1024 * 1024,
                        help="leave out corpus messages larger than this (bytes)")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (MTA and filter logs) and print it")
    args = parser.parse_args()
    for tool in ("postfix",):
        if not shutil.which(tool):
            print(f"{tool} not installed (scripts/setup-system)", file=sys.stderr)
            return 1
    root = Path(tempfile.mkdtemp(prefix="mailroute-soak-"))
    os.chmod(root, 0o755)  # noqa: S103 - the postfix user must traverse it
    try:
        return run(TARGETS[args.target](args), args, root)
    finally:
        if args.keep:
            print(f"# kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
