"""Messages per second through a real Postfix: ``smtp-source`` -> Postfix -> ``smtp-sink``.

Configurations, on one throwaway Postfix 3.7 instance (reloaded between them) on loopback:

* ``postfix``: no milter (the ceiling);
* ``null``, ``null-body``: a do-nothing C milter (benchmarks/null_milter.c, built with the
  system's C compiler) that negotiates exactly what mailroute's adapter negotiates for a
  policy without filters (``null``: no headers, no body) and with filters (``null-body``), and
  answers accept at end-of-message: the ceiling of "Postfix + a milter" on this machine;
* ``null-replace``: the C milter with the ``null-body`` negotiation that answers
  end-of-message with the body it was shown plus the disclaimer policy's text (one body
  replacement, then accept): the ceiling of "Postfix + a milter that changes the body",
  with no work beyond copying bytes;
* ``python-null``: the same do-nothing milter in Python on uvloop (benchmarks/null_milter.py),
  with the ``null`` negotiation: the ceiling of "Postfix + a Python milter";
* ``python-null-replace``: the Python one answering as ``null-replace`` does;
* ``empty``: ``mailroute milter`` with an empty policy (unix socket);
* ``disclaimer``: ``mailroute milter`` with a one-filter disclaimer policy (unix socket);
* ``dkim``: ``mailroute milter`` with a one-filter ``dkim-sign`` policy (rsa-sha256,
  relaxed/relaxed, OpenDKIM's domain, selector and key): the like-for-like peer of OpenDKIM;
* ``opendkim``: OpenDKIM 2.11 signing (rsa-sha256, relaxed/relaxed) as the peer (unix socket);
* ``empty-2p``, ``disclaimer-2p``, ``dkim-2p``: the same milters with ``--processes 2``;
* ``empty-mypyc``, ``disclaimer-mypyc``: the same milters run from a copy with their hot path
  compiled by mypyc (benchmarks/mypyc_build.py; skipped without a C compiler): what
  compiling would buy.

Cases: 10 KB and 1 MB messages, 1 and 10 sessions. A run is the wall time from the start of
``smtp-source`` until Postfix's queue is empty again (every message relayed to the sink).
Configurations alternate within each round (the machine is shared: the load average is
printed); the median of the rounds is reported with ratios to Postfix alone, then the CPU
milliseconds per message of Postfix (the master and all its children), the milter,
``smtp-source`` and ``smtp-sink``, and the packets per message of the null milters' two
negotiations. Afterwards
10,000 10 KB messages go through the disclaimer milter with 10 sessions and the milter's
peak RSS (VmHWM) is printed.

Targets (issue 14), 10 sessions, 10 KB: empty >= 80 % of Postfix alone; disclaimer >= 70 %
of Postfix alone and >= 1.3x OpenDKIM.

    .venv/bin/python benchmarks/milter.py [--rounds 3] [--small-count 1000] [--large-count 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.mypyc_build import build as build_compiled
from tests.adapters.milter_recordings import DISCLAIMER_TEXT, write_policies
from tests.adapters.postfix_harness import Postfix, free_port, wait_port

CASES = ((10 * 1024, 1), (10 * 1024, 10), (1024 * 1024, 1), (1024 * 1024, 10))
CONFIGS = ("postfix", "null", "null-body", "null-replace", "python-null", "python-null-replace",
           "empty", "disclaimer", "dkim", "opendkim", "empty-2p", "disclaimer-2p", "dkim-2p",
           "empty-mypyc", "disclaimer-mypyc")
RATIOS = (("null", "postfix"), ("null-body", "postfix"), ("null-replace", "postfix"),
          ("python-null", "postfix"), ("python-null-replace", "postfix"),
          ("empty", "postfix"), ("disclaimer", "postfix"), ("disclaimer", "opendkim"),
          ("dkim", "postfix"), ("dkim", "opendkim"),
          ("empty", "null"), ("disclaimer", "null-replace"), ("empty-2p", "postfix"),
          ("disclaimer-2p", "postfix"), ("disclaimer-2p", "opendkim"), ("dkim-2p", "opendkim"),
          ("empty-mypyc", "postfix"), ("disclaimer-mypyc", "postfix"))


def load() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@contextmanager
def process(argv: list[str], log: Path,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (in ``env``, or this process's environment) for the block; stop it by
    PID afterwards."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
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


def signing_key(root: Path) -> Path:
    """The RSA-2048 key both DKIM signers use (made once per run)."""
    key = root / "od.key"
    if not key.exists():
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                       capture_output=True)
        os.chmod(key, 0o600)
    return key


def write_dkim_policy(root: Path) -> None:
    """``dkim.toml``: mailroute's ``dkim-sign`` with OpenDKIM's domain, selector and key."""
    (root / "dkim.toml").write_text(
        f'[[pipeline]]\nfilter = "dkim-sign"\ndomain = "corp.example"\nselector = "od"\n'
        f'key = "{signing_key(root)}"\n')


def opendkim_conf(root: Path) -> tuple[Path, Path]:
    """An OpenDKIM signing configuration; returns (config, socket)."""
    key = signing_key(root)
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
    done = subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size),
                           "-f", "alice@corp.example", "-t", "bob@partner.example",
                           f"127.0.0.1:{postfix.smtpd_port}"], capture_output=True, timeout=900)
    if done.returncode:
        raise RuntimeError(f"smtp-source failed ({size} bytes, {sessions} sessions): "
                           f"{done.stderr.decode(errors='replace').strip()[-500:]}")
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


def null_milter_argv(binary: Path, sock: Path, *, needs_message: bool,
                     append: str | None = None) -> list[str]:
    """The do-nothing milter's command line: mailroute's own negotiation (flags and macro
    lists), as it answers a Postfix that offers everything; with ``append``, the body
    replacement of the ``-replace`` configurations."""
    from mailroute.adapters.milter import negotiate
    from mailroute.protocols import milter as pm

    offer = pm.OptionNegotiation(pm.PROTOCOL_VERSION, pm.ActionFlag(0x1FF),
                                 pm.ProtocolFlag(0x1FFFFF))
    reply = negotiate(offer, needs_message=needs_message)
    macros = [str(item) for stage, names in reply.macros for item in (int(stage),
                                                                      names.decode())]
    replace = ["-a", append] if append is not None else []
    return [str(binary), *replace, str(sock), str(int(reply.actions)), str(int(reply.protocol)),
            *macros]


def build_null_milter(root: Path) -> Path | None:
    """benchmarks/null_milter.c compiled into ``root``, or ``None`` without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        print("# no C compiler: the null configurations are skipped", file=sys.stderr)
        return None
    binary = root / "null_milter"
    subprocess.run([compiler, "-O2", "-o", str(binary),
                    str(Path(__file__).with_name("null_milter.c"))], check=True)
    return binary


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and every live descendant, with their reaped children's
    (``cutime``/``cstime``): a process tree's total, across children that come and go."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    ticks, todo = 0, [pid]
    while todo:
        current = todo.pop()
        fields = _stat_fields(current)
        if fields is None:
            continue
        ticks += sum(int(value) for value in fields[11:15])
        todo += children.get(current, [])
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this process's waited-for children (smtp-source runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def packet_counts(proc: subprocess.Popen[bytes], log: Path) -> Counter[str]:
    """The do-nothing milter's packet counts so far ("in X" and "out x" keys)."""
    before = log.stat().st_size
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while log.stat().st_size == before and time.monotonic() < deadline:
        time.sleep(0.05)
    line = log.read_text().splitlines()[-1]
    counts: Counter[str] = Counter()
    incoming, _, outgoing = line.partition(" | ")
    for direction, part in (("in", incoming), ("out", outgoing)):
        for item in part.split()[1:]:
            key, _, value = item.rpartition("=")
            counts[f"{direction} {key}"] = int(value)
    return counts


