"""The encryption policy through ``mailroute pipe`` as Postfix runs it, handing on over SMTP:
a signed message from a new correspondent teaches his certificate; the next message to him
and to a colleague without a key leaves as two copies, his encrypted, the other in clear."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.filters.test_crypto import (
    ALICE,
    ENTITY,
    ME,
    _inbound_signed_by_mailroute,
    _openssl_decrypt,
    _outbound,
    policy_text,
)
from tests.smime.pki import Pki
from tests.smtpsink import SmtpSink

CAROL = "carol@other.example"


def _pipe(policy: Path, port: int, data: bytes, *, sender: str, rcpts: list[str],
          client: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailroute", "pipe", "--config", str(policy), "--sender", sender,
         "--client-ip", client, "--reinject", f"smtp:127.0.0.1:{port}", "--log", "stderr",
         "--", *rcpts], input=data, capture_output=True, timeout=120, check=False)


def test_harvest_then_split_encrypted_and_plain_copies(pki: Pki, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text(pki, tmp_path / "state"))
    with SmtpSink() as sink:
        inbound = _pipe(policy, sink.port, _inbound_signed_by_mailroute(pki), sender=ALICE,
                        rcpts=[ME], client="203.0.113.5")
        assert inbound.returncode == 0, inbound.stderr
        sink.wait_for(1)
        outbound = _pipe(policy, sink.port, _outbound(), sender=ME, rcpts=[ALICE, CAROL],
                         client="127.0.0.1")
        assert outbound.returncode == 0, outbound.stderr
        _, first, second = sink.wait_for(3)
    assert "accept-split 2.0.0 handed on in 2 copies" in outbound.stderr.decode()
    copies = {tuple(t.recipients): t.body for t in (first, second)}
    assert set(copies) == {(ALICE,), (CAROL,)}
    assert b"The contract, as agreed." in copies[(CAROL,)]
    assert b"The contract, as agreed." not in copies[(ALICE,)]
    plain, algorithm = _openssl_decrypt(pki, copies[(ALICE,)], tmp_path)
    assert plain.replace(b"\r\n", b"\n") == ENTITY.replace(b"\r\n", b"\n")
    assert algorithm == "aes-256-gcm"
    listed = subprocess.run([sys.executable, "-m", "mailroute", "keys", "list", "--config",
                             str(policy)], capture_output=True, timeout=60, check=True)
    assert f" {ALICE} smime harvested active " in listed.stdout.decode()
