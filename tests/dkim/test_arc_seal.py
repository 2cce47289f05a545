"""ARC sealing (our own, signed with ``cryptography``) judged by dkimpy's independent
verifier: the cv= value follows the incoming chain, a failed chain is sealed over its own
set only, the 50-set limit holds, and dkimpy's sealer is never called."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import dkim as dkimpy
from mailroute.dkim import canon
from mailroute.dkim.arc import MAX_INSTANCE, seal, verify_chain
from mailroute.errors import SigningError
from mailroute.mime.message import Message
from mailroute.mime.scan import parse
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
    with pytest.raises(SigningError, match="50 sets"):
        _seal(world, msg, AuthStatus.PASS, "mx.example.org")
