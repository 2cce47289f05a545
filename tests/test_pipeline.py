"""The pipeline: order, outcomes, direction, conditions and fail-safe error handling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mailroute import Action, Context, Envelope, MailItem, Outcome, Pipeline, parse
from mailroute.errors import ConfigError, KeyUnavailableError, PolicyError
from mailroute.item import Direction
from mailroute.pipeline import Condition, Conditional
from mailroute.results import AuthResult, AuthStatus

MESSAGE = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


@dataclass(frozen=True)
class Tag:
    value: str
    name: str = "tag"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        return item.evolve(message=item.message.with_header("X-Tag", self.value,
                                                            position="bottom"))


@dataclass(frozen=True)
class Stop:
    outcome: Outcome
    name: str = "stop"

    def apply(self, item: MailItem, ctx: Context) -> Outcome:
        return self.outcome


@dataclass(frozen=True)
class Raise:
    error: Exception
    name: str = "raise"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        raise self.error


@dataclass(frozen=True)
class Clocked:
    name: str = "clocked"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        return item.evolve(message=item.message.with_header("X-Now", str(int(ctx.clock()))))


def test_empty_pipeline_is_the_identity() -> None:
    result = Pipeline().process(MESSAGE)
    assert result.action is Action.ACCEPT
    assert result.data == MESSAGE
    assert result.reply == "250 2.0.0 message accepted"


def test_filters_run_in_order() -> None:
    result = Pipeline(filters=(Tag("1"), Tag("2"))).process(MESSAGE)
    assert result.data is not None
    assert result.data.index(b"X-Tag: 1") < result.data.index(b"X-Tag: 2")


def test_first_outcome_stops_the_run() -> None:
    result = Pipeline(filters=(Stop(Outcome.reject("5.7.1", "no")), Tag("never"))).process(
        MESSAGE)
    assert result.action is Action.REJECT
    assert result.data is None
    assert result.reply == "554 5.7.1 no"


def test_a_pipeline_is_a_filter() -> None:
    inner = Pipeline(filters=(Tag("inner"),))
    result = Pipeline(filters=(inner, Tag("outer"))).process(MESSAGE)
    assert result.data is not None
    assert b"X-Tag: inner\r\nX-Tag: outer\r\n" in result.data


def test_a_pipeline_with_settings_of_its_own_does_not_nest_silently() -> None:
    """Found by the API audit: nesting a loaded policy dropped its authserv-id (a forged
    Authentication-Results of the gateway survived), its processed-message store and its
    key stores without a word."""
    policy = Pipeline(filters=(Tag("policy"),), authserv_id="gw.example.net",
                      internal_domains=frozenset({"example.net"}))
    with pytest.raises(ConfigError, match="with_filters"):
        Pipeline(filters=(Tag("mine"), policy))
    with pytest.raises(ConfigError):
        Pipeline(filters=(Conditional(policy, Condition(directions=frozenset(
            {Direction.INBOUND}))),))
    same = Pipeline(filters=(Tag("mine"), policy), authserv_id="gw.example.net",
                    internal_domains=frozenset({"example.net"}))
    assert same.process(MESSAGE).action is Action.ACCEPT


def test_with_filters_adds_filters_around_a_policy_and_keeps_its_settings() -> None:
    policy = Pipeline(filters=(Tag("policy"),), authserv_id="gw.example.net")
    gateway = policy.with_filters(before=(Tag("first"),), after=(Tag("last"),))
    assert gateway.session_fields() == policy.session_fields()
    forged = b"Authentication-Results: gw.example.net; dkim=pass\r\n" + MESSAGE
    result = gateway.process(forged)
    assert result.data is not None
    assert b"gw.example.net; dkim=pass" not in result.data
    assert result.data.index(b"X-Tag: first") < result.data.index(b"X-Tag: policy") \
        < result.data.index(b"X-Tag: last")


@dataclass(frozen=True)
class Look:
    name: str = "look"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        return item.annotate("looked", "yes")


def test_the_trace_says_what_each_filter_did_in_order() -> None:
    inbound_only = Conditional(Tag("in"), Condition(directions=frozenset({Direction.INBOUND})))
    inner = Pipeline(filters=(Look(), Tag("inner")), name="inner")
    result = Pipeline(filters=(Tag("1"), inbound_only, inner, Look())).process(
        MESSAGE, Envelope(direction="outbound"))
    assert result.trace == (("tag", "changed"), ("tag", "skipped"), ("look", "unchanged"),
                            ("tag", "changed"), ("look", "unchanged"))
    stopped = Pipeline(filters=(Look(), Pipeline(filters=(Stop(Outcome.discard()),)),
                                Tag("never"))).process(MESSAGE)
    assert stopped.trace == (("look", "unchanged"), ("stop", "discard"))
    assert Pipeline().process(MESSAGE).trace == ()


def test_the_trace_goes_up_to_the_filter_that_raised() -> None:
    """Found by the CLI audit: the log line said ``filters=-`` (and ``try`` an empty list)
    although filters had run and changed the message before one raised."""
    inner = Pipeline(filters=(Look(), Raise(PolicyError("refused"))), name="inner")
    result = Pipeline(filters=(Tag("1"), inner, Tag("never"))).process(MESSAGE)
    assert result.action is Action.REJECT
    assert result.trace == (("tag", "changed"), ("look", "unchanged"), ("raise", "reject"))
    temporary = Pipeline(filters=(Tag("1"), Raise(KeyUnavailableError("no key")))
                         ).process(MESSAGE)
    assert temporary.trace == (("tag", "changed"), ("raise", "tempfail"))
    again = Pipeline(filters=(Look(), inner)).process(MESSAGE)   # the same error instance
    assert again.trace == (("look", "unchanged"), ("look", "unchanged"), ("raise", "reject"))


def test_malformed_input_is_rejected_with_5_6_0() -> None:
    result = Pipeline().process(b"From: a\r\nFrom: b\r\n\r\nx")
    assert result.action is Action.REJECT
    assert result.smtp_reply.status == "5.6.0"
    assert result.data is None


def test_unexpected_exception_becomes_tempfail_without_leaking_its_text() -> None:
    result = Pipeline(filters=(Raise(RuntimeError("secret-key-material")),)).process(MESSAGE)
    assert result.action is Action.TEMPFAIL
    assert result.smtp_reply.code == 451
    assert result.smtp_reply.status == "4.3.0"
    assert "secret" not in result.reply


def test_an_unexpected_exception_is_the_cause_of_the_results_error() -> None:
    """Found by the API audit: a host logging at WARNING could not find its own filter's
    bug (the traceback is logged at INFO); the result now carries the exception."""
    bug = RuntimeError("my filter's bug")
    result = Pipeline(filters=(Raise(bug),)).process(MESSAGE)
    assert result.error is not None
    assert result.error.__cause__ is bug
    reference = result.reply.rsplit(" ", 1)[1]
    assert reference in str(result.error)


def test_recursion_error_becomes_tempfail() -> None:
    result = Pipeline(filters=(Raise(RecursionError()),)).process(MESSAGE)
    assert result.action is Action.TEMPFAIL


def test_mailroute_errors_map_to_their_replies() -> None:
    temporary = Pipeline(filters=(Raise(KeyUnavailableError("no key may sign")),)).process(MESSAGE)
    assert (temporary.action, temporary.smtp_reply.code) == (Action.TEMPFAIL, 451)
    permanent = Pipeline(filters=(Raise(PolicyError("refused")),)).process(MESSAGE)
    assert (permanent.action, permanent.smtp_reply.status) == (Action.REJECT, "5.7.1")


def test_clock_comes_from_the_context() -> None:
    result = Pipeline(filters=(Clocked(),)).process(MESSAGE, context=Context(clock=lambda: 42.0))
    assert result.data is not None
    assert result.data.startswith(b"X-Now: 42\r\n")


def test_direction_is_derived_from_internal_domains() -> None:
    pipeline = Pipeline(internal_domains=frozenset({"example.net"}))
    cases = {
        ("a@example.net", ("b@example.org",)): Direction.OUTBOUND,
        ("a@example.net", ("b@sub.example.net",)): Direction.INTERNAL,
        ("x@example.org", ("b@example.net",)): Direction.INBOUND,
        ("", ("b@example.net",)): Direction.INBOUND,
    }
    for (sender, rcpts), expected in cases.items():
        envelope = Envelope(mail_from=sender, rcpt_to=rcpts)
        assert pipeline.derive_direction(envelope) is expected
    explicit = Envelope(mail_from="a@example.net", direction="inbound")
    assert pipeline.derive_direction(explicit) is Direction.INBOUND


def test_conditions_select_messages() -> None:
    only_outbound = Conditional(Tag("footer"), Condition(
        directions=frozenset({Direction.OUTBOUND})))
    pipeline = Pipeline(filters=(only_outbound,), internal_domains=frozenset({"example.net"}))
    outbound = pipeline.process(MESSAGE, Envelope(mail_from="a@example.net",
                                                  rcpt_to=["b@example.org"]))
    internal = pipeline.process(MESSAGE, Envelope(mail_from="a@example.net",
                                                  rcpt_to=["c@example.net"]))
    assert outbound.data is not None
    assert internal.data is not None
    assert b"X-Tag: footer" in outbound.data
    assert internal.data == MESSAGE


def test_recipient_and_sender_conditions() -> None:
    condition = Condition(recipient_domains=frozenset({"example.org"}),
                          senders=frozenset({"a@example.net"}))
    assert condition.matches(Envelope(mail_from="A@Example.net", rcpt_to=["x@EXAMPLE.org"]))
    assert not condition.matches(Envelope(mail_from="a@example.net", rcpt_to=["x@other.org"]))
    assert not condition.matches(Envelope(mail_from="z@example.net", rcpt_to=["x@example.org"]))


def test_authenticated_condition_follows_the_sasl_user() -> None:
    logged_in = Envelope(mail_from="a@example.net", auth_user="alice")
    anonymous = Envelope(mail_from="a@example.net")
    assert Envelope(auth_user="").auth_user is None
    assert Condition(authenticated=True).matches(logged_in)
    assert not Condition(authenticated=True).matches(anonymous)
    assert Condition(authenticated=False).matches(anonymous)
    assert not Condition(authenticated=False).matches(logged_in)
    assert Condition().matches(logged_in)
    assert Condition().matches(anonymous)
    with pytest.raises(ValueError, match="auth_user"):
        Envelope(auth_user="alice\r\nBcc: x")


def test_authenticated_condition_from_the_policy(tmp_path: Path) -> None:
    from mailroute.policy import load_policy

    policy = tmp_path / "p.toml"
    policy.write_text('[[pipeline]]\nfilter = "headers"\nadd = {"X-Submitted" = "yes"}\n'
                      '[pipeline.when]\nauthenticated = true\n')
    pipeline = load_policy(policy)
    submitted = pipeline.process(MESSAGE, Envelope(mail_from="a@example.net", auth_user="al"))
    relayed = pipeline.process(MESSAGE, Envelope(mail_from="a@example.net"))
    assert submitted.data is not None
    assert relayed.data is not None
    assert b"X-Submitted: yes" in submitted.data
    assert relayed.data == MESSAGE


@dataclass(frozen=True)
class Verifier:
    name: str = "verifier"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        return item.with_auth_result(AuthResult("smime", AuthStatus.PASS, "good signature",
                                                (("header.from", "a@example.net"),)))


def test_auth_results_are_written_and_forged_copies_stripped() -> None:
    forged = b"Authentication-Results: gw.example.net; smime=pass\r\n" + MESSAGE
    other = b"Authentication-Results: other.example; dkim=pass\r\n" + MESSAGE
    pipeline = Pipeline(filters=(Verifier(),), authserv_id="gw.example.net")
    result = pipeline.process(forged)
    assert result.data is not None
    assert result.data.count(b"Authentication-Results") == 1
    written = parse(result.data).headers.get("Authentication-Results")
    assert written is not None
    assert written.value == ('gw.example.net; smime=pass reason="good signature" '
                             "header.from=a@example.net")
    assert result.data.startswith(b"Authentication-Results: gw.example.net;")
    kept = pipeline.process(other)
    assert kept.data is not None
    assert b"Authentication-Results: other.example; dkim=pass" in kept.data


@pytest.mark.parametrize("name", ["mail_from", "client_address", "tls_peer_name", "helo",
                                  "auth_user", "rcpt_to"])
@pytest.mark.parametrize("bad", ["a@b\r\nRCPT TO:<x>", "x@y\n", "x\0y"])
def test_envelope_refuses_line_breaks_and_names_the_field(name: str, bad: str) -> None:
    value: object = ["ok@example.net", bad] if name == "rcpt_to" else bad
    with pytest.raises(ValueError, match=f"^{name} contains CR, LF or NUL$"):
        Envelope(**{name: value})  # type: ignore[arg-type]


def test_envelope_keeps_what_it_was_given_and_stays_frozen() -> None:
    envelope = Envelope(mail_from="a@corp.example", rcpt_to=["b@x.example", "c@x.example"],
                        client_address="192.0.2.1", tls_peer_name="mx.example", helo="h",
                        direction="inbound", auth_user="")
    assert (envelope.mail_from, envelope.rcpt_to, envelope.client_address,
            envelope.tls_peer_name, envelope.helo, envelope.direction, envelope.auth_user) == (
        "a@corp.example", ("b@x.example", "c@x.example"), "192.0.2.1", "mx.example", "h",
        Direction.INBOUND, None)
    with pytest.raises(AttributeError):
        envelope.helo = "other"  # type: ignore[misc]


@pytest.mark.parametrize("notes", [(), (("disclaimer", "inserted=1"),),
                                   (("a", "1"), ("b", "2"))])
def test_with_message_is_evolve_with_the_notes_appended(notes: tuple[tuple[str, str], ...]
                                                        ) -> None:
    item = MailItem(envelope=Envelope(mail_from="a@example.net"), message=parse(MESSAGE),
                    annotations=(("earlier", "x"),),
                    auth_results=(AuthResult("dkim", AuthStatus.PASS),), trace=(("f", "changed"),))
    edited = item.message.with_header("X-New", "1")
    assert item.with_message(edited, *notes) == item.evolve(
        message=edited, annotations=(*item.annotations, *notes))
