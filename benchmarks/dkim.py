"""DKIM sign and verify per second: mailroute in-process, dkimpy, and ``opendkim -t``.

Target (issue 16): mailroute's in-process sign and verify rates are at least OpenDKIM's
per-message rate on the same files in the same run. Two messages are generated here (a small
text message and one of about 1 MB with a base64 attachment); for each:

- mailroute: ``parse`` + ``sign_message`` + ``to_bytes`` (RSA-2048 and Ed25519), and
  ``parse`` + ``verify_message`` with the key record from memory; best of N runs;
- dkimpy 1.1.8: ``dkim.sign`` (relaxed/relaxed) and ``dkim.verify`` with the same records;
- ARC sealing (small message, RSA): mailroute's ``seal`` and dkimpy's ``arc_sign``;
- OpenDKIM: ``opendkim -t FILE`` with ``Mode s`` (``KeyFile``) and with ``Mode v``
  (``TestPublicKeys``): one process per message, as ``opendkim -t`` works; best of N.

Run: ``.venv/bin/python benchmarks/dkim.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._results import Results, add_json_argument
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailroute.dkim import (
    DnsFile,
    SigningKey,
    parse_signing_key,
    sign_message,
    verify_message,
)
from mailroute.dkim.arc import seal
from mailroute.mime.scan import parse
from mailroute.results import AuthResult, AuthStatus

DOMAIN = "example.net"


def load_dkimpy() -> ModuleType:
    """dkimpy (this file is called dkim.py: its folder must not shadow the package)."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.modules.pop("dkim", None)
    return importlib.import_module("dkim")


dkimpy = load_dkimpy()