@dataclass
class Milter:
    """One configuration's milter: its socket (Postfix's smtpd_milters) and process."""

    socket: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


def bench(root: Path, args: argparse.Namespace) -> int:
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    write_policies(root)
    if any(config.startswith("dkim") for config in configs):
        write_dkim_policy(root)
    sink_port = free_port()
    mailroute = [sys.executable, "-m", "mailroute", "milter"]
    null_binary = build_null_milter(root) if any(c.startswith("null") for c in configs) else None
    if null_binary is None:
        configs = [c for c in configs if not c.startswith("null")]
    compiled = (build_compiled(root / "mypyc") if any(c.endswith("-mypyc") for c in configs)
                else None)
    if compiled is None:
        configs = [c for c in configs if not c.endswith("-mypyc")]
    with ExitStack() as stack:
        sink = stack.enter_context(process(["smtp-sink", "-u", "nobody",
                                            f"127.0.0.1:{sink_port}", "256"], root / "sink.log"))
        milters: dict[str, Milter] = {"postfix": Milter("")}
        for config in configs:
            if config == "postfix":
                continue
            sock, log = root / f"{config}.sock", root / f"{config}.log"
            env: dict[str, str] | None = None
            if config == "opendkim":
                od_conf, sock = opendkim_conf(root)
                argv = ["opendkim", "-x", str(od_conf)]
            elif config.startswith("null"):
                assert null_binary is not None
                argv = null_milter_argv(null_binary, sock, needs_message=config != "null",
                                        append=APPENDED if config == "null-replace" else None)
            elif config.startswith("python-null"):
                replace = config.endswith("-replace")
                argv = [sys.executable, *null_milter_argv(
                    Path(__file__).with_name("null_milter.py"), sock, needs_message=replace,
                    append=APPENDED if replace else None)]
            else:
                policy, _, variant = config.partition("-")
                argv = [*mailroute, "--config", str(root / f"{policy}.toml"), "--socket",
                        f"unix:{sock}", "--socket-mode", "0666"]
                if variant.endswith("p"):
                    argv += ["--processes", variant.rstrip("p")]
                elif variant == "mypyc":
                    env = {**os.environ, "PYTHONPATH": str(compiled)}
            proc = stack.enter_context(process(argv, log, env))
            milters[config] = Milter(f"unix:{sock}", proc, log)
        wait_port(sink_port)
        for milter in milters.values():
            if milter.socket:
                wait_socket(Path(milter.socket.removeprefix("unix:")))
        postfix = Postfix(root / "pf", free_port(), sink_port,
                          settings={"smtpd_milters": "", "default_process_limit": "100"})
        postfix.start()
        stack.callback(postfix.stop)
        return measure(postfix, milters, configs, args, sink.pid)


