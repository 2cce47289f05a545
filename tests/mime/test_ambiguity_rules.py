"""One test per ambiguity or structural-doubt rule of the scanner, named for its reason.

docs/errors.md ("Why a message is refused or left unedited") lists the same rules with their
sources. Where the reason is a parser differential, the test shows it with Python's email
package (the reader most gateway tooling is built on) next to mailroute's verdict.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from mailroute import Pipeline
from mailroute.dkim import parse_signing_key, sign_message
from mailroute.dkim.sign import signed_header_data
from mailroute.errors import AmbiguousMessageError
from mailroute.mime import DefectKind, parse
from mailroute.mime.defects import AMBIGUOUS_DEFECTS, STRUCTURAL_DEFECTS
from tests.disclaimer.conftest import make_filter
from tests.disclaimer.helpers import MARKER, body_texts

TEXT = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nhello\r\n"
MIXED_BODY = b"\r\n--b\r\n" + TEXT + b"--b--\r\n"


def stdlib(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def refused(data: bytes) -> DefectKind:
    """The ambiguity the default policy refuses ``data`` for (and the message itself is kept
    byte for byte under ``record``)."""
    with pytest.raises(AmbiguousMessageError):
        parse(data)
    recorded = parse(data, on_ambiguity="record")
    assert recorded.root.to_bytes() == data
    (kind,) = {d.kind for d in recorded.defects if d.ambiguous}
    return kind


def passes_unedited(data: bytes, tmp_path: Path) -> None:
    """Accepted by an empty policy and by a disclaimer, byte for byte both times."""
    for filters in ((), (make_filter(tmp_path, html=None, var=["greeting=Regards"]),)):
        result = Pipeline(filters=filters).process(data)
        assert result.action == "accept", result.reply
        assert result.data == data


def accepted_identically(data: bytes) -> None:
    result = Pipeline(filters=()).process(data)
    assert result.action == "accept", result.reply
    assert result.data == data


# -- refused: two readings of who sent it, what it says or how it is split ----------------

def test_rejects_two_from_fields_because_display_differs_between_clients() -> None:
    data = (b"From: ceo@victim.example\r\nTo: a@example.net\r\n"
            b"From: attacker@evil.example\r\n\r\nbody")
    assert refused(data) is DefectKind.DUPLICATE_SINGLETON_FIELD
    # The stdlib (and clients that show the first field) see the CEO; DKIM selects fields
    # from the bottom (RFC 6376 5.4.2), so a signature over "from" covers the other one.
    assert str(stdlib(data)["From"]) == "ceo@victim.example"
    fields = parse(data, on_ambiguity="record").headers
    assert b"attacker@evil.example" in signed_header_data(fields, ["from"], relaxed=True)


@pytest.mark.parametrize("name", [b"Sender", b"Date", b"Subject", b"Message-ID"])
def test_rejects_a_second_singleton_because_dkim_covers_the_last_and_readers_show_the_first(
        name: bytes) -> None:
    data = name + b": shown\r\nFrom: a@example.net\r\n" + name + b": signed\r\n\r\nbody"
    assert refused(data) is DefectKind.DUPLICATE_SINGLETON_FIELD
    fields = parse(data, on_ambiguity="record").headers
    assert b"signed" in signed_header_data(fields, [name.decode()], relaxed=True)
    assert b"shown" not in signed_header_data(fields, [name.decode()], relaxed=True)


def test_rejects_two_content_types_because_the_stdlib_hides_the_multipart() -> None:
    data = (b"From: a@example.net\r\nContent-Type: text/plain\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n" + MIXED_BODY)
    assert refused(data) is DefectKind.DUPLICATE_CONTENT_FIELD
    assert not stdlib(data).is_multipart()  # the first wins there, without a defect


def test_rejects_two_transfer_encodings_because_readers_decode_different_bytes() -> None:
    data = (b"From: a@example.net\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n\r\naGk=\r\n")
    assert refused(data) is DefectKind.DUPLICATE_CONTENT_FIELD
    assert stdlib(data).get_content() == "hi"  # base64 (the first); a last-wins reader: "aGk="


def test_rejects_space_before_colon_on_from_because_the_stdlib_drops_the_field() -> None:
    # "Composition Kills" (Chen, Paxson, Jiang, USENIX Security 2020): a From the
    # authentication check does not see, which a client shows.
    data = b"To: a@example.net\r\nFrom : ceo@victim.example\r\n\r\nbody"
    assert refused(data) is DefectKind.SPACE_BEFORE_COLON
    assert stdlib(data)["From"] is None


@pytest.mark.parametrize("name", [b"Sender", b"Reply-To", b"To", b"Cc", b"Content-Type",
                                  b"Content-Transfer-Encoding", b"MIME-Version",
                                  b"DKIM-Signature", b"Authentication-Results"])
def test_rejects_space_before_colon_on_identity_structure_and_authentication_fields(
        name: bytes) -> None:
    data = b"From: a@example.net\r\n" + name + b" : x\r\n\r\nbody"
    assert refused(data) is DefectKind.SPACE_BEFORE_COLON


def test_rejects_a_from_space_colon_first_line_because_the_stdlib_takes_it_for_mbox() -> None:
    data = b"From : ceo@victim.example\r\nTo: a@example.net\r\n\r\nbody"
    assert refused(data) is DefectKind.SPACE_BEFORE_COLON


def test_rejects_control_characters_in_a_field_name_because_readers_end_the_header_there(
) -> None:
    # RFC 5322 2.2: field names are printable US-ASCII. The stdlib ends the header block at
    # such a line (everything after it is body); a reader that drops controls sees "From".
    data = b"Subject: x\r\nFr\x01om: ceo@victim.example\r\nTo: a@example.net\r\n\r\nbody"
    assert refused(data) is DefectKind.INVALID_FIELD_NAME
    assert stdlib(data).keys() == ["Subject"]


def test_rejects_bare_cr_in_the_header_because_the_stdlib_makes_a_new_field_of_it() -> None:
    # measured: the stdlib splits at the bare CR and gets a Bcc field; dkimpy keeps it inside
    # the Subject value (notes: bad-input 2.8); the SMTP smuggling class of line-end tricks
    data = b"Subject: a\rBcc: victim@example.net\r\nFrom: a@example.net\r\n\r\nbody"
    assert refused(data) is DefectKind.BARE_CR_IN_HEADER
    assert stdlib(data)["Bcc"] is not None


def test_rejects_two_different_boundaries_because_scanner_and_client_split_differently(
) -> None:
    # CVE-2024-28054 (amavis via MIME-tools): the scanner took one boundary, the client the
    # other, and the attachment went unscanned. The stdlib takes the first without a defect.
    data = (b'Content-Type: multipart/mixed; boundary="b"; boundary="c"\r\n' + MIXED_BODY)
    assert refused(data) is DefectKind.DUPLICATE_PARAMETER
    assert stdlib(data).get_boundary() == "b"


@pytest.mark.parametrize(("field", "value"), [
    (b"Content-Type", b"text/plain; charset=utf-8; charset=iso-8859-1"),
    (b"Content-Type", b'application/pdf; name="invoice.pdf"; name="invoice.exe"'),
    (b"Content-Type", b'multipart/signed; protocol="application/pkcs7-signature"; '
                      b'protocol="application/pgp-signature"; micalg=sha-256; boundary=b'),
])
def test_rejects_two_different_decisive_parameters_because_readers_act_on_different_values(
        field: bytes, value: bytes) -> None:
    # first wins in the stdlib (measured), the last in other readers: different text, a
    # different file name for the scanner and for the user, a different signature protocol
    data = field + b": " + value + b"\r\n\r\nx"
    assert refused(data) is DefectKind.DUPLICATE_PARAMETER


def test_rejects_an_rfc2231_boundary_beside_another_plain_one_because_the_stdlib_finds_no_parts(
) -> None:
    # RFC 2231 readers join the sections ("AB"), others take the plain "b", and the stdlib
    # a third reading (the first section only, measured: no parts found)
    data = (b'Content-Type: multipart/mixed; boundary*0="A"; boundary*1="B"; boundary="b"\r\n'
            + MIXED_BODY)
    assert refused(data) is DefectKind.CONFLICTING_PARAMETER
    assert stdlib(data).get_boundary() not in ("AB", "b")


AMBIGUOUS_SAMPLES = {
    DefectKind.DUPLICATE_SINGLETON_FIELD: b"From: a@example.net\r\nFrom: b@example.net\r\n",
    DefectKind.DUPLICATE_CONTENT_FIELD:
        b"From: a@example.net\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n",
    DefectKind.SPACE_BEFORE_COLON: b"From: a@example.net\r\nTo : b@example.net\r\n",
    DefectKind.INVALID_FIELD_NAME: b"From: a@example.net\r\nX-\x01: 1\r\n",
    DefectKind.BARE_CR_IN_HEADER: b"From: a@example.net\r\nSubject: a\rb\r\n",
    DefectKind.DUPLICATE_PARAMETER:
        b"From: a@example.net\r\nContent-Type: text/plain; charset=utf-8; charset=koi8-r\r\n",
    DefectKind.CONFLICTING_PARAMETER:
        b"From: a@example.net\r\nContent-Type: text/plain; charset=utf-8; charset*=koi8-r\r\n",
}


@pytest.mark.parametrize("kind", sorted(AMBIGUOUS_DEFECTS), ids=str)
def test_refuses_to_dkim_sign_an_ambiguity_because_a_signature_would_vouch_for_one_reading(
        kind: DefectKind) -> None:
    # recorded instead of refused ([parser] on_ambiguity = "record"), it is still not signed
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    data = AMBIGUOUS_SAMPLES[kind] + b"\r\nbody\r\n"
    message = parse(data, on_ambiguity="record")
    assert kind in {d.kind for d in message.defects}
    with pytest.raises(AmbiguousMessageError):
        sign_message(message, parse_signing_key(pem), domain="example.net", selector="s",
                     timestamp=1_700_000_000)


# -- accepted: legal or harmless shapes readers agree on ----------------------------------

@pytest.mark.parametrize("name", [b"Subject", b"X-Priority", b"Thread-Topic", b"Keywords"])
def test_accepts_space_before_colon_on_other_fields_because_it_is_legal_obsolete_syntax(
        name: bytes) -> None:
    # RFC 5322 4.5.3 (obs-optional); RFC 5322 4: obsolete syntax MUST be accepted. No
    # identity, structure or authentication result depends on these fields.
    data = b"From: a@example.net\r\n" + name + b" : Hello\r\nTo: b@example.net\r\n\r\nbody"
    accepted_identically(data)
    message = parse(data)
    assert message.headers.value(name.decode()) == "Hello"
    assert DefectKind.OBSOLETE_SPACE_BEFORE_COLON in {d.kind for d in message.defects}


@pytest.mark.parametrize("value", [
    b'text/plain; charset=us-ascii; comment="one"; comment="two"',   # harmless parameter
    b'text/plain; format=flowed; x-mac-type="54455854"; x-mac-type="54455854"',
    b"text/plain; charset=utf-8; charset=utf-8",                     # the same value twice
    b"text/plain; charset=utf-8; charset=UTF-8",                     # values equal as read
])
def test_accepts_a_repeated_parameter_because_every_reader_reads_the_same_value(
        value: bytes, tmp_path: Path) -> None:
    data = b"From: a@example.net\r\nContent-Type: " + value + b"\r\n\r\nhello\r\n"
    accepted_identically(data)
    assert DefectKind.REPEATED_PARAMETER in {d.kind for d in parse(data).defects}


def test_accepts_the_same_boundary_twice_because_every_reader_splits_alike() -> None:
    data = b'Content-Type: multipart/mixed; boundary="b"; boundary="b"\r\n' + MIXED_BODY
    accepted_identically(data)
    assert len(parse(data).root.children) == 1


def test_accepts_an_rfc2231_file_name_beside_the_same_plain_one_because_both_agree() -> None:
    data = (b"Content-Type: text/plain; name=\"caf\xc3\xa9.txt\"; name*=utf-8''caf%C3%A9.txt"
            b"\r\n\r\nx")
    accepted_identically(data)
    assert parse(data).root.content_type.param("name") == "caf\u00e9.txt"


def test_reads_a_media_type_with_a_comment_as_rfc2045_allows_because_the_stdlib_does(
        tmp_path: Path) -> None:
    data = b"From: a@example.net\r\nContent-Type: multipart/mixed (a comment); boundary=b\r\n"
    data += MIXED_BODY
    assert stdlib(data).is_multipart()
    message = parse(data)
    assert message.root.is_multipart
    assert message.structurally_sound()
    out = Pipeline(filters=(make_filter(tmp_path, html=None, var=["greeting=Regards"]),)
                   ).process(data).data
    assert out is not None
    assert [MARKER in text for _, text in body_texts(out)] == [True]


# -- left unedited: the structure depends on the reader ----------------------------------

@pytest.mark.parametrize("value", [
    b'multipart/mixed\tboundary="b"',      # issue 13: no semicolon (tab)
    b'multipart/mixed boundary="b"',       # no semicolon (space)
    b'multipart/mixed, boundary="b"',      # a comma for the semicolon
    b'"multipart/mixed"; boundary="b"',    # a quoted media type
    b'multipart /mixed; boundary="b"',     # white space inside the media type
])
def test_leaves_a_content_type_lenient_readers_take_for_multipart_unedited(
        value: bytes, tmp_path: Path) -> None:
    # A strict reading (mailroute's, the stdlib's) finds no multipart here; Thunderbird- and
    # MimeKit-style lenient readers do. A disclaimer that quoted-printable-encodes the body
    # as text would break the attachments those readers show.
    data = b"From: a@example.net\r\nContent-Type: " + value + b"\r\n" + MIXED_BODY
    assert not stdlib(data).is_multipart()
    message = parse(data)
    assert DefectKind.READER_DEPENDENT_CONTENT_FIELD in {d.kind for d in message.defects}
    assert not message.structurally_sound()
    passes_unedited(data, tmp_path)


def test_leaves_parameters_without_semicolons_unedited_because_readers_find_other_charsets(
        tmp_path: Path) -> None:
    # The stdlib drops the charset (measured); a lenient reader finds charset=utf-8. Decoded
    # as windows-1252 and rewritten as UTF-8, the text would be garbled for the latter.
    data = (b"From: a@example.net\r\nContent-Type: text/plain; format=flowed charset=utf-8"
            b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n")
    assert stdlib(data).get_content_charset() is None
    assert DefectKind.READER_DEPENDENT_CONTENT_FIELD in {d.kind for d in parse(data).defects}
    passes_unedited(data, tmp_path)


def test_leaves_a_disposition_without_semicolon_unedited_because_clients_show_an_attachment(
        tmp_path: Path) -> None:
    # The stdlib sees neither "attachment" nor a file name; a lenient client shows notes.txt
    # as an attachment, which a footer must not change.
    part = (b"Content-Type: text/plain\r\nContent-Disposition: attachment filename=\"notes.txt\""
            b"\r\n\r\nfile text\r\n")
    data = (b"From: a@example.net\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            + part + b"--b--\r\n")
    assert next(stdlib(data).iter_parts()).get_filename() is None
    message = parse(data)
    assert [d.path for d in message.defects
            if d.kind is DefectKind.READER_DEPENDENT_CONTENT_FIELD] == [(0,)]
    passes_unedited(data, tmp_path)


STRUCTURAL_SAMPLES = {
    DefectKind.NO_START_BOUNDARY:
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\nno delimiter line\r\n",
    DefectKind.MISSING_CLOSE_BOUNDARY:
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + TEXT,
    DefectKind.MULTIPART_WITHOUT_BOUNDARY: b"Content-Type: multipart/mixed\r\n\r\nbody\r\n",
    DefectKind.INVALID_BOUNDARY:
        b'Content-Type: multipart/mixed; boundary="b "\r\n\r\n--b \r\n' + TEXT + b"--b --\r\n",
    DefectKind.BOUNDARY_IN_EPILOGUE:
        b"Content-Type: multipart/mixed; boundary=b\r\n" + MIXED_BODY + b"--b\r\n" + TEXT,
    DefectKind.ENCODED_MULTIPART: (b"Content-Type: multipart/mixed; boundary=b\r\n"
                                   b"Content-Transfer-Encoding: base64\r\n" + MIXED_BODY),
    DefectKind.MISSING_HEADER_SEPARATOR:
        b"Content-Type: text/plain\r\nnot a field\r\nX-After: 1\r\n\r\nhello\r\n",
    DefectKind.NESTED_BOUNDARY_REUSE: (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n" + TEXT
        + b"--b--\r\n--b--\r\n"),
    DefectKind.READER_DEPENDENT_CONTENT_FIELD:
        b'Content-Type: multipart/mixed boundary="b"\r\n' + MIXED_BODY,
}


@pytest.mark.parametrize("kind", sorted(STRUCTURAL_DEFECTS), ids=str)
def test_structural_doubt_blocks_every_edit_because_readers_find_different_parts(
        kind: DefectKind, tmp_path: Path) -> None:
    data = b"From: a@example.net\r\n" + STRUCTURAL_SAMPLES[kind]
    message = parse(data)
    assert kind in {d.kind for d in message.defects}
    assert not message.structurally_sound()
    passes_unedited(data, tmp_path)
