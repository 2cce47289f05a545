"""marker-verify and marker-set in a pipeline: the gateway actions of 5.7 and the loop guards."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailroute import Action, Context, Envelope, Pipeline, load_policy, parse
from mailroute.errors import ConfigError
from mailroute.filters.marker import MarkerSetFilter, MarkerVerifyFilter, arrival_of
from mailroute.gateway import GatewaySettings, classify_source
from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.item import Direction, MailItem
from mailroute.marker import (
    DEFAULT_FIELD,
    KeyRing,
    check_message,
    mark,
    processed_key,
)
from mailroute.marker.keyring import derive_mac_key
from mailroute.results import MarkerVerdict
from tests.marker.helpers import (
    HOUR,
    MESSAGE,
    NOW,
    OTHER_TAG,
    SECRET_A,
    SECRET_A_B64,
    ring,
    write_key_file,
)

RING = ring()
EXO = Envelope(mail_from="alice@example.net", rcpt_to=("bob@example.org",),
               client_address="40.107.22.1", tls_peer_name="mail.protection.outlook.com",
               direction=Direction.OUTBOUND)
INTERNET = Envelope(mail_from="alice@example.net", rcpt_to=("bob@example.org",),
                    client_address="198.51.100.7", tls_peer_name="mx.partner.example",
                    direction=Direction.OUTBOUND)


def at(now: float) -> Context:
    return Context(clock=lambda: now)


def verify_step(**settings: Any) -> MarkerVerifyFilter:
    return MarkerVerifyFilter(ring=RING, settings=GatewaySettings(**settings))


def with_store(*steps: MarkerVerifyFilter | MarkerSetFilter,
               store: InMemoryProcessedStore | None = None) -> Pipeline:
    """A pipeline of ``steps`` whose context brings ``store`` (a new one by default)."""
    processed = store if store is not None else InMemoryProcessedStore()
    return Pipeline(filters=steps, context=Context(processed=processed))


def gateway(store: InMemoryProcessedStore | None = None, **verify: object
            ) -> tuple[Pipeline, InMemoryProcessedStore]:
    """verify first, mark last, one shared store."""
    shared = store if store is not None else InMemoryProcessedStore()
    return with_store(verify_step(**verify), MarkerSetFilter(ring=RING), store=shared), shared


def verifier(**verify: object) -> Pipeline:
    return with_store(verify_step(**verify))


def classify(step: MarkerVerifyFilter, item: MailItem) -> str:
    arrival = arrival_of(item, at(NOW), RING, step.settings)
    return classify_source(arrival, step.settings).value


def marked_bytes(*, now: float = NOW, key_ring: KeyRing = RING) -> bytes:
    message, _ = mark(parse(MESSAGE), key_ring, now=now, direction=Direction.OUTBOUND)
    return message.to_bytes()


def markers(data: bytes | None) -> int:
    assert data is not None
    return parse(data).headers.count(DEFAULT_FIELD)


# -- gateway actions of 5.7 ---------------------------------------------------------------

def test_valid_fresh_marker_from_the_return_path_is_a_loop_554_5_4_6() -> None:
    result = verifier().process(marked_bytes(), EXO, context=at(NOW + 20))
    assert result.action is Action.REJECT
    assert (result.smtp_reply.code, result.smtp_reply.status) == (554, "5.4.6")
    assert "already processed (k1, 20 s)" in result.reply
    assert result.data is None


def test_valid_fresh_marker_from_the_internet_is_stripped_not_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "mailroute.marker")
    result = verifier().process(marked_bytes(), INTERNET, context=at(NOW + 20))
    assert result.action is Action.ACCEPT
    assert markers(result.data) == 0
    assert "security: marker valid-fresh from internet" in caplog.text


@pytest.mark.parametrize("envelope", [EXO, INTERNET])
def test_stale_marker_is_stripped_and_processed(envelope: Envelope) -> None:
    result = verifier().process(marked_bytes(), envelope, context=at(NOW + 2 * HOUR))
    assert result.action is Action.ACCEPT
    assert markers(result.data) == 0
    assert result.item is not None
    assert result.item.annotation("marker.verdict") == "valid-stale"


@pytest.mark.parametrize("data", [
    marked_bytes(key_ring=ring(tag=OTHER_TAG)),                                 # foreign
    MESSAGE.replace(b"Subject:", b"X-Mailroute-Mark: v1.g7k2qd.k1.garbage\r\nSubject:"),
    marked_bytes().replace(b"alice@example.net", b"mallory@example.org"),      # bad-mac
    marked_bytes(now=NOW + HOUR),                                               # future
])
def test_invalid_marker_from_the_return_path_is_treated_as_absent(data: bytes) -> None:
    pipeline, _ = gateway()
    result = pipeline.process(data.replace(b"Alice@Example.NET", b"mallory@example.org"),
                              EXO, context=at(NOW))
    assert result.action is Action.ACCEPT
    assert result.item is not None
    assert result.item.annotation("marker.verdict") in {"foreign", "malformed", "bad-mac",
                                                        "future"}
    assert markers(result.data) == 1
    assert check_message(parse(result.data or b""), RING, now=NOW).valid


def test_on_invalid_reject_refuses_with_554_5_7_1() -> None:
    forged = marked_bytes().replace(b"Alice@Example.NET", b"mallory@example.org")
    result = verifier(on_invalid="reject").process(forged, EXO, context=at(NOW))
    assert result.action is Action.REJECT
    assert (result.smtp_reply.code, result.smtp_reply.status) == (554, "5.7.1")
    assert "bad-mac" in result.reply


def test_on_invalid_reject_leaves_missing_and_stale_markers_alone() -> None:
    pipeline = verifier(on_invalid="reject")
    assert pipeline.process(MESSAGE, EXO, context=at(NOW)).action is Action.ACCEPT
    stale = pipeline.process(marked_bytes(), EXO, context=at(NOW + 2 * HOUR))
    assert stale.action is Action.ACCEPT


@pytest.mark.parametrize(("data", "verdict"), [
    (marked_bytes(key_ring=ring(tag=OTHER_TAG)), "foreign"),
    (MESSAGE.replace(b"Subject:", b"X-Mailroute-Mark: garbage\r\nSubject:"), "malformed"),
    (marked_bytes().replace(b"Alice@Example.NET", b"mallory@example.org"), "bad-mac"),
    (marked_bytes(now=NOW + HOUR), "future"),
])
@pytest.mark.parametrize("envelope", [EXO, INTERNET])
def test_on_missing_reject_counts_an_invalid_marker_as_absent(data: bytes, verdict: str,
                                                              envelope: Envelope) -> None:
    """A made-up marker field must not get unprocessed mail past a host that accepts only
    processed mail: stripped, it is no marker at all."""
    result = verifier(on_missing="reject").process(data, envelope, context=at(NOW))
    assert result.action is Action.REJECT
    assert (result.smtp_reply.code, result.smtp_reply.status) == (554, "5.7.1")
    assert result.reply.endswith(f"no valid loop marker ({verdict})")
    assert result.data is None


@pytest.mark.parametrize("envelope", [EXO, INTERNET])
def test_on_missing_reject_passes_valid_stale_and_expired_markers(envelope: Envelope) -> None:
    """A marker with a valid MAC proves the message passed the gateway, however long ago."""
    pipeline = verifier(on_missing="reject")
    for later in (2 * HOUR, 8 * 24 * HOUR):  # valid-stale, expired
        result = pipeline.process(marked_bytes(), envelope, context=at(NOW + later))
        assert result.action is Action.ACCEPT
        assert markers(result.data) == 0


def test_every_message_leaving_the_gateway_carries_exactly_one_valid_marker(
        corpus: list[Path]) -> None:
    pipeline, _ = gateway()
    for number, path in enumerate(corpus):
        data = path.read_bytes()
        envelope = Envelope(rcpt_to=(f"r{number}@example.org",), direction="outbound")
        result = pipeline.process(data, envelope, context=at(NOW))
        assert result.action is Action.ACCEPT, (path.name, result.reply)
        assert markers(result.data) == 1, path.name
        out = parse(result.data or b"")
        assert check_message(out, RING, now=NOW).verdict is MarkerVerdict.VALID_FRESH, path.name


# -- source classification ----------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("mail.protection.outlook.com", "return-path"),
    ("EUR01-AM6-obe.mail.protection.outlook.com.", "return-path"),
    ("evilmail.protection.outlook.com", "internet"),
    ("mail.protection.outlook.com.attacker.example", "internet"),
    (None, "internet"),
])
def test_tls_name_decides_the_source(name: str | None, expected: str) -> None:
    step = verify_step()
    item = _item(Envelope(tls_peer_name=name, client_address="40.107.22.1"))
    assert classify(step, item) == expected


def test_networks_and_tenant_id_narrow_the_return_path() -> None:
    step = verify_step(tenant_id="T-1", return_path_networks=("40.107.0.0/16",))
    tenant = b"X-MS-Exchange-CrossTenant-Id: t-1\r\n"
    assert classify(step, _item(EXO, tenant + MESSAGE)) == "return-path"
    assert classify(step, _item(EXO, MESSAGE)) == "internet"
    assert classify(step, _item(Envelope(tls_peer_name="mail.protection.outlook.com",
                                         client_address="203.0.113.9"), tenant + MESSAGE)
                    ) == "internet"
    fixed = verify_step(source="return-path")
    assert classify(fixed, _item(INTERNET)) == "return-path"


def _item(envelope: Envelope, data: bytes = MESSAGE) -> MailItem:
    return MailItem(envelope=envelope, message=parse(data))


# -- second and third loop guards ---------------------------------------------------------

def test_too_many_received_fields_is_a_loop() -> None:
    hops = b"Received: from a by b\r\n" * 101
    result = verifier().process(hops + MESSAGE, INTERNET, context=at(NOW))
    assert (result.action, result.smtp_reply.status) == (Action.REJECT, "5.4.6")
    ok = verifier().process(b"Received: from a by b\r\n" * 99 + MESSAGE, INTERNET,
                            context=at(NOW))
    assert ok.action is Action.ACCEPT
    assert verifier(max_received=5).process(b"Received: x\r\n" * 5 + MESSAGE, INTERNET,
                                            context=at(NOW)).action is Action.REJECT


def exo_lap(data: bytes | None) -> bytes:
    """What a lap through Exchange does: a Received field on top, the marker removed."""
    assert data is not None
    lapped = parse(data).without_header(DEFAULT_FIELD).with_header(
        "Received", "from gw.example.net by AM0PR01MB1234.eurprd01.prod.outlook.com")
    return lapped.to_bytes()


def test_processed_message_coming_back_without_its_marker_is_a_loop() -> None:
    pipeline = with_store(verify_step(), MarkerSetFilter(ring=RING))
    once = pipeline.process(MESSAGE, EXO, context=at(NOW))
    assert once.action is Action.ACCEPT
    returned = exo_lap(once.data)
    again = pipeline.process(returned, EXO, context=at(NOW + 60))
    assert (again.action, again.smtp_reply.status) == (Action.REJECT, "5.4.6")
    assert "already processed (seen)" in again.reply
    other_rcpt = Envelope(rcpt_to=("carol@example.org",), direction=Direction.OUTBOUND)
    assert pipeline.process(returned, other_rcpt, context=at(NOW + 60)).action is Action.ACCEPT
    later = pipeline.process(returned, EXO, context=at(NOW + HOUR + 1))
    assert later.action is Action.ACCEPT


def test_a_mailing_list_copy_of_a_message_also_received_directly_is_no_loop() -> None:
    """Found by the routing audit: the list's copy (same Message-ID and recipient, more
    Received fields) was refused 554 5.4.6. It comes from the list's bounce address."""
    pipeline = with_store(verify_step(), MarkerSetFilter(ring=RING))
    direct = pipeline.process(MESSAGE, EXO, context=at(NOW))
    from_list = Envelope(mail_from="list-bounces@lists.example.org", rcpt_to=EXO.rcpt_to,
                         client_address=EXO.client_address, tls_peer_name=EXO.tls_peer_name,
                         direction=EXO.direction)
    listed = pipeline.process(b"Received: from lists.example.org\r\n" * 2 + MESSAGE,
                              from_list, context=at(NOW + 60))
    assert (direct.action, listed.action) == (Action.ACCEPT, Action.ACCEPT)
    assert pipeline.process(exo_lap(listed.data), from_list, context=at(NOW + 120)
                            ).action is Action.REJECT      # its own lap is still a loop


