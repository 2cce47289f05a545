"""``marker-verify`` with ``on_foreign_relay = "reject"`` behind a real Postfix that relays for
loopback, as a gateway's Postfix relays for Exchange Online's address ranges: those ranges,
and Exchange Online's certificate name, are every Microsoft 365 tenant's, so Postfix cannot
tell our tenant's outbound mail from another tenant's. The milter can: the tenant id decides,
and a message with outside recipients from anyone else is refused in the SMTP session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from mailroute.testing import build_message
from tests.adapters.postfix_harness import SinkServer, postfix_available
from tests.adapters.test_milter_postfix import EXO_NAME, Rig, make_rig, refusal_code, send

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(not postfix_available(), reason="Postfix not installed")]

TENANT = "6f1c2a9e-3b7d-4c1e-9a55-0d2f1e8b7c44"
OTHER_TENANT = "0b7e4c1d-2222-4aaa-8bbb-9c0d1e2f3a4b"
POLICY = ('[gateway]\ninternal_domains = ["corp.example"]\n\n'
          '[[pipeline]]\nfilter = "marker-verify"\nkey_file = "keys.toml"\n'
          f'return_path_tls_names = ["{EXO_NAME}"]\ntenant_id = "{TENANT}"\n'
          'on_foreign_relay = "reject"\n')


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    yield from make_rig(POLICY)


@pytest.fixture
def sink(rig: Rig) -> SinkServer:
    rig.sink.clear()
    return rig.sink


def _message(tenant: str | None, sender: str = "alice@corp.example") -> bytes:
    headers = (("X-MS-Exchange-CrossTenant-Id", tenant),) if tenant else ()
    return build_message(sender=sender, to="bob@partner.example", headers=headers,
                         message_id=f"<{uuid.uuid4().hex}@corp.example>")


def test_our_tenants_outbound_mail_is_relayed(rig: Rig, sink: SinkServer) -> None:
    send(rig, _message(TENANT), tls_client_cert=True)
    assert len(sink.wait_for(1)) == 1


def test_another_tenants_mail_through_exchange_online_is_refused(rig: Rig,
                                                                  sink: SinkServer) -> None:
    for tenant in (OTHER_TENANT, None):
        code, text = refusal_code(rig, _message(tenant, "spam@foreign.example"),
                                  tls_client_cert=True, sender="spam@foreign.example")
        assert (code, text) == (550, b"5.7.1 mailroute: relay not permitted (not this "
                                     b"tenant's Exchange Online)")
    assert sink.wait_for(1, timeout=1) == []


def test_an_own_domain_sender_from_elsewhere_is_refused(rig: Rig, sink: SinkServer) -> None:
    code, text = refusal_code(rig, _message(None))
    assert (code, text) == (550, b"5.7.1 mailroute: relay not permitted")
    assert sink.wait_for(1, timeout=1) == []


def test_mail_for_the_organisation_is_taken_from_anyone(rig: Rig, sink: SinkServer) -> None:
    send(rig, build_message(sender="a@partner.example", to="bob@corp.example",
                            message_id=f"<{uuid.uuid4().hex}@partner.example>"),
         rcpt="bob@corp.example", sender="a@partner.example")
    assert len(sink.wait_for(1)) == 1
