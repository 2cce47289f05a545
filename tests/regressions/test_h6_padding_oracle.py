"""H6: the gateway's answer told a sender whether a tampered CBC message had valid padding
(accept vs 554 5.7.5, exit 0 vs 69), enough for Vaudenay's attack (one block in 1,605
queries). Now every ciphertext failure gets one answer, and by default (deliver) that answer
is the acceptance a decrypted message gets too."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from mailroute import Context, Pipeline, Result
from mailroute.filters.smime import SmimeDecrypt
from mailroute.results import Action
from mailroute.smime import Identity
from tests.regressions.cms_tamper import (
    BLOCK,
    block_decrypt,
    content_key,
    enveloped,
    iv_and_blocks,
    message,
    padding_valid,
    rebuilt,
    xor,
)
from tests.smime.pki import NOW, Pki, build_pki

CONTEXT = Context(clock=NOW.timestamp)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway PKI; alice is the gateway's decryption identity."""
    return build_pki(tmp_path_factory.mktemp("pki"))


def _gateway(pki: Pki, on_failure: str = "deliver") -> Pipeline:
    return Pipeline(filters=(SmimeDecrypt((Identity(pki.alice.cert, pki.alice.rsa_key),),
                                          on_failure=on_failure),))


def _probe(der: bytes, target: int, last: int, seed: int = 7) -> tuple[bytes, list[bytes]]:
    """Vaudenay's query for block ``target``: IV, then a chosen block R ending in ``last``,
    then the target block; what the gateway says about its padding leaks a plaintext byte.

    The IV is drawn from ``seed`` too, so every run asks the same queries. With a fresh IV,
    a query with valid padding decrypts to fresh random bytes, and on rare draws those read
    as a MIME entity and are flagged ``decrypted`` (the SMTP answer is the same 250; the
    flag a recipient sees differs): the test then failed about once in many runs.
    """
    _, blocks = iv_and_blocks(der)
    draw = random.Random(seed)
    chosen = draw.randbytes(BLOCK - 1) + bytes((last,))
    return draw.randbytes(BLOCK), [chosen, blocks[target]]


def _valid_and_invalid(pki: Pki, der: bytes, target: int) -> tuple[list[bytes], list[bytes]]:
    """Two probes for ``target``, the first with valid padding and the second without
    (checked with the content key, which the test knows and an attacker does not)."""
    key = content_key(der, pki.alice.key)
    iv, blocks = iv_and_blocks(der)
    previous = blocks[target - 1] if target else iv
    plain_last = xor(block_decrypt(key, blocks[target]), previous)[-1]
    # R[-1] = P[-1] ^ C_prev[-1] ^ 0x01 ends the plaintext in 0x01; ^ 0x00 ends it in 0x00
    wanted = plain_last ^ previous[-1]
    valid = _probe(der, target, wanted ^ 0x01)
    invalid = _probe(der, target, wanted)
    assert padding_valid(key, *valid)
    assert not padding_valid(key, *invalid)
    return [message(rebuilt(der, *valid))], [message(rebuilt(der, *invalid))]


def _answer(result: Result) -> tuple[Action, str, bytes | None]:
    """What a sender can tell apart: action, reply, and the output's flag field."""
    flag = None
    if result.data is not None:
        first = result.data.split(b"\r\n", 1)[0]
        flag = first if first.startswith(b"X-Mailroute-SMIME:") else b"(none)"
    return result.action, result.reply, flag


@pytest.mark.parametrize("on_failure", ["deliver", "reject", "quarantine"])
def test_padding_valid_and_invalid_probes_get_identical_answers(pki: Pki,
                                                                 on_failure: str) -> None:
    der = enveloped(pki)
    (valid,), (invalid,) = _valid_and_invalid(pki, der, target=2)
    gateway = _gateway(pki, on_failure)
    answers = [gateway.process(data, context=CONTEXT) for data in (valid, invalid)]
    assert _answer(answers[0]) == _answer(answers[1])
    if on_failure == "deliver":
        for result, data in zip(answers, (valid, invalid), strict=True):
            assert result.action is Action.ACCEPT
            assert result.data == b"X-Mailroute-SMIME: undecryptable\r\n" + data
    if on_failure == "reject":
        assert answers[0].reply == "554 5.7.5 cannot decrypt the message"


