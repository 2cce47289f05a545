"""The dkim-sign and dkim-verify filters as a policy builds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute import Context, Envelope
from mailroute.errors import ConfigError
from mailroute.pipeline import Pipeline
from mailroute.policy import policy_from_mapping
from mailroute.results import AuthStatus
from tests.dkim.conftest import NOW, DkimWorld, message, world

__all__ = ["world"]


def _sign_policy(world: DkimWorld, **extra: object) -> Pipeline:
    entry = {"filter": "dkim-sign", "domain": "example.net", "selector": "rsa",
             "key": str(world.rsa_path), **extra}
    return policy_from_mapping({"pipeline": [entry]})


def test_sign_filter_signs_own_mail_and_leaves_foreign_mail_alone(world: DkimWorld) -> None:
    pipeline = _sign_policy(world)
    ctx = Context(clock=lambda: NOW)
    own = pipeline.process(message(), context=ctx)
    assert own.data is not None
    assert own.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert own.data.endswith(message())
    foreign_data = message().replace(b"alice@example.net", b"carol@example.org")
    foreign = pipeline.process(foreign_data, context=ctx)
    assert foreign.data == foreign_data
    assert foreign.item is not None
    assert foreign.item.annotation("dkim-sign") == "skipped-foreign-from"


def test_sign_everyones_mail_signs_an_unparsable_from_and_passes_a_message_without_one(
        world: DkimWorld) -> None:
    pipeline = _sign_policy(world, from_domains=["*"])
    ctx = Context(clock=lambda: NOW)
    odd = message().replace(b"From: Alice <alice@example.net>", b"From: alice example.net")
    signed = pipeline.process(odd, context=ctx)
    assert signed.data is not None
    assert signed.data.startswith(b"DKIM-Signature: ")
    no_from = message().replace(b"From: Alice <alice@example.net>\r\n", b"")
    passed = pipeline.process(no_from, context=ctx)
    assert passed.data == no_from
    assert passed.item is not None
    assert passed.item.annotation("dkim-sign") == "skipped-no-from"


def test_verify_filter_uses_the_injected_resolver(world: DkimWorld) -> None:
    signed = _sign_policy(world).process(
        message(), context=Context(clock=lambda: NOW)).data
    assert signed is not None
    verify = policy_from_mapping({"gateway": {"authserv_id": "mx.example.org"},
                                  "pipeline": [{"filter": "dkim-verify", "spf": False}]})
    result = verify.process(signed, envelope=Envelope(mail_from="alice@example.net"),
                            context=Context(clock=lambda: NOW, resolver=world.dns()))
    assert result.action == "accept"
    assert result.item is not None
    assert result.data is not None
    dkim = [r for r in result.item.auth_results if r.method == "dkim"]
    assert [r.status for r in dkim] == [AuthStatus.PASS]
    assert ("header.d", "example.net") in dkim[0].properties
    assert result.item.annotation("dkim.result") == "pass"
    assert result.item.annotation("dmarc.aligned") == "yes"  # d= is the From domain
    assert result.data.startswith(b"Authentication-Results: mx.example.org; dkim=pass")


def test_unsafe_tag_values_stay_out_of_authentication_results(world: DkimWorld) -> None:
    forged = (b'DKIM-Signature: v=1; a=rsa-sha256; d=ex"ample.net; s=x; h=from; bh=AA==; b=AA==\r\n'
              + message())
    verify = policy_from_mapping({"pipeline": [{"filter": "dkim-verify", "spf": False}]})
    result = verify.process(forged, context=Context(clock=lambda: NOW, resolver=world.dns()))
    assert result.item is not None
    dkim = next(r for r in result.item.auth_results if r.method == "dkim")
    assert dkim.status is AuthStatus.PERMERROR
    assert all('"' not in value for _, value in dkim.properties)


@pytest.mark.parametrize(("extra", "key"), [({"algorithm": "rsa-sha1"}, "algorithm"),
                                            ({"algorithm": "ed25519-sha256"}, "algorithm"),
                                            ({"key": "/nonexistent.pem"}, None)])
def test_sign_options_are_checked(world: DkimWorld, extra: dict[str, object],
                                  key: str | None) -> None:
    with pytest.raises(ConfigError) as raised:
        _sign_policy(world, **extra)
    if key is not None:
        assert raised.value.key is not None
        assert raised.value.key.endswith(key)


def test_verify_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        policy_from_mapping({"pipeline": [{"filter": "dkim-verify", "on_spoof": "bounce"}]})
    with pytest.raises(ConfigError):
        policy_from_mapping({"pipeline": [{"filter": "dkim-verify",
                                           "dns_file": str(tmp_path / "absent.txt")}]})


@pytest.mark.parametrize(("filter_name", "key", "value"), [
    ("dkim-sign", "domain", "example.net; l=0"), ("dkim-sign", "domain", "example net"),
    ("dkim-sign", "domain", ""), ("dkim-sign", "domain", "localhost"),
    ("dkim-sign", "selector", "rsa;"), ("dkim-sign", "selector", ""),
    ("arc-seal", "domain", "example.net;h=x"), ("arc-seal", "selector", "a b"),
])
def test_a_signing_domain_or_selector_that_is_no_dns_name_is_a_config_error(
        world: DkimWorld, filter_name: str, key: str, value: str) -> None:
    """Found by the DKIM audit: ``domain = "example.net; l=0"`` wrote a second tag into the
    signature (a permerror at every verifier), and ``check`` said ok."""
    entry = {"filter": filter_name, "domain": "example.net", "selector": "rsa",
             "key": str(world.rsa_path), key: value}
    with pytest.raises(ConfigError, match=key):
        policy_from_mapping({"pipeline": [entry]})
