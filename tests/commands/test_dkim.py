"""``mailroute dkim sign|verify`` and the own-domain spoof refused through ``mailroute process``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dkim.conftest import DkimWorld, message, world

__all__ = ["world"]

MAILROUTE = [sys.executable, "-m", "mailroute"]
REALMAIL = Path(__file__).resolve().parents[1] / "realmail" / "clients"


def run(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*MAILROUTE, *args], input=data, capture_output=True, timeout=60,
                          check=False)


def _sign(world: DkimWorld, data: bytes, selector: str, key: Path) -> bytes:
    done = run(["dkim", "sign", "--domain", "example.net", "--selector", selector,
                "--key", str(key)], data)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sign_then_verify_rsa_and_ed25519(world: DkimWorld) -> None:
    signed = _sign(world, _sign(world, message(), "rsa", world.rsa_path), "ed", world.ed_path)
    assert signed.endswith(message())
    done = run(["dkim", "verify", "--dns-file", str(world.dns_file()), "--json"], signed)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] is True
    assert report["reason"] == "pass"
    assert [(s["selector"], s["result"]) for s in report["signers"]] == [("ed", "pass"),
                                                                      ("rsa", "pass")]


def test_the_text_report_says_pass_once_and_a_huge_expiry_is_a_usage_error(
        world: DkimWorld) -> None:
    """Found by the CLI audit: ``signature ...: pass pass``; ``--expire-after`` of 20 digits
    wrote an x= tag longer than RFC 6376 section 3.5 allows (12 digits)."""
    signed = _sign(world, message(), "rsa", world.rsa_path)
    done = run(["dkim", "verify", "--dns-file", str(world.dns_file())], signed)
    assert done.stderr.decode().splitlines() == [
        "dkim pass", "signature d=example.net s=rsa rsa-sha256: pass"]
    huge = run(["dkim", "sign", "--domain", "example.net", "--selector", "rsa", "--key",
                str(world.rsa_path), "--expire-after", "99999999999999999999"], message())
    assert huge.returncode == 2


def test_sign_signs_any_one_from_field_and_refuses_a_message_without_from(
        world: DkimWorld) -> None:
    """Found by the DKIM audit: without a From, or with one that names no single address,
    ``dkim sign`` wrote the message unsigned with exit 0."""
    two = b"From: a@example.net, b@example.net\r\nSender: a@example.net\r\n" + message()
    two = two.replace(b"From: Alice <alice@example.net>\r\n", b"", 1)
    unparsable = (REALMAIL / "exchange-online-unfolded-header.eml").read_bytes()
    for data in (two, unparsable):
        signed = _sign(world, data, "rsa", world.rsa_path)
        assert signed.startswith(b"DKIM-Signature: ")
        assert signed.endswith(data)
        verified = run(["dkim", "verify", "--dns-file", str(world.dns_file()), "--json"],
                       signed)
        ours = [s for s in json.loads(verified.stdout)["signers"] if s["selector"] == "rsa"]
        assert [s["result"] for s in ours] == ["pass"]  # the real one's key is not in DNS
    no_from = message().replace(b"From: Alice <alice@example.net>\r\n", b"", 1)
    assert b"From:" not in no_from
    done = run(["dkim", "sign", "--domain", "example.net", "--selector", "rsa", "--key",
                str(world.rsa_path)], no_from)
    assert done.returncode == 65
    assert done.stdout == b""
    assert done.stderr.decode().startswith("5.6.0 ")


def test_traditional_rsa_key_and_algorithm_check(world: DkimWorld) -> None:
    signed = _sign(world, message(), "rsa", world.rsa_traditional_path)
    assert run(["dkim", "verify", "--dns-file", str(world.dns_file())], signed).returncode == 0
    wrong = run(["dkim", "sign", "--domain", "example.net", "--selector", "rsa", "--key",
                 str(world.rsa_path), "--algorithm", "ed25519-sha256"], message())
    assert wrong.returncode == 78
    assert wrong.stdout == b""


def test_unsigned_message_exits_1(world: DkimWorld) -> None:
    done = run(["dkim", "verify", "--dns-file", str(world.dns_file()), "--json"], message())
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"valid": False, "reason": "no-signature", "signers": []}


def test_tampered_message_exits_1_with_reason(world: DkimWorld) -> None:
    signed = _sign(world, message(), "rsa", world.rsa_path).replace(b"Regards", b"Regardz")
    done = run(["dkim", "verify", "--dns-file", str(world.dns_file()), "--json"], signed)
    assert done.returncode == 1
    assert json.loads(done.stdout)["reason"] == "fail: body hash did not verify"


def test_dns_timeout_is_temperror(world: DkimWorld) -> None:
    signed = _sign(world, message(), "rsa", world.rsa_path)
    dns = world.dns_file("slow.txt", **{"rsa._domainkey.example.net": "TIMEOUT"})
    done = run(["dkim", "verify", "--dns-file", str(dns), "--json"], signed)
    assert done.returncode == 1
    assert json.loads(done.stdout)["signers"][0]["result"] == "temperror"


def test_ambiguous_message_is_not_signed(world: DkimWorld) -> None:
    done = run(["dkim", "sign", "--domain", "example.net", "--selector", "rsa", "--key",
                str(world.rsa_path)], b"From: mallory@evil.example\r\n" + message())
    assert done.returncode == 65
    assert done.stdout == b""
    assert done.stderr.startswith(b"5.6.0")


POLICY = """
[gateway]
authserv_id = "mx.example.net"
internal_domains = ["example.net"]

