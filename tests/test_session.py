"""The gateway session: prepare, run filters, finish; and the edit list a milter would send."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroute import Action, Context, Envelope, MailItem, Outcome, Pipeline, parse
from mailroute.item import Direction
from mailroute.mime.edits import Edits, HeaderEditKind, diff_messages, field_pairs
from mailroute.session import SessionSettings, finish, prepare, run_session
from mailroute.testing import build_message

MESSAGE = build_message(headers=(("X-Old", "1"), ("Received", "from a by b"),
                                 ("Received", "from c by d")))
SETTINGS = SessionSettings(internal_domains=frozenset({"example.net"}), authserv_id="gw.test")


@dataclass(frozen=True)
class Edit:
    """A filter applying one message edit."""

    change: str
    name: str = "edit"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        m = item.message
        if self.change == "add-top":
            m = m.with_header("X-New", "top")
        elif self.change == "add-bottom":
            m = m.with_header("X-Tail", "bottom", position="bottom")
        elif self.change == "remove":
            m = m.without_header("X-Old")
        elif self.change == "change":
            m = m.replace_header("Subject", "changed")
        elif self.change == "second-received":
            m = m.keep_headers(lambda f: f.raw != b"Received: from c by d\r\n")
        elif self.change == "body":
            m = m.replace_text((), "New body\r\n")
        return item.evolve(message=m)


def _edits(*changes: str) -> tuple[Edits, bytes]:
    pipeline = Pipeline(filters=tuple(Edit(c) for c in changes))
    result = pipeline.process(MESSAGE, Envelope(mail_from="alice@example.net",
                                                rcpt_to=["bob@example.org"]))
    assert result.action is Action.ACCEPT
    assert result.data is not None
    return result.edits, result.data


@pytest.mark.parametrize("changes", [
    ("add-top",), ("add-bottom",), ("remove",), ("change",), ("second-received",),
    ("add-top", "remove", "change", "add-bottom"), ("body",), ("body", "add-top"),
])
def test_applying_the_edits_to_the_input_gives_the_output(changes: tuple[str, ...]) -> None:
    edits, output = _edits(*changes)
    before, after = parse(MESSAGE), parse(output)
    assert edits.apply(field_pairs(before)) == field_pairs(after)
    if "body" in changes:
        assert edits.body == after.root.body_bytes()
    else:
        assert not edits.body_replaced


def test_edit_kinds_and_indexes() -> None:
    edits, _ = _edits("add-top", "second-received", "change")
    kinds = [(e.kind, e.name, e.index) for e in edits.headers]
    assert (HeaderEditKind.INSERT, "X-New", 0) in kinds
    assert (HeaderEditKind.DELETE, "Received", 2) in kinds  # the second Received field
    assert (HeaderEditKind.CHANGE, "Subject", 1) in kinds
    assert _edits()[0].unchanged


def test_no_edits_for_a_message_that_was_not_accepted() -> None:
    result = Pipeline().process(b"From: a\r\nFrom: b\r\n\r\nx")
    with pytest.raises(ValueError, match="not accepted"):
        _ = result.edits


def test_prepare_derives_direction_and_removes_forged_own_results() -> None:
    forged = b"Authentication-Results: gw.test; dkim=pass\r\n" + MESSAGE
    item = prepare(forged, Envelope(mail_from="alice@example.net", rcpt_to=["b@example.org"]),
                   SETTINGS)
    assert item.envelope.direction is Direction.OUTBOUND
    assert item.message.headers.get("Authentication-Results") is None
    kept = prepare(forged, Envelope(), SessionSettings(strip_own_auth_results=False))
    assert kept.message.to_bytes() == forged


@pytest.mark.parametrize("outcome", ["accept", "quarantine"])
def test_the_edits_remove_the_forged_own_results_the_mta_still_holds(outcome: str) -> None:
    """An MTA patched with the edits (the milter) holds the message as it arrived: the
    forged fields preparing removed must be deleted there too, also from a held message."""
    forged = (b"Authentication-Results: gw.test; dkim=pass\r\n"
              b"Authentication-Results: other.test; spf=none\r\n"
              b"Authentication-Results: GW.test; dmarc=pass\r\n" + MESSAGE)

    @dataclass(frozen=True)
    class Hold:
        name: str = "hold"

        def apply(self, item: MailItem, ctx: Context) -> Outcome:
            return Outcome.quarantine()

    steps = (Edit("add-top"),) if outcome == "accept" else (Hold(),)
    result = run_session(forged, Envelope(), Pipeline(filters=steps), Context(), SETTINGS)
    assert result.action == outcome
    deleted = [e.name for e in result.edits.headers if e.kind is HeaderEditKind.DELETE]
    assert deleted == ["Authentication-Results"] * 2
    patched = result.edits.apply(field_pairs(parse(forged)))
    assert [v for n, v in patched if n.lower() == "authentication-results"] == [
        b" other.test; spf=none"]


def test_finish_keeps_the_prepared_bytes_for_quarantine_only() -> None:
    item = prepare(MESSAGE, Envelope(), SETTINGS)
    held = finish(item, Outcome.quarantine(), SETTINGS)
    assert (held.action, held.data) == (Action.QUARANTINE, MESSAGE)
    refused = finish(item, Outcome.reject(), SETTINGS)
    assert (refused.action, refused.data) == (Action.REJECT, None)


def test_run_session_turns_a_bug_into_tempfail() -> None:
    class Broken:
        name = "broken"

        def apply(self, item: MailItem, ctx: Context) -> MailItem:
            raise KeyError("bug")

    result = run_session(MESSAGE, Envelope(), Broken(), Context(), SETTINGS)
    assert (result.action, result.smtp_reply.status) == (Action.TEMPFAIL, "4.3.0")


def test_diff_of_identical_trees_is_empty() -> None:
    message = parse(MESSAGE)
    assert diff_messages(message, message).unchanged


@pytest.mark.parametrize(("new_body", "replaced"), [
    (b"Hello.\r\n", False), (b"Hellp.\r\n", True), (b"Hello.\r\n\r\n", True), (b"", True),
])
def test_a_body_written_again_is_replaced_only_when_its_bytes_differ(
        new_body: bytes, replaced: bool) -> None:
    before = parse(MESSAGE)
    after = before.replace_part((), before.root.with_leaf_body(new_body, b"\r\n"))
    assert diff_messages(before, after).body == (new_body if replaced else None)


def test_a_multipart_body_written_again_is_compared_whole() -> None:
    before = parse(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n"
                   b"--b\r\n\r\ntwo\r\n--b--\r\n")
    same = before.replace_part((0,), before.part((0,)).with_leaf_body(b"one", b"\r\n"))
    other = before.replace_part((0,), before.part((0,)).with_leaf_body(b"onf", b"\r\n"))
    assert diff_messages(before, same).body is None
    assert diff_messages(before, other).body == other.root.body_bytes()


_NAMES = ("X-Internal", "x-internal", "Received", "X-Mailroute-Mark", "Comments")


@st.composite
def _headers(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """Two header blocks: one, and a rewrite of it (fields kept, dropped, changed, added)."""
    count = draw(st.integers(1, 8))
    old = [(draw(st.sampled_from(_NAMES)), f"v{i}") for i in range(count)]
    new: list[tuple[str, str]] = []
    for name, value in old:
        fate = draw(st.sampled_from(["keep", "keep", "drop", "change"]))
        if fate == "keep":
            new.append((name, value))
        elif fate == "change":
            new.append((name, value + "-changed"))
    for k in range(draw(st.integers(0, 3))):
        spot = draw(st.integers(0, len(new)))
        new.insert(spot, (draw(st.sampled_from(_NAMES)), f"n{k}"))

    def block(fields: list[tuple[str, str]]) -> bytes:
        return b"".join(f"{n}: {v}\r\n".encode() for n, v in fields) + b"\r\nbody\r\n"

    return block(old), block(new)


@settings(max_examples=400, deadline=None)
@given(_headers())
def test_header_edits_hold_whether_the_mta_removes_deleted_fields_or_keeps_them(
        pair: tuple[bytes, bytes]) -> None:
    """Postfix removes a deleted field; Sendmail keeps it, unseen, in the occurrences and
    positions it counts (found through a real Sendmail: of four X-Internal fields only the
    first was deleted). The same edits must give the new header under both."""
    before, after = parse(pair[0]), parse(pair[1])
    edits = diff_messages(before, after)
    wanted = [(name.lower(), value) for name, value in field_pairs(after)]
    for keep_deleted in (False, True):   # a change keeps the name as the MTA wrote it
        patched = edits.apply(field_pairs(before), keep_deleted=keep_deleted)
        assert [(name.lower(), value) for name, value in patched] == wanted
