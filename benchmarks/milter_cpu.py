"""CPU milliseconds per message of ``mailroute milter``, measured without Postfix in the loop.

The throughput benchmark (benchmarks/milter.py) follows the CPU of every process on a busy
2-core machine, so its ratios move with whatever else runs. This one measures the milter
alone: what a real Postfix 3.7 wrote to ``mailroute milter`` and what the milter answered,
read by read, for one SMTP session with one 10 KB message per policy (the recordings in
tests/adapters/data/postfix-3.7-milter, or new ones with ``--record``: a throwaway Postfix
on loopback relays one message through a recording proxy in front of the milter), is
replayed against a fresh ``mailroute milter`` over its unix socket, ``--count`` times with
``--sessions`` connections at once; the milter's user + system CPU (/proc/PID/stat) before
and after gives the CPU per message. Every replayed answer is compared with the recorded
one (a changed byte is an error), so a faster milter that answers differently does not
count.

    .venv/bin/python benchmarks/milter_cpu.py [--count 3000] [--sessions 10] [--rounds 3]
        [--configs empty,disclaimer] [--record [--save DIR]] [--load DIR]

The replay runs the ``mailroute`` that ``python -m mailroute`` imports: for an A/B
comparison run it twice, with ``PYTHONPATH=OTHER_TREE/src`` the second time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.milter import cpu_seconds, load, process, run_in_root, wait_socket
from tests.adapters.milter_recordings import (
    RECORDED,
    Conversation,
    Recorder,
    load_conversations,
    save_conversations,
    write_policies,
)
from tests.adapters.postfix_harness import Postfix, SinkServer, free_port

POLICIES = ("empty", "disclaimer")


def milter_argv(root: Path, policy: str, sock: Path) -> list[str]:
    """``mailroute milter`` as benchmarks/milter.py starts it."""
    return [sys.executable, "-m", "mailroute", "milter", "--config", str(root / f"{policy}.toml"),
            "--socket", f"unix:{sock}", "--socket-mode", "0666"]


def record(root: Path, policies: list[str]) -> dict[str, Conversation]:
    """One 10 KB message per policy through a real Postfix and the milter: its conversation."""
    sink = SinkServer(free_port()).start()
    postfix = Postfix(root / "pf", free_port(), sink.server_address[1])
    postfix.start()
    found: dict[str, Conversation] = {}
    try:
        for policy in policies:
            sock = root / f"rec-{policy}.sock"
            with process(milter_argv(root, policy, sock), root / f"rec-{policy}.log"):
                wait_socket(sock)
                recorder = Recorder(root / f"proxy-{policy}.sock", sock)
                postfix.reload(smtpd_milters=f"unix:{recorder.path}")
                sink.clear()
                subprocess.run(["smtp-source", "-s", "1", "-m", "1", "-l", str(10 * 1024),
                                "-f", "alice@corp.example", "-t", "bob@partner.example",
                                f"127.0.0.1:{postfix.smtpd_port}"], check=True,
                               capture_output=True, timeout=60)
                if not sink.wait_for(1):
                    raise RuntimeError(f"{policy}: nothing delivered")
                time.sleep(0.3)  # the quit and the close reach the recorder
                recorder.close()
                talks = [t for t in recorder.conversations if any(not m for m, _ in t)]
                if len(talks) != 1:
                    raise RuntimeError(f"{policy}: {len(talks)} conversations recorded")
                found[policy] = talks[0]
    finally:
        postfix.stop()
        sink.stop()
    return found


async def replay_one(path: Path, talk: Conversation) -> None:
    """One conversation; the milter's answers must be the recorded bytes."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        for from_mta, data in talk:
            if from_mta:
                writer.write(data)
            else:
                got = await reader.readexactly(len(data))
                if got != data:
                    raise AssertionError(f"answer differs: {got[:80]!r} != {data[:80]!r}")
        await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def replay(path: Path, talk: Conversation, count: int, sessions: int) -> None:
    """``count`` conversations, ``sessions`` at a time."""
    left = count

    async def session() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await replay_one(path, talk)

    await asyncio.gather(*(session() for _ in range(sessions)))


def measure(root: Path, policy: str, talk: Conversation, args: argparse.Namespace) -> list[float]:
    """CPU ms per message of a fresh milter, one figure per round."""
    sock = root / f"cpu-{policy}.sock"
    figures = []
    with process(milter_argv(root, policy, sock), root / f"cpu-{policy}.log") as proc:
        wait_socket(sock)
        asyncio.run(replay(sock, talk, 200, args.sessions))  # warm-up
        for _ in range(args.rounds):
            before = cpu_seconds(proc.pid)
            asyncio.run(replay(sock, talk, args.count, args.sessions))
            figures.append((cpu_seconds(proc.pid) - before) / args.count * 1000)
    return figures


def bench(root: Path, args: argparse.Namespace) -> int:
    policies = [p for p in POLICIES if p in args.configs.split(",")]
    write_policies(root)
    if args.record:
        talks = record(root, policies)
        if args.save:
            save_conversations(args.save, talks)
    else:
        talks = load_conversations(args.load, policies)
    print(f"# load average before: {load()}")
    for policy in policies:
        talk = talks[policy]
        reads = sum(1 for from_mta, _ in talk if from_mta)
        answers = sum(1 for from_mta, _ in talk if not from_mta)
        figures = measure(root, policy, talk, args)
        print(f"{policy}: milter CPU ms per message {statistics.median(figures):.3f} "
              f"(rounds: {', '.join(f'{f:.3f}' for f in figures)}; {args.count} messages "
              f"per round, {args.sessions} sessions; {reads} MTA writes, {answers} answers "
              f"per message)", flush=True)
    print(f"# load average after: {load()}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", default=",".join(POLICIES))
    parser.add_argument("--record", action="store_true",
                        help="record new conversations with a real Postfix first")
    parser.add_argument("--save", type=Path, help="with --record: keep them in this directory")
    parser.add_argument("--load", type=Path, default=RECORDED,
                        help="replay the conversations in this directory (default: the "
                             "recordings in tests/adapters/data)")
    args = parser.parse_args()
    tools = ("postfix", "smtp-source") if args.record else ()
    return run_in_root("mailroute-bench-milter-cpu-", tools, bench, args)


if __name__ == "__main__":
    sys.exit(main())
