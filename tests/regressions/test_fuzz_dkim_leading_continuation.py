"""Found by ``fuzz/run dkim``: a header block that starts with a continuation line (a
defect) swallowed every field added "at the top": written out and read again, the orphaned
line folded into the new field, so a DKIM signature made in memory failed on the wire
("malformed signature") and any added field changed its value. Fields now go below such
lines, which stay orphaned exactly as they arrived."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519

from mailroute.dkim import DnsFile, SigningKey, sign_message, verify_message
from mailroute.mime import parse

KEY = SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))),
                 "ed25519-sha256")
CRASH = b" \xf0\nFrom:\x92\x01\x00\x00signed\n"   # the fuzzer's input, mode byte removed
NOW = 1_790_000_000


def test_a_signature_added_above_an_orphaned_line_verifies_on_the_wire() -> None:
    signed = sign_message(parse(CRASH, on_ambiguity="record"), KEY, domain="example.net",
                          selector="ed", timestamp=NOW).to_bytes()
    dns = DnsFile({"ed._domainkey.example.net": [KEY.public_record()]})
    [result] = verify_message(parse(signed, on_ambiguity="record"), dns, now=NOW)
    assert result.valid, result.reason
    assert signed.startswith(b" \xf0\nDKIM-Signature: ")


def test_an_added_field_reads_back_with_its_own_value() -> None:
    message = parse(b" orphan\r\nFrom: a@example.net\r\n\r\nbody\r\n", on_ambiguity="record")
    again = parse(message.with_header("X-Added", "value").to_bytes(), on_ambiguity="record")
    assert again.headers.value("X-Added") == "value"
    assert [f.name for f in again.headers] == ["", "X-Added", "From"]
