"""Thunderbird/NSS S/MIME signatures (tests/realmail/README.md): mailroute's verdict is the one
``openssl cms -verify`` reaches at the same time with the same trust anchor.

OpenSSL checks the chain before the content, mailroute the content before the chain (a
forgery is reported as one whatever the certificate): the expected verdict is OpenSSL's on
the content alone (``-noverify``) when that fails, else OpenSSL's full verdict.

NSS signs Microsoft's encryption-key-preference attribute (1.3.6.1.4.1.311.16.4) into every
signature, which made every such signer ``malformed`` before. ``weak-algorithm`` is
mailroute's policy on top of a signature OpenSSL accepts (SHA-1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

DATA = Path(__file__).parent / "smime"
CA = DATA / "TestCA.pem"
SIGNED = 1769500000  # 2026-01-27, a day after the messages were signed
EXPIRED = 1990000000  # 2033: Alice's certificate ended on 2031-01-26
NOT_YET = 1700000000  # 2023: before it began

MESSAGES = ["alice.dsig.SHA256.multipart.eml", "alice.dsig.SHA256.multipart.bad.eml",
            "alice.dsig.SHA1.multipart.eml", "alice.dsig.SHA1.multipart.bad.eml",
            "alice.sig.SHA256.opaque.eml"]


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not issue Alice's certificate."""
    folder = tmp_path_factory.mktemp("other-ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Other CA", "-days", "36500",
                    "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.pem")],
                   check=True, capture_output=True, timeout=60)
    return folder / "ca.pem"


def openssl_run(message: Path, ca: Path, at: int, *, chain: bool, partial: bool = False) -> str:
    """OpenSSL's verdict in mailroute's words (without the chain check unless ``chain``;
    ``partial``: ``ca`` may be an intermediate, as mailroute's anchors may)."""
    done = subprocess.run(["openssl", "cms", "-verify", "-in", str(message), "-CAfile", str(ca),
                           "-attime", str(at), "-purpose", "smimesign", "-out", "/dev/null",
                           *(() if chain else ("-noverify",)),
                           *(("-partial_chain",) if partial else ())],
                          capture_output=True, timeout=60, check=False)
    errors = done.stderr.decode("utf-8", "replace")
    if done.returncode == 0:
        return "valid"
    for text, verdict in (("digest failure", "bad-digest"),
                          ("content verify error", "bad-digest"),
                          ("certificate has expired", "expired"),
                          ("certificate is not yet valid", "not-yet-valid"),
                          ("unable to get local issuer certificate", "untrusted")):
        if text in errors:
            return verdict
    raise AssertionError(f"unexpected openssl result: {errors}")


def openssl_verdict(message: Path, ca: Path, at: int, *, partial: bool = False) -> str:
    """The content verdict when it fails, else the full one (mailroute's precedence)."""
    content = openssl_run(message, ca, at, chain=False)
    return (content if content != "valid"
            else openssl_run(message, ca, at, chain=True, partial=partial))


def mailroute_report(message: Path, ca: Path, at: int) -> tuple[int, dict[str, object]]:
    code = "import sys; from mailroute.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", code, "smime", "verify", "--trust", str(ca),
                           "--json", "--now", str(at), "--in", str(message)],
                          capture_output=True, timeout=120, check=False)
    return done.returncode, json.loads(done.stdout)


def expected(openssl: str, message: str) -> str:
    """What mailroute must say given OpenSSL's verdict: the same, except that a signature
    OpenSSL accepts is ``weak-algorithm`` when it is SHA-1."""
    return "weak-algorithm" if openssl == "valid" and ".SHA1." in message else openssl


@pytest.mark.parametrize("name", MESSAGES)
@pytest.mark.parametrize("at", [SIGNED, EXPIRED, NOT_YET], ids=["in-time", "expired", "early"])
def test_verdict_matches_openssl(name: str, at: int) -> None:
    message = DATA / name
    openssl = openssl_verdict(message, CA, at)
    code, report = mailroute_report(message, CA, at)
    (signer,) = report["signers"]  # type: ignore[misc]
    assert signer["reason"] == expected(openssl, name)  # type: ignore[index]
    assert report["reason"] == signer["reason"]  # type: ignore[index]
    assert code == (0 if signer["reason"] == "valid" else 1)  # type: ignore[index]


@pytest.mark.parametrize("name", MESSAGES)
def test_untrusted_anchor_matches_openssl(name: str, other_ca: Path) -> None:
    message = DATA / name
    openssl = openssl_verdict(message, other_ca, SIGNED)
    _, report = mailroute_report(message, other_ca, SIGNED)
    assert report["reason"] == expected(openssl, name)


