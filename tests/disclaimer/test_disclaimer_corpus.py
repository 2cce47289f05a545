"""The whole shared corpus through the filter, checked with the stdlib's parser.

Every body gets the disclaimer exactly once with every character right, the original text
stays as it was, and every entity the filter did not edit keeps its exact bytes.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroute.filters.disclaimer import DisclaimerFilter
from mailroute.mime import Message, parse
from mailroute.mime import Path as MimePath
from tests.disclaimer.conftest import LATIN, WIDE, Corpus, make_filter
from tests.disclaimer.helpers import MARKER, RENDERED_TEXT, body_texts, run, stdlib

EDITABLE = ("plain", "html", "alternative", "attachments", "related", "reply", "apple",
            "text-attach")
_CONTINUATION = (b"=8", b"=9", b"=A", b"=B")
_FRAGMENT = re.compile(r'<div data-mailroute-disclaimer="[0-9a-f]{16}">(.*?)</div>', re.S)


def _leaves(message: Message) -> dict[MimePath, bytes]:
    return {path: part.to_bytes() for path, part in message.walk() if not part.is_multipart}


def _html_expected(greeting: str) -> str:
    return (f'<p style="color:#555">{MARKER}<br>{greeting}</p>')


def _check_text(before: str, after: str, greeting: str) -> None:
    rendered = RENDERED_TEXT.format(greeting=greeting)
    assert after.count(MARKER) == 1
    head = before if before.endswith("\n") else before + "\n"
    assert after == head + "\n" + rendered


def _check_html(before: str, after: str, greeting: str, has_closing_body: bool) -> None:
    found = list(_FRAGMENT.finditer(after))
    assert len(found) == 1
    assert found[0].group(1) == _html_expected(greeting)
    assert after.count(MARKER) == 1
    rest = after[:found[0].start()] + after[found[0].end():]
    normalised = re.sub(r"charset=(iso-8859-1|windows-1252)", "charset=utf-8", before)
    assert rest in (before, normalised)
    tail = after[found[0].end():]
    if has_closing_body:
        assert tail.lower().startswith("</body>")
    else:   # at the end, before the final line breaks: the body still ends with them
        assert tail == before[len(before.rstrip("\r\n")):]


def _edited(corpus: Corpus, step: DisclaimerFilter) -> Iterator[
        tuple[dict[str, object], bytes, bytes]]:
    """(manifest entry, input, output) for every message whose bodies may be edited."""
    for entry in corpus.entries:
        if entry["category"] in EDITABLE:
            data = corpus.data(entry)
            out = run(step, data).data
            assert out is not None
            yield entry, data, out


@pytest.mark.parametrize("greeting", [WIDE, LATIN], ids=["wide", "latin"])
def test_every_body_gets_the_disclaimer_once(corpus: Corpus, tmp_path: Path,
                                             greeting: str) -> None:
    step = make_filter(tmp_path, var=[f"greeting={greeting}"])
    checked = 0
    for entry, data, out in _edited(corpus, step):
        if entry.get("already_has_disclaimer"):
            assert out == data, entry["file"]
            continue
        before, after = body_texts(data), body_texts(out)
        assert [t for t, _ in before] == [t for t, _ in after], entry["file"]
        apple = entry["category"] == "apple"
        html_seen = 0
        for (kind, old), (_, new) in zip(before, after, strict=True):
            if kind == "text/plain":
                _check_text(old, new, greeting)
            else:
                html_seen += 1
                if apple and html_seen == 1:
                    assert new == old, "the first Apple fragment stays as it was"
                    continue
                _check_html(old, new, greeting, bool(entry.get("has_closing_body", True)))
            checked += 1
    assert checked > 250


@pytest.mark.parametrize("greeting", [WIDE, LATIN], ids=["wide", "latin"])
def test_untouched_entities_keep_their_bytes(corpus: Corpus, tmp_path: Path,
                                             greeting: str) -> None:
    step = make_filter(tmp_path, var=[f"greeting={greeting}"])
    for entry, data, out in _edited(corpus, step):
        original, edited = parse(data), parse(out)
        assert [f.raw for f in original.headers if not f.lower_name.startswith("content-")] \
            == [f.raw for f in edited.headers if not f.lower_name.startswith("content-")]
        old_leaves, new_leaves = _leaves(original), _leaves(edited)
        assert old_leaves.keys() == new_leaves.keys()
        changed = {p for p in old_leaves if old_leaves[p] != new_leaves[p]}
        for path in changed:
            part = original.part(path)
            assert part.mime_type in ("text/plain", "text/html"), entry["file"]
            assert not part.is_attachment, entry["file"]
            if edited.part(path).transfer_encoding == "quoted-printable" and \
                    edited.part(path).charset == "utf-8":
                before = original.part(path).body_bytes().split(b"\r\n")
                lines = edited.part(path).body_bytes().split(b"\r\n")
                kept = next((i for i, (a, b) in enumerate(zip(before, lines, strict=False))
                             if a != b), min(len(before), len(lines)))
                for line, following in itertools.pairwise(lines[max(0, kept - 1):]):
                    # no new soft break cuts a UTF-8 character (alterMIME#12)
                    assert not (line.endswith(b"=") and following[:2] in _CONTINUATION)
        for path, raw in old_leaves.items():
            part = original.part(path)
            if part.is_attachment or not part.mime_type.startswith("text/"):
                assert new_leaves[path] == raw, (entry["file"], path)


def test_charsets_kept_when_the_disclaimer_fits(corpus: Corpus, tmp_path: Path) -> None:
    latin = make_filter(tmp_path, var=[f"greeting={LATIN}"])
    wide = make_filter(tmp_path, var=[f"greeting={WIDE}"])
    seen = set()
    for entry in corpus.entries:
        if entry["category"] not in ("plain", "alternative") or entry.get("charset") not in (
                "iso-8859-1", "windows-1252"):
            continue
        data = corpus.data(entry)
        charset = str(entry["charset"])
        for part in stdlib(run(latin, data).data or b"").walk():
            if not part.is_multipart():
                assert part.get_content_charset() == charset
        for part in stdlib(run(wide, data).data or b"").walk():
            if not part.is_multipart():
                assert part.get_content_charset() == "utf-8"
        seen.add(charset)
    assert seen == {"iso-8859-1", "windows-1252"}


def test_transfer_encodings_are_kept(corpus: Corpus, wide_filter: DisclaimerFilter) -> None:
    seen = set()
    for entry in corpus.entries:
        if entry["category"] not in ("plain", "alternative"):
            continue
        data = corpus.data(entry)
        out = run(wide_filter, data).data or b""
        cte = str(entry["cte"])
        longest = max(len(line) for line in data.split(b"\r\n"))
        # 7bit cannot carry the non-ASCII footer. A body switched to UTF-8 is written anew,
        # and 8bit lines over 998 octets never were valid; a body that keeps its charset
        # keeps its bytes up to the footer, and its encoding.
        expected = cte
        if cte == "7bit" or (cte == "8bit" and entry["charset"] != "utf-8" and longest > 998):
            expected = "quoted-printable"
        for part in stdlib(out).walk():
            if not part.is_multipart():
                assert part.get("Content-Transfer-Encoding", "7bit").lower() == expected
        seen.add(cte)
    assert seen == {"7bit", "8bit", "quoted-printable", "base64"}


def test_reply_carrying_the_disclaimer_gets_no_second_copy(corpus: Corpus,
                                                          wide_filter: DisclaimerFilter) -> None:
    replies = [e for e in corpus.entries if e["category"] == "reply"]
    carrying = [e for e in replies if e["already_has_disclaimer"]]
    assert carrying
    for entry in replies:
        data = corpus.data(entry)
        result = run(wide_filter, data)
        out = result.data or b""
        for _, text in body_texts(out):
            assert text.count(MARKER) == 1, entry["file"]
        if entry["already_has_disclaimer"]:
            assert result.item is not None
            assert result.item.annotation("disclaimer") == "inserted=0 present=2"


def test_filter_is_idempotent(corpus: Corpus, wide_filter: DisclaimerFilter) -> None:
    for entry in corpus.entries:
        once = run(wide_filter, corpus.data(entry)).data or b""
        assert run(wide_filter, once).data == once, entry["file"]


def test_invites_untouched_by_default(corpus: Corpus, wide_filter: DisclaimerFilter) -> None:
    invites = [e for e in corpus.entries if e["category"] == "calendar"]
    assert invites
    for entry in invites:
        data = corpus.data(entry)
        assert run(wide_filter, data).data == data


def test_invite_bodies_on_request_keep_the_calendar_part(corpus: Corpus,
                                                         tmp_path: Path) -> None:
    step = make_filter(tmp_path, var=[f"greeting={WIDE}"], invites="bodies")
    for entry in (e for e in corpus.entries if e["category"] == "calendar"):
        data = corpus.data(entry)
        out = run(step, data).data or b""
        for _, text in body_texts(out):
            assert text.count(MARKER) == 1
        original, edited = parse(data), parse(out)
        calendars = [p for p, part in original.walk() if part.mime_type == "text/calendar"]
        assert calendars
        for path in calendars:
            assert edited.part(path).to_bytes() == original.part(path).to_bytes()


def test_signed_shapes_are_wrapped_byte_for_byte(corpus: Corpus,
                                                 wide_filter: DisclaimerFilter) -> None:
    shapes = [e for e in corpus.entries if e["category"] == "signed-shape"]
    assert shapes
    for entry in shapes:
        data = corpus.data(entry)
        out = run(wide_filter, data).data or b""
        original, edited = parse(data), parse(out)
        assert edited.root.mime_type == "multipart/mixed"
        inner = edited.part((0,))
        content = [f.raw for f in original.headers if f.lower_name.startswith("content-")]
        assert [f.raw for f in inner.headers] == content
        assert inner.body_bytes() == original.root.body_bytes()
        footer = stdlib(edited.part((1,)).to_bytes()).get_content()
        assert footer.replace("\r\n", "\n") == RENDERED_TEXT.format(greeting=WIDE)


def test_html5lib_everywhere_gives_the_same_messages(corpus: Corpus, tmp_path: Path) -> None:
    auto = make_filter(tmp_path, var=[f"greeting={WIDE}"])
    forced = make_filter(tmp_path, var=[f"greeting={WIDE}"], html_parser="html5lib")
    compared = 0
    for entry in corpus.entries:
        data = corpus.data(entry)
        scanned, parsed = run(auto, data), run(forced, data)
        assert scanned.item is not None
        assert parsed.item is not None
        summary = parsed.item.annotation("disclaimer") or ""
        assert scanned.item.annotation("disclaimer") == summary
        if "wrapped" not in summary:  # a wrapper's boundary is random
            assert scanned.data == parsed.data, entry["file"]
        methods = parsed.item.annotation("disclaimer.html-locator")
        if methods:
            assert set(methods.split(",")) == {"html5lib"}
            compared += 1
    assert compared > 100