def test_the_same_input_handed_over_again_is_a_retry_not_a_loop() -> None:
    pipeline = with_store(verify_step(), MarkerSetFilter(ring=RING))
    first = pipeline.process(MESSAGE, EXO, context=at(NOW))
    retry = pipeline.process(MESSAGE, EXO, context=at(NOW + 300))  # reinjection had failed
    assert (first.action, retry.action) == (Action.ACCEPT, Action.ACCEPT)
    assert pipeline.process(exo_lap(retry.data), EXO, context=at(NOW + 360)
                            ).action is Action.REJECT


def test_processed_guard_counts_only_marked_messages_and_can_be_turned_off() -> None:
    store = InMemoryProcessedStore()
    pipeline = with_store(verify_step(), store=store)
    for _ in range(3):  # verification alone records nothing: retries are not loops
        assert pipeline.process(MESSAGE, EXO, context=at(NOW)).action is Action.ACCEPT
    key = processed_key("<20260921.abc123@mail.example.net>", EXO.mail_from, EXO.rcpt_to,
                        EXO.direction)
    store.record(key, NOW, HOUR, fingerprint="an earlier lap")
    assert pipeline.process(MESSAGE, EXO, context=at(NOW)).action is Action.REJECT
    off = with_store(verify_step(processed_limit=0), store=store)
    assert off.process(MESSAGE, EXO, context=at(NOW)).action is Action.ACCEPT


