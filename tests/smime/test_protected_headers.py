"""S/MIME decryption shares the protected-header handling of PGP (mailroute.mime.protected):
an ``openssl smime -encrypt`` message whose entity repeats the header fields decrypts to one
set of fields, the inner ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute import Context, Pipeline
from mailroute.filters.smime import SmimeDecrypt
from mailroute.smime import Identity
from tests.smime.conftest import run
from tests.smime.pki import NOW, Pki

pytestmark = pytest.mark.interop

ENTITY = (b'Content-Type: text/plain; charset=utf-8; protected-headers="v1"\r\n'
          b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: Quarterly numbers\r\n"
          b"\r\nhello\r\n")


def test_decrypted_message_has_the_inner_subject_once(pki: Pki, tmp_path: Path) -> None:
    entity = tmp_path / "entity"
    entity.write_bytes(ENTITY)
    encrypted = run("openssl", "smime", "-encrypt", "-aes256", "-in", str(entity),
                    "-from", "alice@example.org", "-to", "bob@example.net", "-subject", "...",
                    str(pki.alice.cert_path)).stdout
    result = Pipeline(filters=(SmimeDecrypt((Identity(pki.alice.cert, pki.alice.rsa_key),)),)
                      ).process(encrypted, context=Context(clock=NOW.timestamp))
    assert result.item is not None
    headers = result.item.message.headers
    assert [f.value for f in headers.get_all("Subject")] == ["Quarterly numbers"]
    assert headers.count("From") == 1
    assert headers.count("To") == 1
    assert result.item.annotation("smime.protected-headers") == (
        "fields=from,subject,to; outer-differs=subject")


def test_fields_planted_inside_the_encryption_do_not_reach_the_output(
        pki: Pki, tmp_path: Path) -> None:
    """The crypto audit's message: a passing result of this gateway, a Received field and an
    author inside an unsigned ``openssl cms`` payload; the output has the gateway's own
    fields, one MIME-Version and the outer author."""
    entity = tmp_path / "entity"
    entity.write_bytes(ENTITY.replace(b"From: alice@example.org", b"From: ceo@corp.example")
                       .replace(b"\r\n\r\nhello", b"\r\nMIME-Version: 1.0\r\n"
                                b"Authentication-Results: mailroute; smime=pass\r\n"
                                b"Received: from forged by nowhere\r\n\r\nhello"))
    encrypted = run("openssl", "cms", "-encrypt", "-aes-256-gcm", "-in", str(entity),
                    "-from", "mallory@evil.example", "-to", "bob@example.net",
                    "-subject", "...", str(pki.alice.cert_path)).stdout
    result = Pipeline(filters=(SmimeDecrypt((Identity(pki.alice.cert, pki.alice.rsa_key),)),)
                      ).process(encrypted, context=Context(clock=NOW.timestamp))
    assert result.item is not None
    headers = result.item.message.headers
    assert [f.value for f in headers.get_all("From")] == ["mallory@evil.example"]
    assert headers.get("Authentication-Results") is None
    assert headers.get("Received") is None
    assert headers.count("MIME-Version") == 1
    assert headers.value("Subject") == "Quarterly numbers"
