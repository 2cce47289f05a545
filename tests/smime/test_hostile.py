"""Hostile input: mutated CMS structures and S/MIME messages never escape as unexpected errors
(which a pipeline would turn into an endless 451 retry) and never decrypt into something."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from mailroute.errors import DecryptionError, MalformedMessageError
from mailroute.filters.smime import SmimeDecrypt, SmimeEncrypt, SmimeSign, SmimeVerify
from mailroute.pipeline import Pipeline
from mailroute.results import Action
from mailroute.smime import Identity, Signer, TrustAnchors, decrypt, encrypt, sign, verify
from tests.smime.conftest import ENTITY
from tests.smime.pki import Pki
from tests.smime.test_mime_interop import MESSAGE

NOW = dt.datetime.now(dt.UTC)
ROUNDS = 400


def _mutate(rnd: random.Random, data: bytes, alphabet: bytes | None = None) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        at = rnd.randrange(len(out))
        choice = rnd.random()
        if alphabet is not None:
            out[at] = rnd.choice(alphabet)
        elif choice < 0.6:
            out[at] = rnd.randrange(256)
        elif choice < 0.8:
            del out[at:at + rnd.randint(1, 20)]
        else:
            out[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 5)))
    return bytes(out)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_mutated_cms_raises_only_the_documented_errors(pki: Pki) -> None:
    signer = Signer(pki.alice.cert, pki.alice.key, (pki.issuing.cert,))
    detached = b"".join(sign([ENTITY], signer, signing_time=NOW))
    opaque = b"".join(sign([ENTITY], signer, signing_time=NOW, detached=False))
    gcm = b"".join(encrypt([ENTITY], [pki.alice.cert], cipher="aes-256-gcm").chunks)
    cbc = b"".join(encrypt([ENTITY], [pki.alice.cert], cipher="aes-256-cbc", oaep=True).chunks)
    trust = TrustAnchors((pki.root.cert,))
    identity = [Identity(pki.alice.cert, pki.alice.rsa_key)]
    rnd = random.Random(20261130)
    decrypted_changed = 0
    for round_ in range(ROUNDS):
        kind = round_ % 4
        data = _mutate(rnd, (detached, opaque, gcm, cbc)[kind])
        try:
            if kind < 2:
                result = verify(data, content=ENTITY if kind == 0 else None, trust=trust,
                                at=NOW, max_size=1 << 20)
                if result.valid:  # a mutation outside what is signed (e.g. a certificate)
                    assert result.content == ENTITY
            else:
                plain = decrypt(data, identity, max_size=1 << 20).content
                decrypted_changed += plain != ENTITY and kind == 2
        except (MalformedMessageError, DecryptionError):
            pass
    assert decrypted_changed == 0  # GCM: a changed ciphertext never yields other plaintext


def test_mutated_messages_never_tempfail(pki: Pki) -> None:
    signer = Signer(pki.alice.cert, pki.alice.key, (pki.issuing.cert,))
    made = [Pipeline(filters=(step,)).process(MESSAGE).data for step in (
        SmimeSign(signer), SmimeSign(signer, opaque=True), SmimeEncrypt((pki.alice.cert,)),
        SmimeEncrypt((pki.alice.cert,), cipher="aes-128-gcm"))]
    pipeline = Pipeline(filters=(SmimeVerify(TrustAnchors((pki.root.cert,))),
                                 SmimeDecrypt((Identity(pki.alice.cert, pki.alice.rsa_key),))))
    rnd = random.Random(7)
    for round_ in range(ROUNDS):
        source = made[round_ % 4]
        assert source is not None
        result = pipeline.process(_mutate(rnd, source, b"ABCxyz+/=\r\n-\"; \x00\xff"))
        assert result.action is not Action.TEMPFAIL, result.reply