def test_in_memory_store_expires_and_stays_bounded() -> None:
    store = InMemoryProcessedStore(max_keys=3)
    assert store.record("a", 100, 10, fingerprint="x") == 1
    assert store.record("a", 105, 10, fingerprint="y") == 2
    assert store.count("a", 111, 10) == 1
    assert store.count("a", 106, 10, other_than="y") == 1
    assert store.count("a", 200, 10) == 0
    for name in "bcde":
        store.record(name, 106, 10)
    assert len(store) == 3
    assert store.count("b", 106, 10) == 0  # the oldest was dropped first
    assert store.count("e", 106, 10) == 1


# -- minting refused, configuration -------------------------------------------------------

def test_no_signing_key_tempfails_and_writes_nothing() -> None:
    retired = ring(keys=({"id": "k1", "secret": SECRET_A_B64, "sign_until": NOW},))
    pipeline = Pipeline(filters=(MarkerSetFilter(ring=retired),))
    result = pipeline.process(MESSAGE, EXO, context=at(NOW))
    assert result.action is Action.TEMPFAIL
    assert result.data is None
    assert (result.smtp_reply.code, result.smtp_reply.status) == (451, "4.3.0")


def test_policy_file_builds_both_filters_with_relative_key_file(tmp_path: Path) -> None:
    write_key_file(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "marker-verify"\nkey_file = "keys.toml"\n'
                      'on_invalid = "reject"\nmax_age = 86400\nloop_window = 600\n'
                      'return_path_networks = ["40.107.0.0/16"]\n'
                      '[[pipeline]]\nfilter = "marker-set"\nkey_file = "keys.toml"\n'
                      'message_id_domain = "gw.example.net"\n')
    pipeline = load_policy(policy)
    first, last = pipeline.filters
    assert isinstance(first, MarkerVerifyFilter)
    assert isinstance(last, MarkerSetFilter)
    settings = first.settings
    assert (settings.on_invalid, settings.windows.max_age, settings.windows.loop_window,
            settings.processed_ttl) == ("reject", 86400, 600, 600)
    assert last.id_domain == "gw.example.net"
    result = pipeline.process(MESSAGE.replace(b"Message-ID: <20260921.abc123@Mail.Example.NET>"
                                              b"\r\n", b""), INTERNET)
    assert result.action is Action.ACCEPT
    assert b"@gw.example.net>" in (result.data or b"")