def test_the_verdicts_are_the_ones_each_message_was_made_for() -> None:
    # the comparison above would also pass if both tools were wrong alike
    verdicts = {name: mailroute_report(DATA / name, CA, SIGNED)[1]["reason"]
                for name in MESSAGES}
    assert verdicts == {
        "alice.dsig.SHA256.multipart.eml": "valid",
        "alice.dsig.SHA256.multipart.bad.eml": "bad-digest",
        "alice.dsig.SHA1.multipart.eml": "weak-algorithm",
        "alice.dsig.SHA1.multipart.bad.eml": "bad-digest",
        "alice.sig.SHA256.opaque.eml": "valid",
    }


def test_encryption_key_preference_is_reported() -> None:
    _, report = mailroute_report(DATA / "alice.dsig.SHA256.multipart.eml", CA, SIGNED)
    (signer,) = report["signers"]  # type: ignore[misc]
    preference = signer["encryption_key_preference"]  # type: ignore[index]
    assert preference == {
        "source": "rfc8551",
        "issuer": "CN=NSS Test CA (RSA),O=BOGUS NSS,L=Mountain View,ST=California,C=US",
        "serial": "1e", "subject_key_identifier": "",
        "certificate_subject": signer["subject"],  # type: ignore[index]
    }
    assert signer["smime_capabilities"] == []  # type: ignore[index]  # NSS sends none here
    assert signer["aes_gcm"] is False  # type: ignore[index]


# Thunderbird 24 with a real StartCom certificate (MimeKit's fixture), stored with LF line
# breaks as a local delivery agent hands mail on; OpenSSL converts them to CRLF before it
# hashes, and so must mailroute.
THUNDERBIRD_LF = DATA / "thunderbird24-startcom-signed-lf.eml"
STARTCOM = DATA / "StartComClass1PrimaryIntermediateClientCA.pem"
TB_SIGNED = 1385000000  # 2013-11-21: the certificate ran from 2013-10-31 to 2014-11-01
TB_EXPIRED = 1600000000
TB_EARLY = 1100000000


def test_lf_stored_thunderbird_signature_is_not_a_bad_digest() -> None:
    assert b"\r\n" not in THUNDERBIRD_LF.read_bytes()
    assert openssl_run(THUNDERBIRD_LF, STARTCOM, TB_SIGNED, chain=False) == "valid"
    _, report = mailroute_report(THUNDERBIRD_LF, STARTCOM, TB_SIGNED)
    (signer,) = report["signers"]  # type: ignore[misc]
    assert signer["reason"] not in ("bad-digest", "malformed")  # type: ignore[index]
    assert signer["encryption_key_preference"]["source"] == "rfc8551"  # type: ignore[index]


def test_lf_stored_thunderbird_signature_over_a_changed_body_is_a_bad_digest(
        tmp_path: Path) -> None:
    changed = tmp_path / "changed.eml"
    raw = THUNDERBIRD_LF.read_bytes()
    changed.write_bytes(raw.replace(b"Hopefully this works...", b"Hopefully this worked!", 1))
    assert changed.read_bytes() != raw
    assert openssl_run(changed, STARTCOM, TB_SIGNED, chain=False) == "bad-digest"
    assert mailroute_report(changed, STARTCOM, TB_SIGNED)[1]["reason"] == "bad-digest"


@pytest.mark.parametrize("at", [TB_EXPIRED, TB_EARLY], ids=["expired", "early"])
def test_lf_stored_thunderbird_validity_matches_openssl(at: int) -> None:
    openssl = openssl_verdict(THUNDERBIRD_LF, STARTCOM, at, partial=True)
    assert openssl in ("expired", "not-yet-valid")
    assert mailroute_report(THUNDERBIRD_LF, STARTCOM, at)[1]["reason"] == openssl


def test_lf_stored_thunderbird_untrusted_anchor_matches_openssl(other_ca: Path) -> None:
    assert openssl_verdict(THUNDERBIRD_LF, other_ca, TB_SIGNED) == "untrusted"
    assert mailroute_report(THUNDERBIRD_LF, other_ca, TB_SIGNED)[1]["reason"] == "untrusted"


def test_sha1_signed_certificate_chain_openssl_accepts_is_weak_algorithm() -> None:
    # StartCom signed its 2013 certificates with SHA-1: OpenSSL accepts the chain (the
    # StartCom intermediate as a partial-chain anchor), cryptography's path validation refuses
    # it, mailroute checks it itself and calls it sound but weak, as for SHA-1 signatures
    openssl = openssl_verdict(THUNDERBIRD_LF, STARTCOM, TB_SIGNED, partial=True)
    assert openssl == "valid"
    _, report = mailroute_report(THUNDERBIRD_LF, STARTCOM, TB_SIGNED)
    assert report["reason"] == expected(openssl, ".SHA1.") == "weak-algorithm"