[[pipeline]]
filter = "dkim-verify"
dns_file = "dns.txt"
accepted_domains = ["example.net"]
{extra}
"""


def _process(world: DkimWorld, data: bytes, *, extra: str = "",
             client_ip: str = "203.0.113.5", **records: str) -> subprocess.CompletedProcess[bytes]:
    world.dns_file("dns.txt", **{"_dmarc.example.net": "v=DMARC1; p=reject",
                                 "example.net": "v=spf1 ip4:192.0.2.0/24 -all", **records})
    policy = world.folder / "policy.toml"
    policy.write_text(POLICY.format(extra=extra), encoding="utf-8")
    return run(["process", "--config", str(policy), "--mail-from", "alice@example.net",
                "--rcpt", "bob@example.net", "--client-ip", client_ip], data)


def test_own_domain_spoof_from_the_internet_is_refused(world: DkimWorld) -> None:
    done = _process(world, message())
    assert done.returncode == 69
    assert done.stdout == b""
    assert done.stderr.startswith(b"5.7.1 ")


def test_own_domain_with_aligned_dkim_is_accepted_with_results(world: DkimWorld) -> None:
    signed = _sign(world, message(), "rsa", world.rsa_path)
    done = _process(world, signed)
    assert done.returncode == 0, done.stderr
    header = done.stdout.split(b"\r\n\r\n", 1)[0].decode()
    assert header.startswith("Authentication-Results: mx.example.net; dkim=pass")
    assert "spf=fail" in header
    assert "dmarc=pass reason=\"aligned pass\" header.from=example.net" in " ".join(header.split())


def test_own_domain_with_aligned_spf_is_accepted(world: DkimWorld) -> None:
    assert _process(world, message(), client_ip="192.0.2.10").returncode == 0


def test_spoof_check_can_quarantine_or_flag(world: DkimWorld) -> None:
    assert _process(world, message(), extra='on_spoof = "flag"').returncode == 0
    # a policy of p=none is not enforced when the policy file asks for an enforced policy
    relaxed = _process(world, message(), extra="spoof_requires_policy = true",
                       **{"_dmarc.example.net": "v=DMARC1; p=none"})
    assert relaxed.returncode == 0


def test_spoof_with_dns_trouble_is_a_tempfail(world: DkimWorld) -> None:
    signed = _sign(world, message(), "rsa", world.rsa_path)
    done = _process(world, signed, **{"rsa._domainkey.example.net": "TIMEOUT",
                                      "example.net": "TIMEOUT"})
    assert done.returncode == 75
    assert done.stderr.startswith(b"4.7.5 ")


@pytest.mark.parametrize("sender", ["Alice <alice@example.org>"])
def test_foreign_domains_are_not_judged_as_spoofs(world: DkimWorld, sender: str) -> None:
    data = message().replace(b"Alice <alice@example.net>", sender.encode())
    assert _process(world, data).returncode == 0


@pytest.mark.parametrize(("helo", "expected"), [
    ("out.example.org", "spf=pass smtp.helo=out.example.org"),
    ("other.example.org", "spf=fail smtp.helo=other.example.org"),
    (None, "spf=none"),
])
def test_a_bounce_is_judged_by_its_helo_name(world: DkimWorld, helo: str | None,
                                             expected: str) -> None:
    world.dns_file("dns.txt", **{"out.example.org": "v=spf1 a -all",
                                 "other.example.org": "v=spf1 ip4:198.51.100.0/24 -all"})
    (world.folder / "dns.txt").write_text(
        (world.folder / "dns.txt").read_text() + "out.example.org A 203.0.113.7\n")
    policy = world.folder / "policy.toml"
    policy.write_text(POLICY.format(extra="dmarc = false"), encoding="utf-8")
    bounce = message().replace(b"alice@example.net", b"MAILER-DAEMON@example.org")
    done = run(["process", "--config", str(policy), "--mail-from", "", "--rcpt",
                "bob@example.net", "--client-ip", "203.0.113.7",
                *(["--helo", helo] if helo else [])], bounce)
    assert done.returncode == 0, done.stderr
    header = " ".join(done.stdout.split(b"\r\n\r\n", 1)[0].decode().split())
    assert expected in header
