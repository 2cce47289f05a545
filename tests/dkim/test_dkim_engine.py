"""DKIM signing and verification: byte preservation, every signature, RFC 8301, l=, caps,
DNS failures as temperror; dkimpy as the independent verifier."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import dkim as dkimpy
from mailroute.dkim import DnsFile, VerifyOptions, sign_message, verify_message
from mailroute.dkim.keys import load_signing_key, parse_signing_key
from mailroute.dkim.sign import header_list
from mailroute.errors import AmbiguousMessageError, ConfigError, TemporaryError
from mailroute.item import Envelope
from mailroute.marker.mint import ensure_message_id
from mailroute.mime.scan import AmbiguityPolicy, parse
from mailroute.policy import load_policy
from mailroute.results import AuthStatus
from mailroute.testing import FakeClock, build_message, fake_context, write_fake_key_file
from tests.dkim.conftest import DOMAIN, NOW, DkimWorld, dnsfunc, message


def _sign(data: bytes, world: DkimWorld, selector: str = "rsa") -> bytes:
    key = world.rsa if selector == "rsa" else world.ed
    return sign_message(parse(data), key, domain=DOMAIN, selector=selector,
                        timestamp=NOW).to_bytes()



def _statuses(data: bytes, dns: DnsFile, options: VerifyOptions | None = None
              ) -> list[tuple[str, str]]:
    results = verify_message(parse(data), dns, now=NOW, options=options or VerifyOptions())
    return [(r.status.value, r.reason) for r in results]


@pytest.mark.parametrize("selector", ["rsa", "ed"])
def test_signing_adds_one_field_at_the_top_and_changes_no_other_byte(
        world: DkimWorld, selector: str) -> None:
    original = message()
    signed = _sign(original, world, selector)
    assert signed.endswith(original)
    added = signed[:-len(original)]
    assert added.startswith(b"DKIM-Signature: v=1; a=")
    assert parse(added + b"\r\n").headers.count("DKIM-Signature") == 1


@pytest.mark.parametrize("selector", ["rsa", "ed"])
def test_our_signatures_verify_with_dkimpy_and_ourselves(world: DkimWorld, selector: str) -> None:
    signed = _sign(message(), world, selector)
    assert dkimpy.verify(signed, dnsfunc=dnsfunc(world.dns()))
    assert _statuses(signed, world.dns()) == [("pass", "")]


def test_lf_line_endings_sign_what_goes_on_the_wire(world: DkimWorld) -> None:
    signed = _sign(message().replace(b"\r\n", b"\n"), world)
    assert b"\r" not in signed
    assert dkimpy.verify(signed.replace(b"\n", b"\r\n"), dnsfunc=dnsfunc(world.dns()))
    assert _statuses(signed, world.dns()) == [("pass", "")]


def test_rsa_signing_with_cryptography_writes_dkimpy_s_bytes(world: DkimWorld) -> None:
    """PKCS#1 v1.5 is deterministic: the C signer gives the pure-Python signer's bytes."""
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
    from dkim.crypto import RSASSA_PKCS1_v1_5_sign, parse_pem_private_key

    data = b"from:Alice <alice@example.net>\r\ndkim-signature:v=1; b="
    theirs = RSASSA_PKCS1_v1_5_sign(hashlib.sha256(data),
                                    parse_pem_private_key(world.rsa_traditional_path.read_bytes()))
    assert isinstance(world.rsa.key, rsa.RSAPrivateKey)
    ours = world.rsa.key.sign(hashlib.sha256(data).digest(), padding.PKCS1v15(),
                              utils.Prehashed(hashes.SHA256()))
    assert ours == bytes(theirs)


def test_every_signature_is_judged_not_only_the_first(world: DkimWorld) -> None:
    signed = _sign(_sign(message(), world, "rsa"), world, "ed")
    assert _statuses(signed, world.dns()) == [("pass", ""), ("pass", "")]
    broken = world.dns(**{f"rsa._domainkey.{DOMAIN}": world.records[f"ed._domainkey.{DOMAIN}"]})
    assert [s for s, _ in _statuses(signed, broken)] == ["pass", "permerror"]


def test_altered_body_fails(world: DkimWorld) -> None:
    signed = _sign(message(), world).replace(b"Regards", b"Regardz")
    assert _statuses(signed, world.dns()) == [("fail", "body hash did not verify")]


def test_altered_signed_header_fails(world: DkimWorld) -> None:
    signed = _sign(message(), world).replace(b"Subject: test", b"Subject: tost")
    assert _statuses(signed, world.dns()) == [("fail", "signature did not verify")]


def test_an_added_oversigned_header_fails(world: DkimWorld) -> None:
    signed = _sign(message(), world)
    data = signed.replace(b"To: bob", b"Cc: eve@example.org\r\nTo: bob", 1)
    assert _statuses(data, world.dns()) == [("fail", "signature did not verify")]


