"""mailroute.testing is what a user's own policy tests need: checked the way they would use it."""

from __future__ import annotations

from pathlib import Path

from mailroute import Action, Envelope, load_policy, parse
from mailroute.marker import check_message
from mailroute.results import MarkerVerdict
from mailroute.testing import (
    FakeClock,
    build_message,
    fake_context,
    fake_key_ring,
    write_fake_key_file,
)

EXCHANGE = Envelope(mail_from="alice@example.net", rcpt_to=["bob@example.org"],
                    tls_peer_name="mail.protection.outlook.com", client_address="40.107.1.1")


def _policy(tmp_path: Path) -> Path:
    write_fake_key_file(tmp_path / "keys.toml")
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "marker-verify"\nkey_file = "keys.toml"\n'
                      '[[pipeline]]\nfilter = "marker-set"\nkey_file = "keys.toml"\n')
    return policy


def test_a_policy_test_with_a_fake_clock_and_the_testing_key_ring(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000)
    pipeline = load_policy(_policy(tmp_path))
    context = fake_context(clock=clock)
    first = pipeline.process(build_message(), EXCHANGE, context=context)
    assert first.action is Action.ACCEPT
    assert first.data is not None
    check = check_message(parse(first.data), fake_key_ring(), now=clock.advance(60))
    assert (check.verdict, check.age_seconds) == (MarkerVerdict.VALID_FRESH, 60)
    # Handed back by Exchange a minute later with the fresh marker: a loop.
    again = pipeline.process(first.data, EXCHANGE, context=context)
    assert (again.action, again.smtp_reply.status) == (Action.REJECT, "5.4.6")
    # Two hours later the marker is stale, and the processed-message record has expired.
    clock.advance(7200)
    assert pipeline.process(first.data, EXCHANGE, context=context).action is Action.ACCEPT


def test_each_fake_context_has_its_own_store() -> None:
    one, two = fake_context(), fake_context()
    assert one.processed is not two.processed
    assert one.clock() == two.clock() == 1_800_000_000


def test_the_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path = write_fake_key_file(tmp_path / "k.toml", tag="abcdef")
    assert path.stat().st_mode & 0o077 == 0
    assert _ring_tag(path) == "abcdef"


def _ring_tag(path: Path) -> str:
    from mailroute.marker import load_key_ring

    return load_key_ring(path).tag


def test_build_message_is_a_valid_message_with_the_fields_given() -> None:
    raw = build_message(subject="Grüße", body="Köln\r\n", headers=(("X-Test", "1"),))
    message = parse(raw)
    assert message.headers.value("Subject") == "Grüße"
    assert message.headers.value("X-Test") == "1"
    assert message.headers.value("Content-Transfer-Encoding") == "8bit"
    assert raw.endswith(b"\r\n\r\nK\xc3\xb6ln\r\n")
    assert parse(build_message(message_id=None)).headers.get("Message-ID") is None
