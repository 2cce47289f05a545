"""PGP/MIME sign, encrypt and decrypt: mailroute's filters against plain gpg calls.

Measured in one run, on the same key (Ed25519/Cv25519 by default, ``--key rsa2048``) in a
throwaway GnuPG home, for a small message (~300 bytes) and a 1 MB message (text plus a 1 MB
base64 attachment):

- mailroute: ``Pipeline.process`` with one filter (``pgp-sign``, ``pgp-encrypt``,
  ``pgp-decrypt``): parsing, canonicalising, the gpg call through the key store (lock,
  timeout, status-line checks) and serialising;
- gpg: ``gpg --detach-sign --armor``, ``gpg --encrypt --armor``, ``gpg --decrypt`` as one
  subprocess per message on the same bytes (the entity mailroute would hand to gpg).

Each is run sequentially and with 4 worker threads sharing the one home (mailroute
serialises per home; plain gpg processes run in parallel and contend on the home's locks).
Printed: messages per second and the ratio mailroute/gpg (1.0 = as fast as bare gpg).

Run: ``.venv/bin/python benchmarks/pgp.py [--messages N] [--key ed25519|rsa2048]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from benchmarks._results import Results, add_json_argument

from mailroute import Filter, Pipeline
from mailroute.filters.pgp import (
    PgpDecryptFilter,
    PgpEncryptFilter,
    PgpSignFilter,
)
from mailroute.item import Envelope
from mailroute.mime import parse
from mailroute.pgp import KeyStore
from mailroute.pgp.rfc3156 import canonical_entity
from mailroute.results import Action

ADDRESS = "bench@example.org"
HEAD = (b"From: Bench <bench@example.org>\r\nTo: bench@example.org\r\nSubject: bench\r\n"
        b"MIME-Version: 1.0\r\n")
SMALL = HEAD + (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                b"A small message for the benchmark.\r\nSecond line.\r\n")


def large_message() -> bytes:
    """About 1 MB: a text part and a base64 attachment of 750 kB random bytes."""
    import base64
    blob = base64.encodebytes(os.urandom(750_000)).replace(b"\n", b"\r\n")
    return HEAD + (b'Content-Type: multipart/mixed; boundary="bb"\r\n\r\n--bb\r\n'
                   b"Content-Type: text/plain\r\n\r\nSee the attachment.\r\n--bb\r\n"
                   b"Content-Type: application/octet-stream\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\n" + blob + b"--bb--\r\n")


def make_home(base: Path, key: str) -> tuple[Path, str]:
    """A fresh home with one key for ``ADDRESS``; returns the home and the fingerprint."""
    home = base / "home"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
           "--passphrase", ""]
    if key == "rsa2048":
        subprocess.run([*gpg, "--quick-gen-key", ADDRESS, "rsa2048", "sign,cert,encr", "1y"],
                       check=True, capture_output=True)
    else:
        subprocess.run([*gpg, "--quick-gen-key", ADDRESS, "ed25519", "sign,cert", "1y"],
                       check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys"],
                             check=True, capture_output=True).stdout.decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
    if key != "rsa2048":
        subprocess.run([*gpg, "--quick-add-key", fpr, "cv25519", "encr", "1y"], check=True,
                       capture_output=True)
    return home, fpr


def rate(work: Callable[[int], object], count: int, workers: int) -> float:
    """Messages per second for ``count`` calls of ``work`` spread over ``workers`` threads."""
    share = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    errors: list[BaseException] = []

    def loop(n: int) -> None:
        try:
            for i in range(n):
                work(i)
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(n,)) for n in share]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"benchmark run failed: {errors[0]!r}")
    return count / elapsed


def through(step: Filter, data: bytes) -> Callable[[int], object]:
    pipeline = Pipeline(filters=(step,))
    envelope = Envelope(rcpt_to=(ADDRESS,))

    def work(_: int) -> bytes:
        result = pipeline.process(data, envelope)
        if result.action is not Action.ACCEPT or result.data is None:
            raise RuntimeError(result.reply)
        return result.data
    return work


def gpg_call(home: Path, args: list[str], data: bytes) -> Callable[[int], object]:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--trust-model", "always",
           *args]

    def work(_: int) -> bytes:
        done = subprocess.run(cmd, input=data, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"gpg failed: {' '.join(args)}")
        return done.stdout
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=80, help="small messages per cell")
    parser.add_argument("--large-messages", type=int, default=12,
                        help="1 MB messages per cell")
    parser.add_argument("--key", choices=("ed25519", "rsa2048"), default="ed25519")
    add_json_argument(parser)
    args = parser.parse_args()
    results = Results("pgp")
    series = ["mailroute", "gpg"]
    with tempfile.TemporaryDirectory(prefix="mr-pgp-bench-") as folder:
        home, fpr = make_home(Path(folder), args.key)
        try:
            store = KeyStore(home)
            version = subprocess.run(["gpg", "--version"], capture_output=True, text=True,
                                     check=True).stdout.splitlines()[0].split()[-1]
            print(f"gpg {version}, key {args.key}, {os.cpu_count()} CPUs")
            print(f"{'operation':<9} {'size':<6} {'workers':>7} {'mailroute/s':>12} "
                  f"{'gpg/s':>9} {'ratio':>6}")
            for label, raw, count in (("small", SMALL, args.messages),
                                      ("1MB", large_message(), args.large_messages)):
                chart = results.chart(f"OpenPGP ({args.key}), {label} message",
                                      "messages per second", series, lower_is_better=False)
                entity = canonical_entity(parse(raw), seven_bit=True)
                encrypted = through(PgpEncryptFilter(store), raw)(0)
                assert isinstance(encrypted, bytes)
                armored = store.encrypt(entity, [fpr])
                cells = (
                    ("sign", through(PgpSignFilter(store, fpr), raw),
                     gpg_call(home, ["--detach-sign", "--armor", "-u", fpr], entity)),
                    ("encrypt", through(PgpEncryptFilter(store), raw),
                     gpg_call(home, ["--encrypt", "--armor", "-r", fpr], entity)),
                    ("decrypt", through(PgpDecryptFilter(store), encrypted),
                     gpg_call(home, ["--decrypt"], armored)),
                )
                for name, ours, theirs in cells:
                    for workers in (1, 4):
                        mine = rate(ours, count, workers)
                        peer = rate(theirs, count, workers)
                        print(f"{name:<9} {label:<6} {workers:>7} {mine:>12.1f} {peer:>9.1f} "
                              f"{mine / peer:>6.2f}")
                        chart.append({"case": f"{name}, {workers} worker"
                                      + ("s" if workers > 1 else ""),
                                      "values": {series[0]: mine, series[1]: peer}})
            results.write(args.json)
        finally:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                           capture_output=True)


if __name__ == "__main__":
    main()
