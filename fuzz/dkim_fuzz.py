"""atheris harness for DKIM, ARC, SPF and DMARC on hostile input. Not collected by pytest.

Properties, by the first input byte:

- 0: a DKIM-Signature field whose tags are the fuzzed bytes never verifies (nobody signed
  it) and verification never raises;
- 1: any message that parses and that mailroute agrees to sign verifies after signing, and
  still verifies after it is written out and parsed again;
- 2: SPF on a fuzzed record (with its includes and redirects pointing at more fuzzed
  records) returns one of the seven results within the lookup limits, never raises;
- 3: DMARC on a fuzzed policy record returns a result and never raises;
- 4: an ARC chain built from fuzzed fields is never ``pass`` and verification never raises.

    fuzz/run dkim 600
"""

from __future__ import annotations

import sys

import atheris
from cryptography.hazmat.primitives.asymmetric import ed25519

with atheris.instrument_imports():
    from mailroute.dkim import DnsFile, SigningKey, sign_message, verify_message
    from mailroute.dkim.arc import verify_chain
    from mailroute.dkim.dmarc import evaluate
    from mailroute.dkim.spf import SpfLookups, check_host
    from mailroute.errors import MailrouteError
    from mailroute.mime import parse
    from mailroute.results import AuthStatus

NOW = 1_790_000_000
KEY = SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))),
                 "ed25519-sha256")
RECORDS = {"ed._domainkey.example.net": [KEY.public_record()]}
MESSAGE = (b"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\n"
           b"Subject: hello\r\n\r\nHello.\r\n")
SPF_RESULTS = {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")


def _forged_signature(data: bytes) -> None:
    field = b"DKIM-Signature: v=1; a=ed25519-sha256; d=example.net; s=ed; " + data
    try:
        message = parse(field + b"\r\n" + MESSAGE, on_ambiguity="record")
    except MailrouteError:
        return
    for result in verify_message(message, DnsFile(RECORDS), now=NOW):
        if result.valid:
            raise AssertionError("a signature nobody made verified")


def _round_trip(data: bytes) -> None:
    try:
        message = parse(data, on_ambiguity="record")
        signed = sign_message(message, KEY, domain="example.net", selector="ed",
                              timestamp=NOW)
    except MailrouteError:
        return
    for candidate in (signed, parse(signed.to_bytes(), on_ambiguity="record")):
        first = verify_message(candidate, DnsFile(RECORDS), now=NOW)[0]
        if not first.valid:
            raise AssertionError(f"own signature failed: {first.reason}")


def _spf(data: bytes) -> None:
    parts = _text(data).split("|")
    dns = DnsFile({"example.net": parts[:1], "a.example.net": parts[1:2],
                   "b.example.net": parts[2:3], "example.net.example.net": parts[3:4]})
    result = check_host(SpfLookups(dns, dns.addresses, dns.mx), "192.0.2.7",
                        "alice@example.net", "mx.example.net")
    if result.result not in SPF_RESULTS:
        raise AssertionError(f"unknown SPF result {result.result!r}")


def _dmarc(data: bytes) -> None:
    dns = DnsFile({"_dmarc.example.net": [_text(data)]})
    result = evaluate(parse(MESSAGE), dns, [], None)
    result.auth_result()


def _arc(data: bytes) -> None:
    fields = b"\r\n".join(name + b": " + part for name, part in zip(
        (b"ARC-Seal", b"ARC-Message-Signature", b"ARC-Authentication-Results"),
        data.split(b"\n", 2), strict=False))
    try:
        message = parse(fields + b"\r\n" + MESSAGE, on_ambiguity="record")
    except MailrouteError:
        return
    if verify_chain(message, DnsFile(RECORDS)).status is AuthStatus.PASS:
        raise AssertionError("a chain nobody sealed passed")


CASES = (_forged_signature, _round_trip, _spf, _dmarc, _arc)


def test_one_input(data: bytes) -> None:
    """Dispatch on the first byte."""
    if data:
        CASES[data[0] % len(CASES)](data[1:])


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
