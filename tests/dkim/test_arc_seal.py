"""ARC sealing (our own, signed with ``cryptography``) judged by dkimpy's independent
verifier: the cv= value follows the incoming chain, a failed chain is sealed over its own
set only, the 50-set limit holds, and dkimpy's sealer is never called."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import dkim as dkimpy
from mailroute import Context
from mailroute.dkim import canon
from mailroute.dkim.arc import MAX_INSTANCE, next_instance, seal, verify_chain
from mailroute.errors import SigningError
from mailroute.mime.message import Message
from mailroute.mime.scan import parse
from mailroute.policy import policy_from_mapping
from mailroute.results import AuthResult, AuthStatus
from tests.dkim.conftest import NOW, DkimWorld, dnsfunc, message

KEY_NAME = "rsa._domainkey.example.org"


def _key(world: DkimWorld) -> rsa.RSAPrivateKey:
    assert isinstance(world.rsa.key, rsa.RSAPrivateKey)
    return world.rsa.key


def _seal(world: DkimWorld, msg: Message, arc: AuthStatus, authserv: str) -> Message:
    return seal(msg, _key(world), domain="example.org", selector="rsa", authserv_id=authserv,
                results=(AuthResult("dkim", AuthStatus.PASS), AuthResult("arc", arc)),
                timestamp=NOW)


def _seal_values(data: bytes) -> list[str]:
    return [" ".join(f.value.split()) for f in parse(data).headers
            if f.lower_name == "arc-seal"]


def test_first_seal_is_cv_none_and_verifies_with_dkimpy(world: DkimWorld,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("dkimpy's arc_sign must not be used")
    monkeypatch.setattr(dkimpy, "arc_sign", refuse)
    out = _seal(world, parse(message()), AuthStatus.NONE, "mx.example.org").to_bytes()
    dns = world.dns(**{KEY_NAME: world.records["rsa._domainkey.example.net"]})
    cv, _results, reason = dkimpy.arc_verify(out, dnsfunc=dnsfunc(dns))
    assert cv == b"pass", reason
    [value] = _seal_values(out)
    assert "i=1;" in value
    assert "cv=none;" in value
    assert verify_chain(parse(out), dns).status is AuthStatus.PASS


def test_second_seal_over_a_passing_chain_is_cv_pass(world: DkimWorld) -> None:
    dns = world.dns(**{KEY_NAME: world.records["rsa._domainkey.example.net"]})
    first = _seal(world, parse(message()), AuthStatus.NONE, "mx.example.org")
    second = _seal(world, first, verify_chain(first, dns).status, "mx2.example.org").to_bytes()
    cv, _results, reason = dkimpy.arc_verify(second, dnsfunc=dnsfunc(dns))
    assert cv == b"pass", reason
    assert ["cv=pass;" in v for v in _seal_values(second)] == [True, False]


def test_a_broken_chain_is_sealed_cv_fail_and_stays_failed(world: DkimWorld) -> None:
    dns = world.dns(**{KEY_NAME: world.records["rsa._domainkey.example.net"]})
    first = _seal(world, parse(message()), AuthStatus.NONE, "mx.example.org").to_bytes()
    tampered = parse(first.replace(b"Hello  world.", b"Hello  World."))
    incoming = verify_chain(tampered, dns).status
    assert incoming is AuthStatus.FAIL
    second = _seal(world, tampered, incoming, "mx2.example.org").to_bytes()
    assert "cv=fail;" in _seal_values(second)[0]
    # dkimpy calls such a chain "terminated" (None); RFC 8617 section 5.2 makes it fail
    cv, _results, reason = dkimpy.arc_verify(second, dnsfunc=dnsfunc(dns))
    assert cv is None
    assert "terminated" in reason
    assert verify_chain(parse(second), dns).status is AuthStatus.FAIL
    # the cv=fail seal covers its own set only, and that signature verifies
    own = {f.lower_name: f for f in parse(second).headers if "i=2;" in " ".join(f.value.split())}
    signed = (canon.header(own["arc-authentication-results"].raw, True)
              + canon.header(own["arc-message-signature"].raw, True)
              + canon.header(canon.strip_b_value(own["arc-seal"].raw), True)[:-2])
    b_value = "".join(own["arc-seal"].value.split()).split("b=")[-1]
    _key(world).public_key().verify(base64.b64decode(b_value), signed, padding.PKCS1v15(),
                                    hashes.SHA256())


def test_the_fifty_first_set_is_refused(world: DkimWorld) -> None:
    msg = parse(message())
    for number in range(MAX_INSTANCE, 0, -1):
        msg = msg.with_header("ARC-Seal", f"i={number}; a=rsa-sha256; cv=pass; b=AAAA")
    assert next_instance(msg) is None
    with pytest.raises(SigningError, match="cannot be extended"):
        _seal(world, msg, AuthStatus.PASS, "mx.example.org")


@pytest.mark.parametrize("instance", ["50", "51", "999", "1000", "0", "x"])
def test_the_seal_filter_passes_a_chain_that_cannot_grow_on_unsealed(
        world: DkimWorld, instance: str) -> None:
    """Found by the DKIM audit: one forged ``ARC-Seal: i=50`` made the filter refuse the
    message (554 5.7.5), and ``i=1000`` (beyond the 3-digit pattern) was sealed as i=1."""
    data = f"ARC-Seal: i={instance}; a=rsa-sha256; cv=none; b=AAAA\r\n".encode() + message()
    pipeline = policy_from_mapping({"gateway": {"authserv_id": "mx.example.org"},
                                    "pipeline": [{"filter": "arc-seal", "domain": "example.org",
                                                  "selector": "rsa",
                                                  "key": str(world.rsa_path)}]})
    result = pipeline.process(data, context=Context(clock=lambda: NOW))
    assert result.action == "accept"
    assert result.data == data
    assert result.item is not None
    assert result.item.annotation("arc-seal") == "skipped-chain-cannot-grow"


def test_the_next_instance_follows_the_highest_readable_one() -> None:
    msg = parse(b"ARC-Seal: i=2; cv=pass; b=A\r\nARC-Seal: i=1; cv=none; b=A\r\n" + message())
    assert next_instance(msg) == 3
    assert next_instance(parse(message())) == 1


@pytest.mark.parametrize("bh", ["AAAA!AAA", "A", "=="])
def test_a_hostile_body_hash_in_an_arc_set_fails_the_chain_not_the_call(
        world: DkimWorld, bh: str) -> None:
    """Found by the DKIM audit: dkimpy raised binascii.Error (an internal error, 4.3.0)."""
    sealed = _seal(world, parse(message()), AuthStatus.NONE, "mx.example.org").to_bytes()
    start = sealed.index(b" bh=") + 4
    end = sealed.index(b";", start)
    hostile = parse(sealed[:start] + bh.encode() + sealed[end:])
    result = verify_chain(hostile, world.dns(**{KEY_NAME: world.records[
        "rsa._domainkey.example.net"]}))
    assert result.status is AuthStatus.FAIL