@pytest.mark.parametrize(("line", "key"), [
    ('on_invalid = "drop"', "on_invalid"),
    ('source = "exo"', "source"),
    ("max_age = -1", "max_age"),
    ('field = "Bad Name"', "field"),
    ('return_path_networks = ["not-a-net"]', "return_path_networks"),
    ("colour = 1", "colour"),
    ('on_missing = "drop"', "on_missing"),
    ("loop_window = 700000", "loop_window"),  # longer than max_age
    ('bypass_header = "Bad Name"', "bypass_header"),
    ('on_foreign_relay = "drop"', "on_foreign_relay"),
    ('on_foreign_relay = "reject"', "on_foreign_relay"),  # no [gateway] internal_domains
])
def test_bad_marker_verify_options_are_config_errors(tmp_path: Path, line: str,
                                                     key: str) -> None:
    write_key_file(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[pipeline]]\nfilter = "marker-verify"\nkey_file = "keys.toml"\n{line}\n')
    with pytest.raises(ConfigError) as caught:
        load_policy(policy)
    assert caught.value.key == f"pipeline[0].{key}"


@pytest.mark.parametrize(("envelope", "tenant", "expected"), [
    (Envelope(mail_from="ceo@example.net", rcpt_to=("x@partner.example",),
              client_address="198.51.100.7"), None, "550 5.7.1 mailroute: relay not permitted"),
    (Envelope(mail_from="ceo@example.net", rcpt_to=("x@partner.example",),
              client_address="198.51.100.7", auth_user="ceo"), None, "250"),
    (Envelope(mail_from="a@foreign.example", rcpt_to=("x@partner.example",),
              tls_peer_name="eur05.mail.protection.outlook.com"), "other",
     "550 5.7.1 mailroute: relay not permitted (not this tenant's Exchange Online)"),
    (Envelope(mail_from="a@foreign.example", rcpt_to=("bob@example.net",),
              tls_peer_name="eur05.mail.protection.outlook.com"), "other", "250"),
    (Envelope(mail_from="alice@example.net", rcpt_to=("x@partner.example",),
              tls_peer_name="eur05.mail.protection.outlook.com"), "ours", "250"),
], ids=["own-domain-sender", "sasl-user", "other-tenant", "other-tenant-inbound", "our-tenant"])
def test_on_foreign_relay_reject_refuses_outside_recipients_from_anyone_but_our_tenant(
        tmp_path: Path, envelope: Envelope, tenant: str | None, expected: str) -> None:
    """Relay control for an MTA in front that relays for Exchange Online's (shared) ranges:
    the tenant id or an authenticated sender lets outside recipients through; mail for the
    organisation is taken from anyone; the default leaves relay control to the MTA."""
    ours, other = "6f1c2a9e-3b7d-4c1e-9a55-0d2f1e8b7c44", "0b7e4c1d-2222-4aaa-8bbb-9c0d1e2f3a4b"
    write_key_file(tmp_path)
    policy = tmp_path / "policy.toml"
    verify = ('[[pipeline]]\nfilter = "marker-verify"\nkey_file = "keys.toml"\n'
              f'tenant_id = "{ours}"\n')
    policy.write_text('[gateway]\ninternal_domains = ["example.net"]\n' + verify
                      + 'on_foreign_relay = "reject"\n')
    message = MESSAGE
    if tenant is not None:
        value = ours if tenant == "ours" else other
        message = b"X-MS-Exchange-CrossTenant-Id: " + value.encode() + b"\r\n" + MESSAGE
    result = load_policy(policy).process(message, envelope)
    assert result.reply.startswith(expected), result.reply
    policy.write_text('[gateway]\ninternal_domains = ["example.net"]\n' + verify)
    assert load_policy(policy).process(message, envelope).action is Action.ACCEPT


