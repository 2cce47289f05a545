"""M4: a CBC message whose "1234" an attacker turned into "9999" (flipping bytes of the
previous block) decrypted with exit 0 and no visible flag; ``smime.authenticated=no`` lived
only inside the process. Now the gateway writes its own X-Mailroute-SMIME field (removing
any a sender set), a ``when`` condition can act on the annotation, and the CLI says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailroute import Context, Pipeline
from mailroute.errors import ConfigError
from mailroute.filters.smime import SmimeDecrypt
from mailroute.mime import parse
from mailroute.policy import policy_from_mapping
from mailroute.results import Action
from mailroute.smime import Identity
from tests.regressions.cms_tamper import (
    BLOCK,
    ENTITY,
    HEAD,
    enveloped,
    iv_and_blocks,
    message,
    rebuilt,
    xor,
)
from tests.smime.pki import NOW, Pki, build_pki

CONTEXT = Context(clock=NOW.timestamp)
CBC_FLAG = "decrypted; cipher=aes-256-cbc; authenticated=no"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway PKI; alice is the gateway's decryption identity."""
    return build_pki(tmp_path_factory.mktemp("pki"))


def _tampered(pki: Pki) -> bytes:
    """The CBC message with "Code: 1234" changed to "Code: 9999" without the key."""
    der = enveloped(pki)
    iv, blocks = iv_and_blocks(der)
    at = ENTITY.index(b"1234")
    target, offset = divmod(at, BLOCK)
    assert target >= 2  # the garbled block before it is body text, not a header
    delta = bytes(offset) + xor(b"1234", b"9999") + bytes(BLOCK - offset - 4)
    blocks[target - 1] = xor(blocks[target - 1], delta)
    return message(rebuilt(der, iv, blocks))


def _gateway(pki: Pki) -> Pipeline:
    return Pipeline(filters=(SmimeDecrypt((Identity(pki.alice.cert, pki.alice.rsa_key),)),))


def test_tampered_cbc_plaintext_is_flagged_in_a_header_field(pki: Pki) -> None:
    result = _gateway(pki).process(_tampered(pki), context=CONTEXT)
    assert result.action is Action.ACCEPT
    assert result.data is not None
    assert b"Code: 9999" in result.data  # CBC cannot notice: that is what the flag is for
    assert [f.value for f in parse(result.data).headers.get_all("X-Mailroute-SMIME")] == [
        CBC_FLAG]
    assert result.item is not None
    assert result.item.annotation("smime.authenticated") == "no"


def test_tampered_gcm_message_is_undecryptable(pki: Pki) -> None:
    der = bytearray(enveloped(pki, cipher="aes-256-gcm"))
    der[-1] ^= 0x01  # the last byte of the MAC
    data = message(bytes(der))
    result = _gateway(pki).process(data, context=CONTEXT)
    assert result.data == b"X-Mailroute-SMIME: undecryptable\r\n" + data


def test_a_sender_cannot_preset_the_flag(pki: Pki) -> None:
    forged = b"X-Mailroute-SMIME: decrypted; cipher=aes-256-gcm; authenticated=yes\r\n"
    plain = forged + HEAD + ENTITY
    result = _gateway(pki).process(plain, context=CONTEXT)
    assert result.data == HEAD + ENTITY
    inside = message(enveloped(pki, entity=forged + ENTITY))
    result = _gateway(pki).process(forged + inside, context=CONTEXT)
    assert result.data is not None
    assert [f.value for f in parse(result.data).headers.get_all("X-Mailroute-SMIME")] == [
        CBC_FLAG]


def test_a_when_condition_routes_unauthenticated_decryptions(pki: Pki) -> None:
    pipeline = policy_from_mapping({"pipeline": [
        {"filter": "smime-decrypt", "cert": str(pki.alice.cert_path),
         "key": str(pki.alice.key_path)},
        {"filter": "headers", "add": {"X-Review": "unauthenticated"},
         "when": {"annotation": {"smime.authenticated": "no"}}}]})
    cbc = pipeline.process(_tampered(pki), context=CONTEXT)
    gcm = pipeline.process(message(enveloped(pki, cipher="aes-256-gcm")), context=CONTEXT)
    assert cbc.data is not None
    assert gcm.data is not None
    assert parse(cbc.data).headers.get("X-Review") is not None
    assert parse(gcm.data).headers.get("X-Review") is None


def test_a_when_annotation_must_be_a_string() -> None:
    with pytest.raises(ConfigError, match=r"annotation\.smime\.authenticated"):
        policy_from_mapping({"pipeline": [{"filter": "headers", "add": {"X-A": "1"},
                                           "when": {"annotation": {
                                               "smime.authenticated": False}}}]})


@pytest.mark.parametrize(("cipher", "noted"), [("aes-256-cbc", True), ("aes-256-gcm", False)])
def test_the_cli_notes_unauthenticated_content_on_stderr(pki: Pki, tmp_path: Path,
                                                         cipher: str, noted: bool) -> None:
    data = _tampered(pki) if cipher.endswith("cbc") else message(enveloped(pki, cipher=cipher))
    done = subprocess.run(
        [sys.executable, "-m", "mailroute", "smime", "decrypt", "--cert",
         str(pki.alice.cert_path), "--key", str(pki.alice.key_path)],
        input=data, capture_output=True, check=False, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith(HEAD)
    assert (b"not integrity-protected" in done.stderr) == noted
