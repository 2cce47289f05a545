"""The milter layer's translation: macros to an envelope, session results to actions.

Header actions are checked by applying them the way Postfix 3.7 does (measured against the
real Postfix in ``test_milter_postfix.py``: the milter does not see Postfix's own
``Received`` field, insert positions count it, change/delete occurrences do not) and
comparing with the bytes the session produced.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mailroute.adapters.milter_map import (
    MessageFacts,
    client_address,
    result_actions,
    tls_peer_name,
)
from mailroute.item import Context, MailItem
from mailroute.mime import parse
from mailroute.mime.message import Message
from mailroute.pipeline import Pipeline
from mailroute.protocols import milter as pm
from mailroute.results import Action, Outcome, Reply
from mailroute.testing import build_message

OWN_RECEIVED = (b"Received", b" from client by mx (Postfix) with ESMTP id ABC")


@dataclass(frozen=True)
class Edit:
    name: str
    change: Callable[[Message], Message]

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        return item.evolve(message=self.change(item.message))


@dataclass(frozen=True)
class Stop:
    outcome: Outcome
    name: str = "stop"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        return self.outcome


def postfix_applies(visible: list[tuple[bytes, bytes]], body: bytes,
                    actions: list[pm.Action]) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Apply milter actions as Postfix does, with its own Received hidden on top."""
    fields: list[tuple[bytes, bytes, bool]] = [(*OWN_RECEIVED, True)]
    fields += [(name, value, False) for name, value in visible]
    new_body: bytearray | None = None
    for action in actions:
        if isinstance(action, pm.InsertHeader):
            fields.insert(action.index, (action.name, action.value, False))
        elif isinstance(action, pm.AddHeader):
            fields.append((action.name, action.value, False))
        elif isinstance(action, pm.ChangeHeader):
            seen = 0
            for position, (name, _, hidden) in enumerate(fields):
                if not hidden and name.lower() == action.name.lower():
                    seen += 1
                    if seen == action.index:
                        if action.value:
                            fields[position] = (name, action.value, False)
                        else:
                            del fields[position]
                        break
        elif isinstance(action, pm.ReplaceBody):
            new_body = (new_body or bytearray()) + action.body
    return [(n, v.replace(b"\n", b"\r\n")) for n, v, _ in fields], (
        bytes(new_body) if new_body is not None else body)