def test_group_readable_key_file_makes_the_policy_invalid(tmp_path: Path) -> None:
    write_key_file(tmp_path, mode=0o640)
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "marker-set"\nkey_file = "keys.toml"\n')
    with pytest.raises(ConfigError, match="group or others"):
        load_policy(policy)


# -- secrets never in logs, reprs or error texts ------------------------------------------

def test_no_secret_in_logs_reprs_or_replies(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_forms = (SECRET_A_B64, SECRET_A.decode(), derive_mac_key(SECRET_A, "k1").hex())
    pipeline, _ = gateway()
    texts = [repr(pipeline), repr(RING)]
    for data, envelope, now in [(MESSAGE, EXO, NOW), (marked_bytes(), EXO, NOW),
                                (marked_bytes(), INTERNET, NOW),
                                (marked_bytes(), EXO, NOW + 2 * HOUR),
                                (marked_bytes().replace(b"Alice", b"Eve"), EXO, NOW)]:
        result = pipeline.process(data, envelope, context=at(now))
        texts += [result.reply, repr(result.error), repr(result.item)]
    retired = ring(keys=({"id": "k1", "secret": SECRET_A_B64, "sign_until": NOW},))
    failed = Pipeline(filters=(MarkerSetFilter(ring=retired),)).process(MESSAGE, EXO,
                                                                        context=at(NOW))
    texts += [failed.reply, str(failed.error), repr(failed.error)]
    texts.append(caplog.text)
    for text in texts:
        assert not any(form in text for form in secret_forms)
    assert "marker valid-fresh" in caplog.text  # the log did record the verdicts


def test_marker_set_subprocess_logs_no_secret(tmp_path: Path) -> None:
    keys = write_key_file(tmp_path)
    done = subprocess.run([sys.executable, "-m", "mailroute", "-v", "marker", "set",
                           "--key-file", str(keys)], input=MESSAGE, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0
    assert b"marker minted with key k1" in done.stderr
    assert SECRET_A_B64.encode() not in done.stderr + done.stdout
    assert SECRET_A not in done.stderr + done.stdout


def test_in_memory_store_keeps_a_bounded_history_per_key() -> None:
    store = InMemoryProcessedStore()
    for second in range(1000):
        store.record("same", second, 10_000)
    assert store.count("same", 1000, 10_000) == InMemoryProcessedStore.MAX_PER_KEY


def test_hygiene_options_remove_what_exchange_would_trust() -> None:
    data = (b"X-MS-Exchange-Organization-SCL: -1\r\nX-MS-Exchange-CrossTenant-Id: t-1\r\n"
            b"X-Mailroute-Bypass: 1\r\n" + MESSAGE)
    plain = verifier().process(data, INTERNET, context=at(NOW))
    assert plain.data == data  # off by default: nothing but the marker is ever removed
    cleaned = verifier(strip_ms_headers=True, strip_tenant_header=True,
                       bypass_header="X-Mailroute-Bypass").process(data, INTERNET,
                                                                   context=at(NOW))
    assert cleaned.data == MESSAGE
    from_exchange = verifier(strip_ms_headers=True).process(data, EXO, context=at(NOW))
    assert from_exchange.data is not None
    assert b"X-MS-Exchange-Organization-SCL" in from_exchange.data  # only internet mail
