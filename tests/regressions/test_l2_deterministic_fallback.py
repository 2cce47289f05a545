"""L2: after a failed RSA unwrap the content key was random per run, so one corrupted
message "decrypted" to garbage in 14 of 5,000 runs and failed in the others. The substitute
key is now derived from the encrypted key and the private key: one message, one outcome."""

from __future__ import annotations

import pytest
from asn1crypto import cms

from mailroute import Context, Pipeline
from mailroute.errors import DecryptionError
from mailroute.filters.smime import SmimeDecrypt
from mailroute.smime import Identity, decrypt
from mailroute.smime.decrypt import rejection_key
from tests.regressions.cms_tamper import enveloped, message
from tests.smime.pki import NOW, Pki, build_pki

CONTEXT = Context(clock=NOW.timestamp)
RUNS = 200


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway PKI; alice is the gateway's decryption identity."""
    return build_pki(tmp_path_factory.mktemp("pki"))


def _corrupted(der: bytes, flip: int) -> bytes:
    """``der`` with the first recipient's encrypted key changed, differently per ``flip``:
    byte ``flip % 256`` XORed with ``flip // 256 + 1``."""
    info = cms.ContentInfo.load(der)
    ktri = info["content"]["recipient_infos"][0].chosen
    wrapped = bytearray(ktri["encrypted_key"].native)
    wrapped[flip % len(wrapped)] ^= (flip // len(wrapped) + 1) % 256 or 1
    ktri["encrypted_key"] = bytes(wrapped)
    corrupted: bytes = info.dump(force=True)
    return corrupted


def _outcome(data: bytes, identity: list[Identity]) -> bytes | None:
    try:
        return decrypt(data, identity, max_size=1 << 20).content
    except DecryptionError:
        return None


def test_a_corrupted_key_that_decrypts_always_decrypts_the_same(pki: Pki) -> None:
    """Find a corrupted message whose substitute key happens to give valid CBC padding
    (about 1 in 256): with a random key it would decrypt about once in 256 runs."""
    der = enveloped(pki)
    identity = [Identity(pki.alice.cert, pki.alice.rsa_key)]
    for flip in range(4000):
        corrupted = _corrupted(der, flip)
        first = _outcome(corrupted, identity)
        if first is not None:
            break
    else:
        pytest.fail("no corrupted key gave valid padding in 4000 tries")
    assert {_outcome(corrupted, identity) for _ in range(RUNS)} == {first}


def test_the_gateway_gives_one_answer_per_corrupted_message(pki: Pki) -> None:
    der = enveloped(pki)
    gateway = Pipeline(filters=(SmimeDecrypt((Identity(pki.alice.cert, pki.alice.rsa_key),)),))
    for flip in (0, 17, 100, 255):
        data = message(_corrupted(der, flip))
        answers = {(r.action, r.reply, r.data) for r in
                   (gateway.process(data, context=CONTEXT) for _ in range(RUNS // 4))}
        assert len(answers) == 1


def test_the_substitute_key_depends_on_the_ciphertext_and_the_private_key(pki: Pki) -> None:
    key = pki.alice.rsa_key
    other = pki.dave.rsa_key
    assert rejection_key(key, b"\x01" * 256, 32) == rejection_key(key, b"\x01" * 256, 32)
    assert len(rejection_key(key, b"\x01" * 256, 16)) == 16
    assert rejection_key(key, b"\x01" * 256, 32) != rejection_key(key, b"\x02" * 256, 32)
    assert rejection_key(key, b"\x01" * 256, 32) != rejection_key(other, b"\x01" * 256, 32)
