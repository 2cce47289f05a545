"""``mailroute pgp sign|encrypt|decrypt|verify`` as a process: exit codes, stdout, stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pgp.gpgtool import armored_message, gpg, split_signed
from tests.pgp.messages import ENTITY, HEAD, PLAIN, from_bob
from tests.pgp.world import BOB_PASS, PgpWorld

pytestmark = pytest.mark.interop



def mailroute(*args: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    code = "import sys; from mailroute.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], input=data,
                          capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def passfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pass") / "bob.pass"
    path.write_text(BOB_PASS + "\n")
    path.chmod(0o600)
    return path


def test_sign_then_gpg_verifies_then_verify_json(pgp_world: PgpWorld, passfile: Path) -> None:
    home = str(pgp_world.gateway)
    signed = mailroute("pgp", "sign", "--gnupghome", home, "--signer", "bob@example.net",
                       "--passphrase-file", str(passfile), data=from_bob(PLAIN))
    assert signed.returncode == 0, signed.stderr
    body, sig = split_signed(signed.stdout)
    assert body == ENTITY
    sig_path = pgp_world.peer.parent / "cli.asc"
    sig_path.write_bytes(sig)
    assert gpg(pgp_world.peer, "--verify", str(sig_path), "-", data=body).has("VALIDSIG")
    checked = mailroute("pgp", "verify", "--gnupghome", home, "--json", data=signed.stdout)
    assert checked.returncode == 0
    report = json.loads(checked.stdout)
    assert report["valid"] is True
    (signer,) = report["signers"]
    assert signer["email"] == "bob@example.net"
    assert signer["fingerprint"] == pgp_world.bob
    assert signer["covers"] == "message"
    tampered = signed.stdout.replace(b"Hello Bob", b"Hello Rob")
    bad = mailroute("pgp", "verify", "--gnupghome", home, data=tampered)
    assert bad.returncode == 1
    assert bad.stdout == b""
    assert b"pgp invalid: bad" in bad.stderr


def test_encrypt_decrypt_round_trip(pgp_world: PgpWorld, passfile: Path) -> None:
    home = str(pgp_world.gateway)
    enc = mailroute("pgp", "encrypt", "--gnupghome", home, "--recipient", "alice@example.org",
                    "bob@example.net", "--sign-with", "bob@example.net", "--passphrase-file",
                    str(passfile), data=from_bob(PLAIN))
    assert enc.returncode == 0, enc.stderr
    assert b"multipart/encrypted" in enc.stdout
    assert b"this message is protected" not in enc.stdout
    dec = mailroute("pgp", "decrypt", "--gnupghome", home, data=enc.stdout)
    assert dec.returncode == 0, dec.stderr
    assert dec.stdout.endswith(from_bob(HEAD) + ENTITY)
    assert dec.stdout.startswith(b"Authentication-Results: mailroute; pgp=pass")


def test_encrypt_without_key_exits_69(pgp_world: PgpWorld) -> None:
    result = mailroute("pgp", "encrypt", "--gnupghome", str(pgp_world.gateway),
                       "--recipient", "nobody@example.com", data=PLAIN)
    assert result.returncode == 69
    assert result.stdout == b""
    assert result.stderr.startswith(b"5.7.1 ")


def test_decrypt_refuses_message_without_mdc(pgp_world: PgpWorld) -> None:
    legacy = gpg(pgp_world.peer, "--rfc2440", "--cipher-algo", "CAST5", "--encrypt", "--armor",
                 "-r", pgp_world.alice, data=ENTITY).stdout
    raw = HEAD + (b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
                  b'boundary="e"\r\n\r\n--e\r\nContent-Type: application/pgp-encrypted\r\n\r\n'
                  b"Version: 1\r\n\r\n--e\r\nContent-Type: application/octet-stream\r\n\r\n"
                  + legacy + b"\r\n--e--\r\n")
    assert armored_message(raw)
    result = mailroute("pgp", "decrypt", "--gnupghome", str(pgp_world.gateway), data=raw)
    assert result.returncode != 0
    assert result.stdout == b""
    assert result.stderr.startswith(b"5.7.5 cannot decrypt the PGP message")


def test_decrypt_of_plain_message_fails(pgp_world: PgpWorld) -> None:
    result = mailroute("pgp", "decrypt", "--gnupghome", str(pgp_world.gateway), data=PLAIN)
    assert result.returncode == 69
    assert result.stdout == b""


def test_bad_home_is_a_config_error(tmp_path: Path) -> None:
    result = mailroute("pgp", "verify", "--gnupghome", str(tmp_path / "absent"), data=PLAIN)
    assert result.returncode == 78
    assert result.stderr.startswith(b"4.3.5 configuration error")
