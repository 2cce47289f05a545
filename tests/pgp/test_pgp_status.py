"""Status-line verdicts from recorded gpg 2.2.40 sequences (no gpg needed)."""

from __future__ import annotations

import pytest

from mailroute.pgp.status import (
    DecryptionVerdict,
    SignatureStatus,
    StatusLog,
    decryption_verdict,
    signature_checks,
)

FPR = "A0EBB35C43F0EFB0B0F2939C0106B3591355E2EA"
GOOD_DECRYPT = """\
[GNUPG:] ENC_TO D03A4EF2F686F46C 1 0
[GNUPG:] DECRYPTION_KEY 43D5 43D5 u
[GNUPG:] BEGIN_DECRYPTION
[GNUPG:] DECRYPTION_INFO 2 9 0
[GNUPG:] PLAINTEXT 62 1796034720 m
[GNUPG:] PLAINTEXT_LENGTH 6
[GNUPG:] DECRYPTION_OKAY
[GNUPG:] GOODMDC
[GNUPG:] END_DECRYPTION
"""
# gpg --ignore-mdc-error on a CAST5 message without MDC: OKAY but no integrity check.
IGNORED_MDC = """\
[GNUPG:] BEGIN_DECRYPTION
[GNUPG:] DECRYPTION_INFO 0 3 0
[GNUPG:] PLAINTEXT 62 1796034721 m
[GNUPG:] DECRYPTION_OKAY
[GNUPG:] END_DECRYPTION
"""
NO_MDC = """\
[GNUPG:] BEGIN_DECRYPTION
[GNUPG:] DECRYPTION_INFO 0 3 0
[GNUPG:] PLAINTEXT 62 1796034721 m
[GNUPG:] ERROR nomdc_with_legacy_cipher 152
[GNUPG:] DECRYPTION_FAILED
[GNUPG:] END_DECRYPTION
"""
AEAD = """\
[GNUPG:] DECRYPTION_INFO 0 9 2
[GNUPG:] PLAINTEXT 62 1796034721 m
[GNUPG:] DECRYPTION_OKAY
[GNUPG:] END_DECRYPTION
"""


@pytest.mark.parametrize(("text", "verdict"), [
    (GOOD_DECRYPT, DecryptionVerdict.OK),
    (IGNORED_MDC, DecryptionVerdict.NO_INTEGRITY),
    (NO_MDC, DecryptionVerdict.NO_INTEGRITY),
    (AEAD, DecryptionVerdict.OK),
    (GOOD_DECRYPT.replace("GOODMDC", "BADMDC"), DecryptionVerdict.FAILED),
    (GOOD_DECRYPT + "[GNUPG:] DECRYPTION_FAILED\n", DecryptionVerdict.FAILED),
    (GOOD_DECRYPT + "[GNUPG:] PLAINTEXT 62 1 second\n", DecryptionVerdict.FAILED),
    ("[GNUPG:] ENC_TO 1 1 0\n[GNUPG:] NO_SECKEY 1\n[GNUPG:] BEGIN_DECRYPTION\n"
     "[GNUPG:] DECRYPTION_FAILED\n", DecryptionVerdict.NO_SECRET_KEY),
    ("", DecryptionVerdict.FAILED),
])
def test_decryption_needs_okay_and_integrity(text: str, verdict: DecryptionVerdict) -> None:
    assert decryption_verdict(StatusLog.parse(text)) is verdict


def test_text_lines_that_mimic_status_are_ignored() -> None:
    log = StatusLog.parse("gpg: [GNUPG:] GOODMDC\n  [GNUPG:] DECRYPTION_OKAY\n" + NO_MDC)
    assert decryption_verdict(log) is DecryptionVerdict.NO_INTEGRITY


def test_two_signatures_are_reported_separately() -> None:
    text = (f"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 0106B3591355E2EA Alice\n"
            f"[GNUPG:] VALIDSIG {FPR} 2026-11-30 1796034713 0 4 0 22 8 00 {FPR}\n"
            "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 5AF9482C594D3286 1 8 00 1796034713 9 -\n"
            "[GNUPG:] NO_PUBKEY 5AF9482C594D3286\n")
    first, second = signature_checks(StatusLog.parse(text))
    assert first.valid
    assert first.fingerprint == FPR
    assert first.hash_algo == 8
    assert second.status is SignatureStatus.NO_PUBLIC_KEY
    assert not second.valid


@pytest.mark.parametrize(("keyword", "status"), [
    ("BADSIG", SignatureStatus.BAD), ("EXPKEYSIG", SignatureStatus.EXPIRED_KEY),
    ("REVKEYSIG", SignatureStatus.REVOKED_KEY), ("EXPSIG", SignatureStatus.EXPIRED_SIGNATURE),
])
def test_signature_openers(keyword: str, status: SignatureStatus) -> None:
    (check,) = signature_checks(StatusLog.parse(f"[GNUPG:] NEWSIG\n[GNUPG:] {keyword} K U\n"))
    assert check.status is status
    assert not check.valid


def test_goodsig_without_validsig_is_not_valid() -> None:
    (check,) = signature_checks(StatusLog.parse("[GNUPG:] GOODSIG 0106B3591355E2EA Alice\n"))
    assert check.status is SignatureStatus.GOOD
    assert not check.valid
