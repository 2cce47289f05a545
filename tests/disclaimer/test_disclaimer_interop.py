"""Signed mail through the filter, verified by the real tools afterwards.

openssl and gpg must be installed (scripts/setup-system): a missing tool fails these tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroute.filters.disclaimer import DisclaimerFilter
from mailroute.mime import parse
from tests.disclaimer.conftest import WIDE
from tests.disclaimer.helpers import MARKER, RENDERED_TEXT, run, stdlib

pytestmark = pytest.mark.interop

CONTENT = (b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
           b"Sehr geehrte Damen und Herren,\r\n"
           b"anbei das Angebot. Gr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n")


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (scripts/setup-system installs it)"
    return path


def _sh(*args: str, cwd: Path, env: dict[str, str] | None = None,
        data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), cwd=cwd, env=env, input=data, capture_output=True,
                          timeout=120, check=False)


def _smime_signed(folder: Path) -> bytes:
    openssl = _tool("openssl")
    made = _sh(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
               "-subj", "/CN=Anna Schmidt/emailAddress=anna.schmidt@corp.example",
               "-addext", "subjectAltName=email:anna.schmidt@corp.example",
               "-keyout", "key.pem", "-out", "cert.pem", cwd=folder)
    assert made.returncode == 0, made.stderr
    (folder / "content.eml").write_bytes(CONTENT)
    signed = _sh(openssl, "smime", "-sign", "-in", "content.eml", "-signer", "cert.pem",
                 "-inkey", "key.pem", "-from", "anna.schmidt@corp.example",
                 "-to", "partner@partner.example", "-subject", "Angebot", "-out", "signed.eml",
                 cwd=folder)
    assert signed.returncode == 0, signed.stderr
    return (folder / "signed.eml").read_bytes()


def _smime_verify(folder: Path, entity: bytes) -> subprocess.CompletedProcess[bytes]:
    (folder / "check.eml").write_bytes(entity)
    return _sh(_tool("openssl"), "smime", "-verify", "-in", "check.eml", "-CAfile", "cert.pem",
               "-purpose", "any", "-out", "verified.out", cwd=folder)


def test_openssl_signed_message_still_verifies(tmp_path: Path,
                                               wide_filter: DisclaimerFilter) -> None:
    signed = _smime_signed(tmp_path)
    assert _smime_verify(tmp_path, signed).returncode == 0
    out = run(wide_filter, signed).data
    assert out is not None
    edited = parse(out)
    assert edited.root.mime_type == "multipart/mixed"
    assert edited.headers.value("Subject") == "Angebot"
    assert edited.part((0,)).mime_type == "multipart/signed"
    inner = edited.part((0,)).to_bytes()
    checked = _smime_verify(tmp_path, inner)
    assert checked.returncode == 0, checked.stderr
    assert b"Verification successful" in checked.stderr
    footer = stdlib(edited.part((1,)).to_bytes()).get_content().replace("\r\n", "\n")
    assert footer == RENDERED_TEXT.format(greeting=WIDE)


def test_openssl_verify_notices_a_changed_entity(tmp_path: Path) -> None:
    signed = _smime_signed(tmp_path)
    tampered = signed.replace(b"Angebot. Gr", b"Angebot! Gr")
    assert tampered != signed
    assert _smime_verify(tmp_path, tampered).returncode != 0


@pytest.fixture
def gpg_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A throwaway GnuPG home with one signing key; its agent is stopped afterwards."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    _make_key(tmp_path, env)
    yield env
    _sh(_tool("gpgconf"), "--kill", "gpg-agent", cwd=tmp_path, env=env)


def _make_key(folder: Path, env: dict[str, str]) -> None:
    made = _sh(_tool("gpg"), "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
               "--quick-gen-key", "Anna Schmidt <anna.schmidt@corp.example>", "ed25519",
               "sign", "1d", cwd=folder, env=env)
    assert made.returncode == 0, made.stderr


def _pgp_signed(folder: Path, env: dict[str, str]) -> bytes:
    sig = _sh(_tool("gpg"), "--batch", "--armor", "--detach-sign", "--digest-algo", "SHA256",
              "--local-user", "anna.schmidt@corp.example", cwd=folder, env=env, data=CONTENT)
    assert sig.returncode == 0, sig.stderr
    boundary = b"=-pgp-test-boundary"
    return (b"From: Anna Schmidt <anna.schmidt@corp.example>\r\n"
            b"To: partner@partner.example\r\nSubject: Angebot\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/signed; micalg=pgp-sha256;\r\n'
            b' protocol="application/pgp-signature"; boundary="' + boundary + b'"\r\n\r\n'
            b"--" + boundary + b"\r\n" + CONTENT + b"\r\n--" + boundary + b"\r\n"
            b"Content-Type: application/pgp-signature; name=signature.asc\r\n\r\n"
            + sig.stdout.replace(b"\n", b"\r\n") + b"\r\n--" + boundary + b"--\r\n")


def _gpg_verify(folder: Path, env: dict[str, str], content: bytes,
                signature: bytes) -> subprocess.CompletedProcess[bytes]:
    (folder / "content.bin").write_bytes(content)
    (folder / "signature.asc").write_bytes(signature)
    return _sh(_tool("gpg"), "--batch", "--verify", "signature.asc", "content.bin",
               cwd=folder, env=env)


def test_gpg_signed_message_still_verifies(tmp_path: Path, gpg_env: dict[str, str],
                                           wide_filter: DisclaimerFilter) -> None:
    env = gpg_env
    signed = _pgp_signed(tmp_path, env)
    out = run(wide_filter, signed).data
    assert out is not None
    edited = parse(out)
    assert edited.root.mime_type == "multipart/mixed"
    entity = edited.part((0,))
    assert entity.mime_type == "multipart/signed"
    content, signature = entity.children
    assert content.to_bytes() == CONTENT
    checked = _gpg_verify(tmp_path, env, content.to_bytes(), signature.body_bytes())
    assert checked.returncode == 0, checked.stderr
    assert b"Good signature" in checked.stderr
    footer = stdlib(edited.part((1,)).to_bytes()).get_content()
    assert MARKER in footer
    assert WIDE in footer
    changed = _gpg_verify(tmp_path, env, content.to_bytes().replace(b"anbei", b"anbai"),
                          signature.body_bytes())
    assert changed.returncode != 0
