"""Peak memory of ``mailroute process`` on large messages, as Postfix pipe(8) runs it.

For each message shape, the peak RSS (GNU time, ``%M``) of ``mailroute process`` over that
message, minus the peak of the same command over a one-line message, divided by the message
size: what a large message costs above the loaded interpreter, in multiples of its size.
Shapes: the corpus's large message (a short text part and a 20 MB attachment), a 20 MB
base64 text body written as one line, a 20 MB 7bit text body of one line (the disclaimer
makes it quoted-printable), and a 24 MB text body in base64 lines of 76. Policies: empty
(identity) and the disclaimer policy of examples/disclaimer. Target (issue 12): the
disclaimer within 2x the message size. Last, ``mailroute pipe`` with the large attachment,
handing on over SMTP as examples/postfix does (to the test suite's SMTP sink on loopback).

    .venv/bin/python benchmarks/pipe_memory.py [--json FILE]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._results import Results, add_json_argument
from tests.adapters.postfix_harness import SinkServer, free_port

ROOT = Path(__file__).resolve().parents[1]
DISCLAIMER = ROOT / "examples" / "disclaimer" / "policy.toml"
ENVELOPE = ["--mail-from", "anna.weber@example.net", "--rcpt", "max@partner.example"]
SIZE = 20_000_000
HEAD = (b"From: Anna Weber <anna.weber@example.net>\r\nTo: max@partner.example\r\n"
        b"Subject: large\r\nMessage-ID: <large@example.net>\r\n"
        b"Date: Sun, 6 Dec 2026 07:00:00 +0000\r\nMIME-Version: 1.0\r\n")


def _text(cte: bytes, body: bytes, charset: bytes = b"utf-8") -> bytes:
    return (HEAD + b"Content-Type: text/plain; charset=" + charset
            + b"\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body)


def _attachment() -> bytes:
    encoded = base64.encodebytes(os.urandom(SIZE)).replace(b"\n", b"\r\n")
    return (HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n--b\r\n"
            b'Content-Type: application/octet-stream; name="x.bin"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b--\r\n")


SHAPES: dict[str, Callable[[], bytes]] = {
    "20 MB attachment": _attachment,
    "base64 body, one line": lambda: _text(b"base64", base64.b64encode(b"x" * SIZE) + b"\r\n"),
    "7bit body, one line": lambda: _text(b"7bit", b"x" * SIZE + b"\r\n", b"us-ascii"),
    "base64 body, lines": lambda: _text(b"base64", base64.encodebytes(
        b"Hallo Welt. " * (SIZE // 12)).replace(b"\n", b"\r\n")),
}


def _command() -> list[str]:
    script = Path(sys.executable).with_name("mailroute")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mailroute"]


def peak_kib(policy: Path, message: Path, smtp_port: int | None = None) -> int:
    """Peak RSS in KiB of ``mailroute process`` over ``message`` (its output discarded), or
    of ``mailroute pipe`` handing it on to ``smtp_port``."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    run = (["process", "--config", str(policy), *ENVELOPE] if smtp_port is None else
           ["pipe", "--config", str(policy), "--sender", ENVELOPE[1], "--reinject",
            f"smtp:127.0.0.1:{smtp_port}", "--log", "none", "--", ENVELOPE[3]])
    with message.open("rb") as stdin, tempfile.NamedTemporaryFile() as report:
        done = subprocess.run([gnu_time, "-f", "%M", "-o", report.name, *_command(), *run],
                              stdin=stdin, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        if done.returncode != 0:
            raise SystemExit(f"mailroute {run[0]} failed: {done.stderr.decode()[-400:]}")
        return int(Path(report.name).read_text().split()[-1])


def _pipe_over_smtp(work: Path, empty: Path, small: Path, rows: list[dict[str, object]]) -> None:
    port = free_port()
    sink = SinkServer(port).start()
    try:
        message = work / "large.eml"
        message.write_bytes(_attachment())
        size = message.stat().st_size
        ratios = {}
        for label, policy in (("empty", empty), ("disclaimer", DISCLAIMER)):
            ratios[label] = (peak_kib(policy, message, port) - peak_kib(policy, small, port)
                             ) * 1024 / size
            sink.clear()  # the sink keeps what it received
    finally:
        sink.stop()
    name = "pipe, SMTP hand-on"
    print(f"{name:24} {size / 1e6:6.1f} MB  {ratios['empty']:6.2f}x  {ratios['disclaimer']:9.2f}x")
    rows.append({"case": "20 MB attachment, mailroute pipe handing on over SMTP",
                 "values": {k: round(v, 2) for k, v in ratios.items()}})


def main() -> int:
    """Measure every shape under both policies and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_json_argument(parser)
    args = parser.parse_args()
    results = Results("pipe_memory")
    rows = results.chart("Peak RSS of mailroute process and pipe above the interpreter",
                         "x message size", ["empty", "disclaimer"], lower_is_better=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        empty = work / "empty.toml"
        empty.write_text("")
        small = work / "small.eml"
        small.write_bytes(_text(b"7bit", b"hello\r\n"))
        base = {name: peak_kib(policy, small) for name, policy in
                (("empty", empty), ("disclaimer", DISCLAIMER))}
        print(f"{'message':24} {'size':>8}  {'empty':>7}  {'disclaimer':>10}  (peak RSS above "
              "the interpreter, x the message size)")
        for name, make in SHAPES.items():
            message = work / "large.eml"
            message.write_bytes(make())
            size = message.stat().st_size
            ratios = {label: (peak_kib(policy, message) - base[label]) * 1024 / size
                      for label, policy in (("empty", empty), ("disclaimer", DISCLAIMER))}
            print(f"{name:24} {size / 1e6:6.1f} MB  {ratios['empty']:6.2f}x  "
                  f"{ratios['disclaimer']:9.2f}x")
            rows.append({"case": name, "values": {k: round(v, 2) for k, v in ratios.items()}})
        _pipe_over_smtp(work, empty, small, rows)
    results.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