def test_a_message_id_added_after_signing_a_message_without_one_passes(
        world: DkimWorld) -> None:
    # marker-set runs after the signers and gives such a message a Message-ID
    unsigned = build_message(sender="alice@example.net", message_id=None)
    signed = _sign(unsigned, world)
    assert b"message-id" not in signed.split(b"\r\n\r\n")[0].lower().split(b"bh=")[0]
    with_id = ensure_message_id(parse(signed), "example.net").to_bytes()
    assert _statuses(with_id, world.dns()) == [("pass", "")]
    assert dkimpy.verify(with_id, dnsfunc=dnsfunc(world.dns()))


def test_a_present_message_id_is_oversigned_an_absent_one_not_listed() -> None:
    assert header_list(parse(message())).count("message-id") == 2
    assert header_list(parse(build_message(message_id=None))).count("message-id") == 0
    assert header_list(parse(build_message(message_id=None))).count("date") == 2


def test_dkim_sign_then_marker_set_keeps_the_signature_of_a_message_without_message_id(
        world: DkimWorld, tmp_path: Path) -> None:
    write_fake_key_file(tmp_path / "keys.toml")
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[[pipeline]]\nfilter = "dkim-sign"\ndomain = "{DOMAIN}"\nselector = "rsa"\n'
        f'key = "{world.rsa_path}"\n'
        '[[pipeline]]\nfilter = "marker-set"\nkey_file = "keys.toml"\n', encoding="utf-8")
    result = load_policy(policy).process(
        build_message(sender="alice@example.net", message_id=None),
        Envelope(mail_from="alice@example.net", rcpt_to=("bob@example.org",)),
        context=fake_context(clock=FakeClock(NOW)))
    assert result.action == "accept"
    assert result.data is not None
    assert parse(result.data).headers.count("Message-ID") == 1
    assert _statuses(result.data, world.dns()) == [("pass", "")]


def test_whitespace_changes_pass_relaxed(world: DkimWorld) -> None:
    signed = _sign(message(), world).replace(b"Subject: test", b"Subject:   test")
    assert _statuses(signed.replace(b"Hello  world", b"Hello world"), world.dns()) == [
        ("pass", "")]


def test_rsa_sha1_fails(world: DkimWorld) -> None:
    pem = world.rsa_traditional_path.read_bytes()
    header = dkimpy.sign(message(), b"rsa", DOMAIN.encode(), pem,
                         signature_algorithm=b"rsa-sha1")
    data = header + message()
    assert dkimpy.verify(data, dnsfunc=dnsfunc(world.dns()))  # the trap: dkimpy accepts it
    assert _statuses(data, world.dns()) == [("fail", "rsa-sha1 is not accepted (RFC 8301)")]


