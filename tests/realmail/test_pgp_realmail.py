"""Thunderbird's PGP/MIME mail with protected headers (tests/realmail/README.md).

Thunderbird repeats From, To, Message-ID and Subject inside the encrypted (or signed) part
(``protected-headers="v1"``) and sends ``Subject: ...`` outside. gpg decrypts these with
DECRYPTION_OKAY and GOODMDC; mailroute must then give one set of header fields, the inner
ones, and say which were protected.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroute import Context
from mailroute.filters.pgp import PgpDecryptFilter
from mailroute.item import Envelope, MailItem
from mailroute.mime import Message, parse
from mailroute.pgp import KeyStore
from tests.pgp.gpgtool import armored_message, gpg, kill_agent, new_home

pytestmark = pytest.mark.interop

DATA = Path(__file__).parent / "pgp"
UNSIGNED = DATA / "unsigned-encrypted-to-0xf231550c4f47e38e-from-0xfbfcc82a015e7330.eml"
SIGNED = DATA / "signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e.eml"
CLEAR = DATA / "signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted.eml"
USER_FIELDS = ("From", "To", "Subject", "Message-ID", "Date")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Alice's secret key and Bob's public key, as Thunderbird's tests have them."""
    path = new_home(tmp_path_factory.mktemp("realmail-pgp") / "home")
    for key in ("alice@openpgp.example-0xf231550c4f47e38e-secret.asc",
                "bob@openpgp.example-0xfbfcc82a015e7330-pub.asc"):
        assert gpg(path, "--import", str(DATA / key)).returncode == 0
    yield path
    kill_agent(path)


def mailroute(*args: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    code = "import sys; from mailroute.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], input=data,
                          capture_output=True, timeout=120, check=False)


def _single_fields(message: Message) -> dict[str, str]:
    for name in USER_FIELDS:
        assert message.headers.count(name) == 1, name
    return {name: message.headers.value(name) or "" for name in USER_FIELDS}


@pytest.mark.parametrize(("source", "subject"), [(UNSIGNED, "Unsigned Encrypted"),
                                                 (SIGNED, "Signed Encrypted")])
def test_decrypts_to_one_set_of_the_inner_fields(home: Path, source: Path,
                                                 subject: str) -> None:
    raw = source.read_bytes()
    oracle = gpg(home, "--decrypt", data=armored_message(raw))
    assert oracle.has("DECRYPTION_OKAY")
    assert oracle.has("GOODMDC")
    done = mailroute("pgp", "decrypt", "--gnupghome", str(home), data=raw)
    assert done.returncode == 0, done.stderr
    fields = _single_fields(parse(done.stdout))
    assert parse(raw).headers.value("Subject") == "..."  # obscured outside
    assert fields["Subject"] == subject
    assert fields["From"] == "Bob Babbage <bob@openpgp.example>"
    assert fields["To"] == "alice@openpgp.example"
    assert b"Sundays are nothing without callaloo." in done.stdout


def test_signed_and_encrypted_verifies_against_the_inner_from(home: Path) -> None:
    done = mailroute("pgp", "decrypt", "--gnupghome", str(home), data=SIGNED.read_bytes())
    result = parse(done.stdout)
    assert "pgp=pass" in (result.headers.value("Authentication-Results") or "")
    assert "header.from=bob@openpgp.example" in (
        result.headers.value("Authentication-Results") or "")


def test_decrypt_filter_reports_the_protected_fields(home: Path) -> None:
    item = MailItem(envelope=Envelope(mail_from="bob@openpgp.example",
                                      rcpt_to=("alice@openpgp.example",)),
                    message=parse(UNSIGNED.read_bytes()))
    out = PgpDecryptFilter(KeyStore(home)).apply(item, Context())
    assert out.annotation("pgp-decrypt.protected-headers") == (
        "fields=from,message-id,subject,to; outer-differs=subject")


def test_verify_reports_protected_fields_and_outer_changes(home: Path) -> None:
    raw = CLEAR.read_bytes()
    done = mailroute("pgp", "verify", "--gnupghome", str(home), "--json", data=raw)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] is True
    assert report["protected_headers"] == {"fields": ["from", "message-id", "subject", "to"],
                                           "outer_differs": [],
                                           "legacy_display_removed": False}
    # the outer Subject changed on the way: the signature still holds, the change is told
    changed = raw.replace(b"Subject: Signed Unencrypted", b"Subject: [list] changed", 1)
    assert changed != raw
    done = mailroute("pgp", "verify", "--gnupghome", str(home), "--json", data=changed)
    report = json.loads(done.stdout)
    assert report["valid"] is True
    assert report["protected_headers"]["outer_differs"] == ["subject"]
    text = mailroute("pgp", "verify", "--gnupghome", str(home), data=changed)
    assert b"protected headers: fields=from,message-id,subject,to; outer-differs=subject" in (
        text.stderr)
