"""The bundled gateway policy over the bundled messages does what the README promises."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from mailroute.marker import load_key_ring
from mailroute.marker.verify import check_message
from mailroute.mime import decode_text, parse

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gateway")
    keys = folder / "marker-keys.toml"
    secret = base64.b64encode(os.urandom(32)).decode()
    keys.write_text(f'tag = "g7k2qd"\norg_id = "example.net"\n\n[[key]]\nid = "demo1"\n'
                    f'secret = "{secret}"\n')
    keys.chmod(0o600)
    text = (EXAMPLES / "gateway" / "policy.toml").read_text()
    text = text.replace('"run/marker-keys.toml"', f'"{keys}"')
    text = text.replace('"../disclaimer/', f'"{EXAMPLES / "disclaimer"}/')
    path = folder / "policy.toml"
    path.write_text(text)
    return path


def run(policy: Path, name: str) -> subprocess.CompletedProcess[bytes]:
    envelope = tomllib.loads((EXAMPLES / "messages" / "envelopes.toml").read_text())[name]
    flags = ["--mail-from", envelope["mail_from"]]
    for rcpt in envelope["rcpt_to"]:
        flags += ["--rcpt", rcpt]
    return subprocess.run([sys.executable, "-m", "mailroute", "process", "--config",
                           str(policy), *flags],
                          input=(EXAMPLES / "messages" / name).read_bytes(),
                          capture_output=True, timeout=60, check=False)


def marker_verdict(policy: Path, data: bytes) -> str:
    ring = load_key_ring(policy.parent / "marker-keys.toml")
    return str(check_message(parse(data), ring, now=time.time()).verdict)


def texts(data: bytes) -> list[str]:
    message = parse(data)
    return [decode_text(part) for _, part in message.walk()
            if part.mime_type in ("text/plain", "text/html") and not part.is_attachment]


def test_outbound_mail_gets_the_disclaimer_once_and_a_valid_marker(policy: Path) -> None:
    for name in ("01-outbound-plain.eml", "02-outbound-alternative.eml"):
        done = run(policy, name)
        assert done.returncode == 0, done.stderr
        bodies = texts(done.stdout)
        assert bodies
        assert all(body.count("This e-mail is confidential.") == 1 for body in bodies), name
        assert b"X-Internal-Route" not in done.stdout
        assert marker_verdict(policy, done.stdout) == "valid-fresh"
    latin = parse(run(policy, "01-outbound-plain.eml").stdout).root
    assert latin.charset == "iso-8859-1"
    assert "Grüße aus Köln" in decode_text(latin)
    assert "Empfänger" in decode_text(latin)


def test_internal_mail_is_marked_but_otherwise_unchanged(policy: Path) -> None:
    done = run(policy, "03-internal.eml")
    assert done.returncode == 0
    original = (EXAMPLES / "messages" / "03-internal.eml").read_bytes()
    first_line_end = done.stdout.index(b"\r\n") + 2
    assert done.stdout[:first_line_end].startswith(b"X-Mailroute-Mark: v1.g7k2qd.")
    assert done.stdout[first_line_end:] == original


def test_ambiguous_mail_is_refused(policy: Path) -> None:
    done = run(policy, "04-inbound-forged-header.eml")
    assert done.returncode == 65
    assert done.stdout == b""
    assert done.stderr.startswith(b"5.6.0 ")


def test_a_copied_marker_from_the_internet_is_replaced(policy: Path) -> None:
    done = run(policy, "05-inbound-forged-marker.eml")
    assert done.returncode == 0
    assert b"C3oxZfdjE9Ty24anJRKMAAbhl4xk6RquRZIMZ8TOwPg" not in done.stdout
    assert parse(done.stdout).headers.count("X-Mailroute-Mark") == 1
    assert marker_verdict(policy, done.stdout) == "valid-fresh"


def test_signed_mail_is_wrapped_byte_for_byte(policy: Path) -> None:
    original = parse((EXAMPLES / "messages" / "06-outbound-signed.eml").read_bytes())
    done = run(policy, "06-outbound-signed.eml")
    assert done.returncode == 0
    out = parse(done.stdout)
    assert out.root.mime_type == "multipart/mixed"
    signed = out.part((0,))
    assert signed.mime_type == "multipart/signed"
    assert signed.body_bytes() == original.root.body_bytes()
    assert "This e-mail is confidential." in decode_text(out.part((1,)))


def test_the_postfix_pipe_policy_loads_with_a_shared_store(tmp_path: Path) -> None:
    from mailroute.gateway.sqlite_store import SqliteProcessedStore
    from mailroute.policy import load_policy
    from mailroute.testing import write_fake_key_file

    write_fake_key_file(tmp_path / "marker-keys.toml")
    text = (EXAMPLES / "postfix" / "policy.toml").read_text()
    text = text.replace('"../disclaimer/', f'"{EXAMPLES / "disclaimer"}/')
    text = text.replace('"/var/lib/mailroute"', f'"{tmp_path / "state"}"')
    (tmp_path / "policy.toml").write_text(text)
    pipeline = load_policy(tmp_path / "policy.toml")
    assert pipeline.context is not None
    assert isinstance(pipeline.context.processed, SqliteProcessedStore)
    assert pipeline.quarantine_dir == tmp_path / "state" / "quarantine"