Sample = dict[str, float]


def measure(postfix: Postfix, milters: dict[str, Milter], configs: list[str],
            args: argparse.Namespace, sink_pid: int) -> int:
    print(f"# load average before: {load()}; CPUs: {os.cpu_count()}")
    results: dict[tuple[str, int, int], list[float]] = {}
    cpu: dict[tuple[str, int, int], list[Sample]] = {}
    cases = [case for case in CASES if not args.small_only or case[0] < 100_000]
    master = postfix.master_pid()
    assert master is not None
    for round_ in range(args.rounds):
        for config in configs:
            postfix.reload(smtpd_milters=milters[config].socket)
            run_case(postfix, 10 * 1024, 10, WARM_UP)  # Postfix's processes start
            proc = milters[config].proc
            for size, sessions in cases:
                count = args.small_count if size < 100_000 else args.large_count
                before = cpu_sample(master, proc, sink_pid)
                rate = run_case(postfix, size, sessions, count)
                after = cpu_sample(master, proc, sink_pid)
                results.setdefault((config, size, sessions), []).append(rate)
                sample = {key: (after[key] - before[key]) / count * 1000 for key in CPU_KEYS}
                sample["box"] = (after["box"] - before["box"]) / (
                    after["wall"] - before["wall"]) / (os.cpu_count() or 1)
                cpu.setdefault((config, size, sessions), []).append(sample)
        print(f"# round {round_ + 1} done, load average: {load()}", flush=True)
    ratios = [(a, b) for a, b in RATIOS if a in configs and b in configs]
    print("\n| case | " + " | ".join(configs) + "".join(f" | {a}/{b}" for a, b in ratios)
          + " |")
    print("|---" * (len(configs) + len(ratios) + 1) + "|")
    for size, sessions in cases:
        med = {c: statistics.median(results[(c, size, sessions)]) for c in configs}
        cells = " | ".join(f"{med[c]:.0f}" for c in configs)
        print(f"| {label(size, sessions)} | {cells}"
              + "".join(f" | {med[a] / med[b]:.2f}" for a, b in ratios) + " |")
    print(f"\n(messages per second, median of {args.rounds} rounds; runs: {results})")
    print("\nCPU ms per message (median of the rounds): postfix = master + every child, "
          "milter = its process tree, source = smtp-source, sink = smtp-sink; box = the "
          "share of all CPUs busy during the run (anyone's work)\n")
    print("| case | config | postfix | milter | source | sink | total | box |")
    print("|---|---|---|---|---|---|---|---|")
    for size, sessions in cases:
        for config in configs:
            samples = cpu[(config, size, sessions)]
            ms = [statistics.median(s[key] for s in samples) for key in CPU_KEYS]
            box = statistics.median(s["box"] for s in samples)
            print(f"| {label(size, sessions)} | {config} | "
                  + " | ".join(f"{cell:.2f}" for cell in ms) + f" | {sum(ms):.2f} | "
                  f"{box:.0%} |")
    for config in configs:
        milter = milters[config]
        if config.startswith("null") and milter.proc is not None and milter.log is not None:
            postfix.reload(smtpd_milters=milter.socket)
            counted = packet_counts(milter.proc, milter.log)
            run_case(postfix, 10 * 1024, 1, 100)
            diff = packet_counts(milter.proc, milter.log) - counted
            print(f"\n# packets per message with {config}'s negotiation: "
                  f"{sum(v for k, v in diff.items() if k.startswith('in')) / 100:g} in, "
                  f"{sum(v for k, v in diff.items() if k.startswith('out')) / 100:g} out ("
                  + ", ".join(f"{k} {v / 100:g}" for k, v in sorted(diff.items())) + ")")
    if "disclaimer" in milters and args.rss_count:
        disclaimer = milters["disclaimer"].proc
        assert disclaimer is not None
        pid = disclaimer.pid
        postfix.reload(smtpd_milters=milters["disclaimer"].socket)
        started, used = time.monotonic(), cpu_seconds(pid)
        run_case(postfix, 10 * 1024, 10, args.rss_count)
        cpu_ms = (cpu_seconds(pid) - used) / args.rss_count * 1000
        print(f"\n# {args.rss_count} x 10 KB through the disclaimer milter in "
              f"{time.monotonic() - started:.1f} s, milter CPU {cpu_ms:.2f} ms per message; "
              f"peak RSS {peak_rss_kib(pid) / 1024:.1f} MiB; load average: {load()}")
    return 0


CPU_KEYS = ("postfix", "milter", "source", "sink")
#: What the ``-replace`` null milters add to every body: the disclaimer policy's text, as
#: that policy adds it to smtp-source's plain-text message.
APPENDED = DISCLAIMER_TEXT.replace("\n", "\r\n")
#: Messages sent after each reload before measuring (the new Postfix processes start).
WARM_UP = 100


def busy_seconds() -> float:
    """CPU seconds all CPUs of the machine spent busy so far (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_sample(master: int, milter: subprocess.Popen[bytes] | None, sink: int) -> Sample:
    """CPU seconds so far of Postfix, the milter, smtp-source and smtp-sink."""
    return {"postfix": tree_cpu_seconds(master),
            "milter": tree_cpu_seconds(milter.pid) if milter is not None else 0.0,
            "source": children_cpu_seconds(), "sink": tree_cpu_seconds(sink),
            "box": busy_seconds(), "wall": time.monotonic()}


def label(size: int, sessions: int) -> str:
    """``10 KB, 10 sessions``."""
    return f"{size // 1024} KB, {sessions} session{'s' if sessions > 1 else ''}"


if __name__ == "__main__":
    sys.exit(main())
