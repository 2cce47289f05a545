"""atheris harness for whole policies: any message through a policy of several filters
(disclaimer, headers, marker, DKIM/SPF/DMARC/ARC, S/MIME) gives a result
that is no internal error, and an accepted or quarantined result's edits (what the milter
tells the MTA) turn the message as received into the output, with Postfix's and Sendmail's
way of deleting fields alike. Not collected by pytest; run with fuzz/run.

The first byte picks the policy, the second the envelope; the rest is the message.

    .venv/bin/python fuzz/policy_fuzz.py -max_total_time=60 -max_len=16384 -rss_limit_mb=2048
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.smime.pki

with atheris.instrument_imports():
    from mailroute.dkim import load_signing_key
    from mailroute.errors import InternalError
    from mailroute.item import Envelope
    from mailroute.mime import parse
    from mailroute.mime.edits import field_pairs
    from mailroute.pipeline import Pipeline
    from mailroute.policy import load_policy
    from mailroute.results import Action
    from mailroute.testing import fake_context, write_fake_key_file

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from tests.smime.pki import issue

POLICIES = {
    "disclaimer": """
[[pipeline]]
filter = "headers"
remove = ["X-Internal"]
add = { "X-Scanned" = "mailroute" }
[[pipeline]]
filter = "disclaimer"
text = "d.txt"
html = "d.html"
signed = "wrap"
[[pipeline]]
filter = "marker-set"
key_file = "keys.toml"
""",
    "marker": """
[[pipeline]]
filter = "marker-verify"
key_file = "keys.toml"
on_invalid = "strip"
strip_ms_headers = true
[[pipeline]]
filter = "disclaimer"
text = "d.txt"
html = "d.html"
position = "reply"
invites = "bodies"
auto_replies = "add"
signed = "skip"
[[pipeline]]
filter = "marker-set"
key_file = "keys.toml"
""",
    "dkim": """
[[pipeline]]
filter = "dkim-verify"
dns_file = "dns.txt"
on_spoof = "flag"
accepted_domains = ["example.net"]
[[pipeline]]
filter = "dkim-sign"
domain = "example.net"
selector = "ed"
key = "ed.pem"
from_domains = ["example.net", "example.org"]
[[pipeline]]
filter = "arc-seal"
domain = "example.net"
selector = "rsa"
key = "rsa.pem"
""",
    "smime": """
[[pipeline]]
filter = "smime-verify"
trust = ["ca.crt"]
[[pipeline]]
filter = "smime-decrypt"
cert = "alice.crt"
key = "alice.key"
on_failure = "deliver"
[[pipeline]]
filter = "smime-sign"
cert = "alice.crt"
key = "alice.key"
[[pipeline]]
filter = "smime-encrypt"
recipient_cert = ["alice.crt"]
on_missing = "pass"
""",
}
ENVELOPES = (
    Envelope(mail_from="alice@example.net", rcpt_to=("bob@example.org",),
             client_address="192.0.2.1", helo="mx.example.net"),
    Envelope(mail_from="", rcpt_to=("alice@example.net",), client_address="203.0.113.9"),
    Envelope(mail_from="bob@example.org", rcpt_to=("alice@example.net", "carol@example.net"),
             client_address="2001:db8::1", tls_peer_name="x.mail.protection.outlook.com"),
)


def _world(folder: Path) -> list[Pipeline]:
    (folder / "d.txt").write_text("-- \nVertraulich {{ sender }} / Confidential\n")
    (folder / "d.html").write_text("<p>Vertraulich &amp; <b>confidential</b></p>\n")
    write_fake_key_file(folder / "keys.toml")
    records = []
    for selector, key in (("ed", ed25519.Ed25519PrivateKey.generate()),
                          ("rsa", rsa.generate_private_key(public_exponent=65537,
                                                           key_size=2048))):
        path = folder / f"{selector}.pem"
        path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        path.chmod(0o600)
        records.append(f"{selector}._domainkey.example.net "
                       f"{load_signing_key(path).public_record()}\n")
    (folder / "dns.txt").write_text(
        "".join(records) + "example.net v=spf1 ip4:192.0.2.0/24 -all\n"
        "_dmarc.example.net v=DMARC1; p=reject\nexample.net A 192.0.2.1\n")
    ca = issue(folder, "ca", issuer=None, ca=True)
    alice = issue(folder, "alice", issuer=ca, email="alice@example.net")
    for source, name in ((ca.cert_path, "ca.crt"), (alice.cert_path, "alice.crt"),
                         (alice.key_path, "alice.key")):
        (folder / name).write_bytes(source.read_bytes())
    (folder / "alice.key").chmod(0o600)
    pipelines = []
    for name, text in POLICIES.items():
        (folder / f"{name}.toml").write_text(text)
        pipelines.append(load_policy(folder / f"{name}.toml"))
    return pipelines


PIPELINES = _world(Path(tempfile.mkdtemp(prefix="policy-fuzz-")))


def test_one_input(data: bytes) -> None:
    """No internal error; the edits rebuild the output from what the MTA holds."""
    if len(data) < 2:
        return
    pipeline = PIPELINES[data[0] % len(PIPELINES)]
    envelope = ENVELOPES[data[1] % len(ENVELOPES)]
    result = pipeline.process(data[2:], envelope, context=fake_context())
    if isinstance(result.error, InternalError):
        raise AssertionError(f"internal error: {result.error}") from result.error.__cause__
    output = result.data
    if result.action not in (Action.ACCEPT, Action.QUARANTINE) or output is None:
        return
    received = parse(data[2:], on_ambiguity="record")
    final = parse(output, on_ambiguity="record")
    edits = result.edits
    wanted = [(name.lower(), value) for name, value in field_pairs(final)]
    for keep_deleted in (False, True):
        patched = edits.apply(field_pairs(received), keep_deleted=keep_deleted)
        if [(name.lower(), value) for name, value in patched] != wanted:
            raise AssertionError(f"header edits do not give the output ({keep_deleted=})")
    body = edits.body if edits.body is not None else received.root.body_bytes()
    if body != final.root.body_bytes():
        raise AssertionError("the body edit does not give the output")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