def test_rsa_keys_under_1024_bits_fail(world: DkimWorld, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "small.pem"
    made = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                           "rsa_keygen_bits:768", "-out", str(path)], capture_output=True,
                          timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    with pytest.raises(ConfigError, match="1024"):
        parse_signing_key(path.read_bytes())
    small = serialization.load_pem_private_key(path.read_bytes(), password=None)
    pem = small.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    header = dkimpy.sign(message(), b"small", DOMAIN.encode(), pem,
                         canonicalize=(b"relaxed", b"relaxed"))
    der = small.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    dns = world.dns(**{f"small._domainkey.{DOMAIN}":
                       f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"})
    assert _statuses(header + message(), dns) == [("fail", "RSA key under 1024 bits")]


def test_length_tag_with_content_beyond_fails_by_default(world: DkimWorld) -> None:
    pem = world.rsa_traditional_path.read_bytes()
    header = dkimpy.sign(message(), b"rsa", DOMAIN.encode(), pem, length=True,
                         canonicalize=(b"relaxed", b"relaxed"))
    appended = header + message() + b"Click here: http://evil.example/\r\n"
    assert dkimpy.verify(appended, dnsfunc=dnsfunc(world.dns()))  # the trap
    assert _statuses(appended, world.dns()) == [("fail", "content beyond l=")]
    assert _statuses(appended, world.dns(), VerifyOptions(allow_length=True)) == [("pass", "")]
    assert _statuses(header + message(), world.dns()) == [("pass", "")]


def test_dns_timeout_is_temperror_never_fail(world: DkimWorld) -> None:
    signed = _sign(message(), world)
    timeout = world.dns(**{f"rsa._domainkey.{DOMAIN}": "TIMEOUT"})
    assert _statuses(signed, timeout) == [("temperror", "key lookup failed")]

    def raising(name: str) -> list[str]:
        raise TemporaryError("DNS timed out")

    results = verify_message(parse(signed), raising, now=NOW)
    assert [r.status for r in results] == [AuthStatus.TEMPERROR]
    assert [r.status for r in verify_message(parse(signed), None, now=NOW)] == [
        AuthStatus.TEMPERROR]


def test_missing_key_and_revoked_key_are_permerror(world: DkimWorld) -> None:
    signed = _sign(message(), world)
    assert _statuses(signed, DnsFile({})) == [("permerror", "no key record")]
    revoked = world.dns(**{f"rsa._domainkey.{DOMAIN}": "v=DKIM1; k=rsa; p="})
    assert _statuses(signed, revoked) == [("permerror", "key revoked")]


@pytest.mark.parametrize(("services", "usable"), [
    ("s=*", True), ("s=email", True), ("s=other:email", True), ("s=other", False)])
def test_a_key_record_for_another_service_is_not_used(world: DkimWorld, services: str,
                                                      usable: bool) -> None:
    """RFC 6376 3.6.1 (found by the DKIM audit: ``s=other`` was used)."""
    signed = _sign(message(), world)
    record = world.records[f"rsa._domainkey.{DOMAIN}"].replace("k=rsa;", f"k=rsa; {services};")
    assert services in record
    [(status, _)] = _statuses(signed, world.dns(**{f"rsa._domainkey.{DOMAIN}": record}))
    assert status == ("pass" if usable else "permerror")


def test_caps_on_signatures_and_header_entries(world: DkimWorld) -> None:
    data = message()
    for _ in range(4):
        data = _sign(data, world)
    assert len(_statuses(data, world.dns(), VerifyOptions(max_signatures=2))) == 2
    assert _statuses(data, world.dns(), VerifyOptions(max_header_entries=5))[0] == (
        "permerror", "too many h= entries")


def test_expired_signature_fails(world: DkimWorld) -> None:
    signed = sign_message(parse(message()), world.rsa, domain=DOMAIN, selector="rsa",
                          timestamp=NOW - 100, expire_after=10).to_bytes()
    assert _statuses(signed, world.dns()) == [("fail", "signature expired")]


def test_unsigned_message_has_no_results(world: DkimWorld) -> None:
    assert _statuses(message(), world.dns()) == []


def test_an_ambiguous_message_is_not_signed(world: DkimWorld) -> None:
    data = b"From: a@example.net\r\n" + message()
    recorded = parse(data, on_ambiguity=AmbiguityPolicy.RECORD)
    with pytest.raises(AmbiguousMessageError):
        sign_message(recorded, world.rsa, domain=DOMAIN, selector="rsa", timestamp=NOW)


def test_keys_in_every_pem_form_load(world: DkimWorld) -> None:
    from mailroute.dkim import load_signing_key

    assert load_signing_key(world.rsa_traditional_path).algorithm == "rsa-sha256"
    assert load_signing_key(world.ed_path).algorithm == "ed25519-sha256"
    with pytest.raises(ConfigError):
        parse_signing_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


@pytest.mark.parametrize("value", ["\r\n ".join(["9" * 1000] * 5), "9" * 13])
def test_an_x_tag_of_more_than_12_digits_is_malformed_not_an_error(
        world: DkimWorld, value: str) -> None:
    """Found by the DKIM audit: 5,000 digits in x= (folded) raised from ``int``."""
    signed = _sign(message(), world).replace(b" t=", f" x={value}; t=".encode(), 1)
    assert f"x={value};".encode() in signed
    assert _statuses(signed, world.dns()) == [("permerror", "malformed x=")]


def test_a_dns_file_mx_preference_that_is_no_16_bit_number_is_ignored() -> None:
    dns = DnsFile({"example.net": ["MX " + "9" * 5000 + " mx1.example.net",
                                   "MX 70000 mx2.example.net", "MX 10 mx3.example.net"]})
    assert dns.mx("example.net") == ["mx3.example.net"]


def test_a_large_rsa_key_writes_no_line_over_998_octets(world: DkimWorld, tmp_path: Path
                                                         ) -> None:
    """Found by the DKIM audit: an 8192-bit key wrote a 1,372-octet line (RFC 5322 2.1.1)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=6144)
    pem = tmp_path / "big.pem"
    pem.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    pem.chmod(0o600)
    big = load_signing_key(pem)
    signed = sign_message(parse(message()), big, domain=DOMAIN, selector="big",
                          timestamp=NOW).to_bytes()
    assert max(len(line) for line in signed.split(b"\r\n")) <= 998
    dns = world.dns(**{f"big._domainkey.{DOMAIN}": big.public_record()})
    assert _statuses(signed, dns) == [("pass", "")]
    assert dkimpy.verify(signed, dnsfunc=dnsfunc(dns))