def test_vaudenay_last_byte_search_learns_nothing(pki: Pki) -> None:
    """All 256 guesses for the last byte of a block: some have valid padding, yet every
    answer is the same, so the search cannot tell which."""
    der = enveloped(pki)
    key = content_key(der, pki.alice.key)
    gateway = _gateway(pki)
    answers = set()
    valid = 0
    for last in range(256):
        probe = _probe(der, 3, last)
        valid += padding_valid(key, *probe)
        answers.add(_answer(gateway.process(message(rebuilt(der, *probe)), context=CONTEXT)))
    assert valid >= 1
    assert answers == {(Action.ACCEPT, "250 2.0.0 message accepted",
                        b"X-Mailroute-SMIME: undecryptable")}


def test_tampered_tail_answers_alike_whether_or_not_it_decrypts(pki: Pki) -> None:
    """The probe appended to the whole message keeps the headers intact, so a valid padding
    gives a decryptable (garbled) message. By default the sender still sees one answer."""
    der = enveloped(pki)
    key = content_key(der, pki.alice.key)
    iv, blocks = iv_and_blocks(der)
    gateway = _gateway(pki)
    seen: dict[bool, set[tuple[Action, str]]] = {True: set(), False: set()}
    for last in range(256):
        tampered = (iv, [*blocks, *_probe(der, 3, last)[1]])
        result = gateway.process(message(rebuilt(der, *tampered)), context=CONTEXT)
        seen[padding_valid(key, *tampered)].add((result.action, result.reply))
    assert seen[True]
    assert seen[False]
    assert seen[True] == seen[False] == {(Action.ACCEPT, "250 2.0.0 message accepted")}


def test_reject_mode_still_tells_a_tampered_tail_apart(pki: Pki) -> None:
    """The documented limit of on_failure = "reject": a CBC message that decrypts is
    accepted and one that does not is refused, so the sender learns that bit. This is why
    "deliver" is the default (docs/smime.md)."""
    der = enveloped(pki)
    key = content_key(der, pki.alice.key)
    iv, blocks = iv_and_blocks(der)
    gateway = _gateway(pki, "reject")
    actions: dict[bool, set[Action]] = {True: set(), False: set()}
    for last in range(256):
        tampered = (iv, [*blocks, *_probe(der, 3, last)[1]])
        actions[padding_valid(key, *tampered)].add(
            gateway.process(message(rebuilt(der, *tampered)), context=CONTEXT).action)
    assert actions[False] == {Action.REJECT}
    assert Action.ACCEPT in actions[True]


def test_cli_exit_code_does_not_depend_on_padding(pki: Pki, tmp_path: Path) -> None:
    der = enveloped(pki)
    (valid,), (invalid,) = _valid_and_invalid(pki, der, target=1)
    outcomes = set()
    for data in (valid, invalid):
        done = subprocess.run(
            [sys.executable, "-m", "mailroute", "smime", "decrypt", "--cert",
             str(pki.alice.cert_path), "--key", str(pki.alice.key_path)],
            input=data, capture_output=True, check=False, timeout=60)
        outcomes.add((done.returncode, done.stdout, done.stderr))
    assert outcomes == {(69, b"", b"5.7.5 cannot decrypt the message\n")}


def test_garbage_that_reads_as_a_header_field_is_not_a_decrypted_entity() -> None:
    """A probe with valid padding decrypts to random bytes. About 0.2% of random 16-31 byte
    plaintexts read as a header field ("o:" and bytes) and counted as decrypted, so the flag
    a recipient sees told valid padding apart now and then. An entity needs its blank line
    after the header fields too: none of 20,000 seeded draws passes, a real entity does."""
    from mailroute.errors import MessageError
    from mailroute.limits import DEFAULT_LIMITS
    from mailroute.mime import parse
    from mailroute.smime.entity import decrypted_message

    outer = parse(b"From: a@example.org\r\nTo: b@example.net\r\nMIME-Version: 1.0\r\n"
                  b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
                  b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n")
    draw = random.Random(11)
    accepted = 0
    for _ in range(20_000):
        try:
            decrypted_message(outer, draw.randbytes(draw.randrange(16, 32)), DEFAULT_LIMITS)
        except MessageError:
            continue
        accepted += 1
    assert accepted == 0
    with pytest.raises(MessageError):
        decrypted_message(outer, b"o: x\r\n", DEFAULT_LIMITS)
    message, _ = decrypted_message(outer, b"Content-Type: text/plain\r\n\r\nhi\r\n",
                                   DEFAULT_LIMITS)
    assert message.to_bytes().endswith(b"Content-Type: text/plain\r\n\r\nhi\r\n")
