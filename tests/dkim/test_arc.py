"""ARC: a message DKIM-signed by its sender, verified at the gateway, given a disclaimer (which
breaks the sender's signature) and ARC-sealed verifies as an ARC chain with dkimpy's
independent verifier; a second hop extends the chain; tampering after the seal breaks it."""

from __future__ import annotations

from pathlib import Path

import pytest

import dkim as dkimpy
from mailroute import Envelope
from mailroute.dkim import sign_message, verify_message
from mailroute.dkim.arc import verify_chain
from mailroute.errors import ConfigError
from mailroute.mime.scan import parse
from mailroute.pipeline import Pipeline
from mailroute.policy import load_policy
from mailroute.results import AuthStatus
from tests.dkim.conftest import NOW, DkimWorld, dnsfunc, message

POLICY = """
[gateway]
authserv_id = "{authserv}"
internal_domains = ["example.org"]

[[pipeline]]
filter = "dkim-verify"
dns_file = "dns.txt"
spf = false

[[pipeline]]
filter = "disclaimer"
text = "footer.txt"

[[pipeline]]
filter = "arc-seal"
domain = "{domain}"
selector = "rsa"
key = "rsa.pem"
{seal_extra}
"""



def _gateway(world: DkimWorld, folder: Path, authserv: str, domain: str,
             seal_extra: str = "") -> Pipeline:
    folder.mkdir(exist_ok=True)
    (folder / "footer.txt").write_text("-- \nScanned by the gateway.\n", encoding="utf-8")
    (folder / "rsa.pem").write_bytes(world.rsa_path.read_bytes())
    (folder / "rsa.pem").chmod(0o600)
    records = {**world.records, f"rsa._domainkey.{domain}": world.records[
        "rsa._domainkey.example.net"]}
    (folder / "dns.txt").write_text("".join(f"{k} {v}\n" for k, v in records.items()),
                                    encoding="utf-8")
    (folder / "policy.toml").write_text(POLICY.format(authserv=authserv, domain=domain,
                                                      seal_extra=seal_extra),
                                        encoding="utf-8")
    return load_policy(folder / "policy.toml")


def _through(gateway: Pipeline, data: bytes) -> bytes:
    """What ``gateway`` hands on of ``data`` from alice@example.net to bob@example.org (it
    must accept it)."""
    result = gateway.process(data, envelope=Envelope(
        mail_from="alice@example.net", rcpt_to=["bob@example.org"]))
    assert result.action == "accept", result.reply
    assert result.data is not None
    return result.data


def test_signed_then_disclaimer_then_sealed_verifies_as_an_arc_chain(
        world: DkimWorld, tmp_path: Path) -> None:
    signed = sign_message(parse(message()), world.rsa, domain="example.net", selector="rsa",
                          timestamp=NOW).to_bytes()
    gateway = _gateway(world, tmp_path / "gw", "mx.example.org", "example.org")
    out = _through(gateway, signed)
    assert b"Scanned by the gateway." in out
    dns = world.dns(**{"rsa._domainkey.example.org": world.records["rsa._domainkey.example.net"]})
    # the disclaimer broke the sender's DKIM signature ...
    assert [r.status for r in verify_message(parse(out), dns, now=NOW)] == [AuthStatus.FAIL]
    # ... and the ARC chain carries what the gateway saw before it changed the message
    cv, _results, reason = dkimpy.arc_verify(out, dnsfunc=dnsfunc(dns))
    assert cv == b"pass", reason
    aar = parse(out).headers.value("ARC-Authentication-Results")
    assert aar is not None
    assert "i=1; mx.example.org; dkim=pass" in " ".join(aar.split())
    assert "arc=none" in aar
    assert verify_chain(parse(out), dns).status is AuthStatus.PASS

    # a second hop (another gateway) verifies the chain and extends it
    second = _gateway(world, tmp_path / "gw2", "mx2.example.org", "example.org")
    again = _through(second, out)
    cv, _results, reason = dkimpy.arc_verify(again, dnsfunc=dnsfunc(dns))
    assert cv == b"pass", reason
    assert "arc=pass" in (parse(again).headers.value("Authentication-Results") or "")


def test_changes_after_the_seal_break_the_chain(world: DkimWorld, tmp_path: Path) -> None:
    gateway = _gateway(world, tmp_path / "gw", "mx.example.org", "example.org")
    out = _through(gateway, message())
    dns = world.dns(**{"rsa._domainkey.example.org": world.records["rsa._domainkey.example.net"]})
    assert dkimpy.arc_verify(out, dnsfunc=dnsfunc(dns))[0] == b"pass"
    tampered = out.replace(b"Scanned by the gateway.", b"Scanned by the gateway!")
    assert dkimpy.arc_verify(tampered, dnsfunc=dnsfunc(dns))[0] == b"fail"
    assert verify_chain(parse(tampered), dns).status is AuthStatus.FAIL
    slow = world.dns(**{"rsa._domainkey.example.org": "TIMEOUT"})
    assert verify_chain(parse(out), slow).status is AuthStatus.TEMPERROR


def test_an_ed25519_sealing_key_is_a_configuration_error(world: DkimWorld,
                                                         tmp_path: Path) -> None:
    gateway_dir = tmp_path / "gw"
    _gateway(world, gateway_dir, "mx.example.org", "example.org")
    (gateway_dir / "rsa.pem").write_bytes(world.ed_path.read_bytes())
    with pytest.raises(ConfigError, match="RSA"):
        load_policy(gateway_dir / "policy.toml")


def test_an_rsa_sha1_arc_set_fails_whatever_dkimpy_says(world: DkimWorld,
                                                        tmp_path: Path) -> None:
    # dkimpy accepts rsa-sha1 in an ARC chain; RFC 8301 forbids it, as for DKIM.
    gateway = _gateway(world, tmp_path / "gw", "mx.example.org", "example.org")
    out = _through(gateway, message())
    dns = world.dns(**{"rsa._domainkey.example.org": world.records["rsa._domainkey.example.net"]})
    assert verify_chain(parse(out), dns).status is AuthStatus.PASS
    seal = out.index(b"ARC-Seal:")
    algorithm = out.index(b"a=rsa-sha256", seal)
    weak = out[:algorithm] + b"a=rsa-sha1" + out[algorithm + len(b"a=rsa-sha256"):]
    result = verify_chain(parse(weak), dns)
    assert (result.status, result.reason) == (AuthStatus.FAIL, "rsa-sha1 (RFC 8301)")


def test_the_seal_names_the_gateways_authserv_id_and_refuses_another(
        world: DkimWorld, tmp_path: Path) -> None:
    # the AAR above already read "i=1; mx.example.org" without authserv_id in arc-seal
    _gateway(world, tmp_path / "same", "mx.example.org", "example.org",
             seal_extra='authserv_id = "mx.example.org"')
    with pytest.raises(ConfigError, match=r"policy.toml:\d+.*pipeline\[2\]\.authserv_id.*"
                                          r"differs from \[gateway\] authserv_id"):
        _gateway(world, tmp_path / "other", "mx.example.org", "example.org",
                 seal_extra='authserv_id = "mailroute"')