def fields_of(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    message = parse(data)
    return ([(f.name.encode(), f.raw_value) for f in message.headers],
            message.root.body_bytes())


SOURCE = build_message(headers=(("Received", "from a by b; Thu, 01 Jan 2026 00:00:00 +0000"),
                                ("Received", "from c by d; Thu, 01 Jan 2026 00:00:00 +0000"),
                                ("X-Tag", "one"), ("X-Tag", "two"), ("X-Tag", "three")))
EDITS = {
    "insert on top": lambda m: m.with_header("X-Top", "top"),
    "append": lambda m: m.with_header("X-Bottom", "bottom", position="bottom"),
    "delete the second of three": lambda m: m.keep_headers(
        lambda f: f.raw_value != b" two"),
    "delete every X-Tag": lambda m: m.without_header("X-Tag"),
    "change a repeated field": lambda m: m.keep_headers(lambda f: f.raw_value != b" one")
                                          .with_header("X-Tag", "new", position="bottom"),
    "replace subject": lambda m: m.replace_header("Subject", "changed"),
    "folded value": lambda m: m.with_header("X-Long", "a " * 60),
    "delete a Received": lambda m: m.keep_headers(lambda f: b"from c" not in f.raw_value),
}


@pytest.mark.parametrize("change", EDITS.values(), ids=EDITS.keys())
def test_actions_applied_as_postfix_does_give_the_session_output(
        change: Callable[[Message], Message]) -> None:
    result = Pipeline(filters=(Edit("edit", change),)).process(SOURCE)
    assert result.action is Action.ACCEPT
    assert result.data is not None
    actions = result_actions(result, hidden_above=1)
    assert isinstance(actions[-1], pm.Accept)
    assert not any(isinstance(a, pm.ReplaceBody) for a in actions)  # body unchanged
    visible, body = fields_of(SOURCE)
    got_fields, got_body = postfix_applies(visible, body, actions[:-1])
    want_fields, want_body = fields_of(result.data)
    assert got_fields == [(OWN_RECEIVED[0], OWN_RECEIVED[1]), *want_fields]
    assert got_body == want_body


def test_changed_body_is_one_run_after_the_header_actions() -> None:
    big = build_message(body="x" * 200_000 + "\r\n")

    def rewrite(m: Message) -> Message:
        return parse(m.with_header("X-Done", "yes").to_bytes().replace(b"xxxx", b"yyyy", 1))

    result = Pipeline(filters=(Edit("edit", rewrite),)).process(big)
    actions = result_actions(result, hidden_above=1)
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["InsertHeader", "ReplaceBody", "Accept"]
    packets = actions[1].packets()
    assert len(packets) == 4
    assert all(len(p) - 5 <= 65535 for p in packets)
    visible, body = fields_of(big)
    _, got_body = postfix_applies(visible, body, actions[:-1])
    assert result.data is not None
    assert got_body == fields_of(result.data)[1]


def test_unchanged_message_gets_a_bare_accept() -> None:
    assert result_actions(Pipeline().process(SOURCE)) == [pm.Accept()]


@pytest.mark.parametrize(("outcome", "expected"), [
    (Outcome.reject("5.7.1", "no thanks"), [pm.ReplyCode(554, "5.7.1", ("no thanks",))]),
    (Outcome(Action.TEMPFAIL, Reply(451, "4.4.3", "later")),
     [pm.ReplyCode(451, "4.4.3", ("later",))]),
    (Outcome(Action.DISCARD, Reply(250, "2.0.0", "dropped")), [pm.Discard()]),
    (Outcome(Action.QUARANTINE, Reply(250, "2.0.0", "held for review")),
     [pm.Quarantine(b"held for review"), pm.Accept()]),
])
def test_outcomes_map_to_replies(outcome: Outcome, expected: list[pm.Action]) -> None:
    assert result_actions(Pipeline(filters=(Stop(outcome),)).process(SOURCE)) == expected


def test_internal_failure_is_451_4_3_0() -> None:
    def boom(m: Message) -> Message:
        raise RuntimeError("bug")

    actions = result_actions(Pipeline(filters=(Edit("boom", boom),)).process(SOURCE))
    assert isinstance(actions[0], pm.ReplyCode)
    assert actions == [pm.ReplyCode(451, "4.3.0", actions[0].lines)]


@pytest.mark.parametrize(("macros", "name"), [
    ({b"{cert_subject}": b"exo.test.example"}, "exo.test.example"),          # Postfix
    ({b"{cert_subject}": b"/C=US/O=X/CN=mx.example", b"{verify}": b"OK"}, "mx.example"),
    ({b"{cert_subject}": b"/C=US/CN=mx.example", b"{verify}": b"FAIL"}, None),  # Sendmail
    ({b"{cert_subject}": b"CN=mx.example,O=X", b"{verify}": b"OK"}, "mx.example"),
    ({b"{verify}": b"OK"}, None),
    ({b"{cert_subject}": b""}, None),
    ({}, None),
    # Postfix's value is the common name itself, whatever it contains
    ({b"{cert_subject}": b"evil.example/CN=mail.protection.outlook.com"},
     "evil.example/CN=mail.protection.outlook.com"),
    # a second CN, or one hidden in another attribute's value: ambiguous, no name
    ({b"{cert_subject}": b"/O=x/CN=mail.protection.outlook.com/CN=evil.example",
      b"{verify}": b"OK"}, None),
    ({b"{cert_subject}": b"/C=US/O=x/CN=mail.protection.outlook.com/CN=evil.example",
      b"{verify}": b"OK"}, None),
    ({b"{cert_subject}": b"CN=evil.example,O=x,CN=mail.protection.outlook.com",
      b"{verify}": b"OK"}, None),
    ({b"{cert_subject}": b"/C=US/O=X/emailAddress=a@b.example", b"{verify}": b"OK"}, None),
    ({b"{cert_subject}": b"/C=US/CN=mx.example/emailAddress=pm@mx.example",
      b"{verify}": b"OK"}, "mx.example"),
    # OpenSSL 3 escapes a / inside a value: no attribute starts there
    ({b"{cert_subject}": b"/C=US/O=x\\/CN=mail.protection.outlook.com", b"{verify}": b"OK"},
     None),
    ({b"{cert_subject}": b"/C=US/O=x\\/CN=mail.protection.outlook.com/CN=mx.example",
      b"{verify}": b"OK"}, "mx.example"),
    # ... which Sendmail writes as xtext: +5C is the backslash, +20 a space
    ({b"{cert_subject}": b"/C=US/O=x+5C/CN=mail.protection.outlook.com", b"{verify}": b"OK"},
     None),
    ({b"{cert_subject}": b"/C=US/O=Example+20Inc/CN=mx.example", b"{verify}": b"OK"},
     "mx.example"),
])
def test_tls_peer_name_only_for_verified_certificates(macros: dict[bytes, bytes],
                                                       name: str | None) -> None:
    assert tls_peer_name(macros) == name


@pytest.mark.parametrize(("raw", "address"), [
    ("IPv6:0:0:0:0:0:0:0:1", "::1"),                  # Sendmail's {client_addr}
    ("IPv6:2001:DB8:0:0:0:0:0:5", "2001:db8::5"),
    ("2001:db8:0::5", "2001:db8::5"),
    ("192.0.2.1", "192.0.2.1"),
    (" 192.0.2.1 ", "192.0.2.1"),
    ("unknown", "unknown"),
    ("IPv6:::ffff:40.92.0.1", "40.92.0.1"),              # an IPv4 client, IPv4-mapped
])
def test_client_address_is_written_as_an_ip_address(raw: str, address: str) -> None:
    assert client_address(raw) == address


def test_sendmail_ipv6_client_address_matches_networks() -> None:
    facts = MessageFacts()
    facts.macros[b"{client_addr}"] = b"IPv6:2001:db8:0:0:0:0:0:5"
    envelope = facts.envelope()
    assert envelope.client_address == "2001:db8::5"
    assert ipaddress.ip_address(envelope.client_address) in ipaddress.ip_network("2001:db8::/32")


def test_envelope_from_macros_and_commands() -> None:
    facts = MessageFacts(client_address="192.0.2.1")
    facts.macros.update({b"{client_addr}": b"198.51.100.7", b"i": b"ABC123",
                         b"{cert_subject}": b"exo.test.example"})
    facts.set_sender(b"<alice@corp.example>")
    facts.add_recipient(b"<bob@partner.example>")
    envelope = facts.envelope()
    assert envelope.mail_from == "alice@corp.example"
    assert envelope.rcpt_to == ("bob@partner.example",)
    assert envelope.client_address == "198.51.100.7"
    assert envelope.tls_peer_name == "exo.test.example"
    assert facts.queue_id == "ABC123"
    assert envelope.helo is None
    facts.set_helo(b"mail.partner.example")
    facts.set_helo(b" mx.partner.example ")   # EHLO again after STARTTLS: the latest counts
    assert facts.envelope().helo == "mx.partner.example"
    facts.set_helo(b"bad\r\nname")
    assert facts.envelope().helo is None
    facts.set_sender(b"<>")
    assert facts.envelope().mail_from == ""
    assert facts.envelope().rcpt_to == ()


def test_only_the_macros_mailroute_reads_are_kept() -> None:
    facts = MessageFacts()
    facts.add_macros(((b"i", b"Q1"), (b"{client_addr}", b"192.0.2.1"),
                      *[(b"{junk%d}" % n, b"x" * 100) for n in range(1000)]))
    assert facts.macros == {b"i": b"Q1", b"{client_addr}": b"192.0.2.1"}


def test_recipients_beyond_the_bound_are_counted_not_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mailroute.adapters import milter_map

    monkeypatch.setattr(milter_map, "MAX_RECIPIENTS", 2)
    facts = MessageFacts()
    facts.set_sender(b"<a@corp.example>")
    for n in range(5):
        facts.add_recipient(b"<r%d@partner.example>" % n)
    assert (facts.rcpt_to, facts.dropped_recipients) == (
        ["r0@partner.example", "r1@partner.example"], 3)
    facts.set_sender(b"<b@corp.example>")   # a new transaction starts afresh
    assert (facts.rcpt_to, facts.dropped_recipients) == ([], 0)


@pytest.mark.parametrize(("text", "lines"), [
    ("no thanks", ("no thanks",)),
    ("first line\nsecond line", ("first line second line",)),   # Reply makes it one line
    ("no certificate for jürgen@partner.example", ("no certificate for j?rgen@partner.example",)),
    ("a\tb 100%", ("a b 100%",)),
    ("x" * 600, ("x" * 240, "x" * 240, "x" * 120)),
    ("", ("-",)),
])
def test_reply_text_is_what_an_smtp_reply_line_may_carry(
        text: str, lines: tuple[str, ...]) -> None:
    from mailroute.adapters.milter_map import reply_code
    from mailroute.results import Reply

    reply = reply_code(Reply(554, "5.7.1", text), REFUSED)
    assert reply == pm.ReplyCode(554, "5.7.1", lines)
    assert all(len(line) <= 512 for line in reply.packets()[0][5:-1].split(b"\r\n"))
    assert reply.packets()[0].isascii()


REFUSED = pm.ReplyCode(554, "5.7.1", ("message refused",))