def small_message() -> bytes:
    """A 2 KB text message."""
    body = "".join(f"Line {i} of the message, with some  words in it.\r\n" for i in range(40))
    return (f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@example.org\r\nSubject: small\r\n"
            f"Date: Sun, 06 Dec 2026 03:00:00 +0000\r\nMessage-ID: <s@{DOMAIN}>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + body).encode()


def large_message() -> bytes:
    """About 1 MB: a text part and a base64 attachment of random bytes."""
    payload = base64.encodebytes(random.Random(16).randbytes(760_000)).replace(b"\n", b"\r\n")
    return (f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@example.org\r\nSubject: large\r\n"
            f"Date: Sun, 06 Dec 2026 03:00:00 +0000\r\nMessage-ID: <l@{DOMAIN}>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            "--b1\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n"
            "--b1\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + payload + b"--b1--\r\n"


def best(work: Callable[[], object], runs: int) -> float:
    """The fastest of ``runs`` timed calls, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def opendkim(conf: Path, path: Path) -> None:
    """One ``opendkim -t`` run."""
    done = subprocess.run(["opendkim", "-x", str(conf), "-t", str(path)], capture_output=True,
                          timeout=120, check=False)
    verifying = path.name.startswith("signed-")
    if done.returncode != 0 or (verifying and b"succeeded" not in done.stdout + done.stderr):
        raise SystemExit(f"opendkim failed: {done.stderr.decode()[:300]}")


def arc_seal_row(key: rsa.RSAPrivateKey, traditional_pem: bytes, runs: int) -> None:
    """ARC seals per second on the small message: mailroute (``cryptography``) and dkimpy
    (pure-Python RSA); OpenDKIM does not seal ARC."""
    data = small_message()
    results = (AuthResult("dkim", AuthStatus.PASS), AuthResult("arc", AuthStatus.NONE))
    ar = b"Authentication-Results: mx.example.org; dkim=pass; arc=none\r\n"

    def ours() -> bytes:
        return seal(parse(data), key, domain=DOMAIN, selector="rsa",
                    authserv_id="mx.example.org", results=results, timestamp=0).to_bytes()

    def theirs() -> object:
        return dkimpy.arc_sign(ar + data, b"rsa", DOMAIN.encode(), traditional_pem,
                               b"mx.example.org", timestamp=0)

    print(f"{'small':8} {'arc':6} {'rsa':8} {1 / best(ours, runs):12.0f} "
          f"{1 / best(theirs, runs):10.0f} {'-':>14}")


def main() -> None:
    """Print one table row per message, operation and implementation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    add_json_argument(parser)
    args = parser.parse_args()
    results = Results("dkim")
    series = ["mailroute", "dkimpy", "opendkim -t"]
    charts = {label: results.chart(f"DKIM, {label} message", "operations per second", series,
                                   lower_is_better=False) for label in ("small", "1 MB")}
    if shutil.which("opendkim", path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
        raise SystemExit("opendkim is not installed (scripts/setup-system)")
    folder = Path(tempfile.mkdtemp(prefix="dkim-bench-"))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    none = serialization.NoEncryption()
    pem = {"rsa": rsa_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8, none),
           "ed": ed_key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8, none)}
    keys = {name: parse_signing_key(data) for name, data in pem.items()}
    records = {f"{name}._domainkey.{DOMAIN}": key.public_record() for name, key in keys.items()}
    dns = DnsFile({name: [value] for name, value in records.items()})

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return dns(name.decode().rstrip("."))[0].encode()

    test_keys = folder / "keys.txt"
    test_keys.write_text("".join(f"{k} {v}\n" for k, v in records.items()))
    confs: dict[str, Path] = {}
    for name, algorithm in (("rsa", "rsa-sha256"), ("ed", "ed25519-sha256")):
        key_path = folder / f"{name}.pem"
        key_path.write_bytes(pem[name])
        key_path.chmod(0o600)
        confs[name] = folder / f"sign-{name}.conf"
        confs[name].write_text(f"Mode s\nDomain {DOMAIN}\nSelector {name}\nKeyFile {key_path}\n"
                               f"SignatureAlgorithm {algorithm}\n"
                               "Canonicalization relaxed/relaxed\nSyslog no\n"
                               "RequireSafeKeys false\n")
    verify_conf = folder / "verify.conf"
    verify_conf.write_text(f"Mode v\nTestPublicKeys {test_keys}\nSyslog no\n")
    rsa_traditional = rsa_key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.TraditionalOpenSSL, none)
    ed_seed = base64.b64encode(ed_key.private_bytes(serialization.Encoding.Raw,
                                                    serialization.PrivateFormat.Raw, none))

    print(f"{'message':8} {'op':6} {'alg':8} {'mailroute/s':>12} {'dkimpy/s':>10} "
          f"{'opendkim -t/s':>14}")
    for label, data in (("small", small_message()), ("1 MB", large_message())):
        runs = args.runs if len(data) < 100_000 else max(3, args.runs // 4)
        plain = folder / "plain.eml"
        plain.write_bytes(data)
        for name in ("rsa", "ed"):
            key = keys[name]
            ours_signed = sign_message(parse(data), key, domain=DOMAIN, selector=name,
                                       timestamp=int(time.time())).to_bytes()
            signed_path = folder / f"signed-{name}.eml"
            signed_path.write_bytes(ours_signed)
            assert [r.valid for r in verify_message(parse(ours_signed), dns,
                                                    now=time.time())] == [True]
            algorithm = "rsa-sha256" if name == "rsa" else "ed25519-sha256"
            theirs_key = rsa_traditional if name == "rsa" else ed_seed

            def sign(key: SigningKey = key, name: str = name, data: bytes = data) -> bytes:
                return sign_message(parse(data), key, domain=DOMAIN,
                                    selector=name, timestamp=0).to_bytes()

            def dkimpy_sign(theirs_key: bytes = theirs_key, name: str = name,
                            algorithm: str = algorithm, data: bytes = data) -> bytes:
                return bytes(dkimpy.sign(data, name.encode(), DOMAIN.encode(), theirs_key,
                                         canonicalize=(b"relaxed", b"relaxed"),
                                         signature_algorithm=algorithm.encode()))

            def verify(signed: bytes = ours_signed) -> object:
                return verify_message(parse(signed), dns, now=time.time())

            def dkimpy_verify(signed: bytes = ours_signed) -> object:
                return dkimpy.verify(signed, dnsfunc=dnsfunc)

            conf = confs[name]
            rows = (("sign", best(sign, runs), best(dkimpy_sign, runs),
                     best(partial(opendkim, conf, plain), runs)),
                    ("verify", best(verify, runs), best(dkimpy_verify, runs),
                     best(partial(opendkim, verify_conf, signed_path), runs)))
            for op, ours, theirs, od in rows:
                print(f"{label:8} {op:6} {name:8} {1 / ours:12.0f} {1 / theirs:10.0f} "
                      f"{1 / od:14.0f}")
                charts[label].append({"case": f"{op} {name}", "values": {
                    series[0]: 1 / ours, series[1]: 1 / theirs, series[2]: 1 / od}})
    arc_seal_row(rsa_key, rsa_traditional, args.runs)
    shutil.rmtree(folder)
    results.write(args.json)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
