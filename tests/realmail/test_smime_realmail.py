"""Thunderbird/NSS and Outlook S/MIME signatures (tests/realmail/README.md): mailroute's verdict
is the one ``openssl cms -verify`` reaches at the same time with the same trust anchor.

OpenSSL checks the chain before the content, mailroute the content before the chain (a
forgery is reported as one whatever the certificate): the expected verdict is OpenSSL's on
the content alone (``-noverify``) when that fails, else OpenSSL's full verdict.

NSS signs Microsoft's encryption-key-preference attribute (1.3.6.1.4.1.311.16.4) into every
signature, which made every such signer ``malformed`` before. ``weak-algorithm`` is
mailroute's policy on top of a signature OpenSSL accepts (SHA-1).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailroute.mime import parse
from tests.disclaimer.conftest import WIDE, make_filter
from tests.disclaimer.helpers import MARKER, body_texts, run

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
                           "-no-CApath", "-no-CAstore",  # never the system's web PKI roots
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
                          ("unable to get local issuer certificate", "untrusted"),
                          # a root the message carries but the caller does not trust
                          ("self-signed certificate in certificate chain", "untrusted")):
        if text in errors:
            return verdict
    raise AssertionError(f"unexpected openssl result: {errors}")


def openssl_verdict(message: Path, ca: Path, at: int, *, partial: bool = False) -> str:
    """The content verdict when it fails, else the full one (mailroute's precedence)."""
    content = openssl_run(message, ca, at, chain=False)
    return (content if content != "valid"
            else openssl_run(message, ca, at, chain=True, partial=partial))


def mailroute_report(message: Path, ca: Path, at: int) -> tuple[int, dict[str, Any]]:
    code = "import sys; from mailroute.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", code, "smime", "verify", "--trust", str(ca),
                           "--json", "--now", str(at), "--in", str(message)],
                          capture_output=True, timeout=120, check=False)
    return done.returncode, json.loads(done.stdout)


def expected(openssl: str, sha1: bool) -> str:
    """What mailroute must say given OpenSSL's verdict: the same, except that a signature
    OpenSSL accepts is ``weak-algorithm`` when it is SHA-1."""
    return "weak-algorithm" if openssl == "valid" and sha1 else openssl


@pytest.mark.parametrize("name", MESSAGES)
@pytest.mark.parametrize("at", [SIGNED, EXPIRED, NOT_YET], ids=["in-time", "expired", "early"])
def test_verdict_matches_openssl(name: str, at: int) -> None:
    message = DATA / name
    openssl = openssl_verdict(message, CA, at)
    code, report = mailroute_report(message, CA, at)
    (signer,) = report["signers"]
    assert signer["reason"] == expected(openssl, ".SHA1." in name)
    assert report["reason"] == signer["reason"]
    assert code == (0 if signer["reason"] == "valid" else 1)


@pytest.mark.parametrize("name", MESSAGES)
def test_untrusted_anchor_matches_openssl(name: str, other_ca: Path) -> None:
    message = DATA / name
    openssl = openssl_verdict(message, other_ca, SIGNED)
    _, report = mailroute_report(message, other_ca, SIGNED)
    assert report["reason"] == expected(openssl, ".SHA1." in name)


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
    (signer,) = report["signers"]
    preference = signer["encryption_key_preference"]
    assert preference == {
        "source": "rfc8551",
        "issuer": "CN=NSS Test CA (RSA),O=BOGUS NSS,L=Mountain View,ST=California,C=US",
        "serial": "1e", "subject_key_identifier": "",
        "certificate_subject": signer["subject"],
    }
    assert signer["smime_capabilities"] == []  # NSS sends none here
    assert signer["aes_gcm"] is False


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
    (signer,) = report["signers"]
    assert signer["reason"] not in ("bad-digest", "malformed")
    assert signer["encryption_key_preference"]["source"] == "rfc8551"


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
    assert report["reason"] == expected(openssl, sha1=True) == "weak-algorithm"


# Outlook (simple-java-mail's fixtures, tests/realmail/README.md): SHA-1 signatures with
# Actalis certificates, the whole chain up to the Actalis root in the SignedData, stored with
# LF line breaks. Their CRL distribution points hold percent-escaped URIs, which a
# re-encoding of the certificates changes (the issuer's signature then fails).
ACTALIS = DATA / "ActalisAuthenticationRootCA.pem"


@dataclass(frozen=True)
class Outlook:
    name: str
    signed: int  # a minute after the signing time it claims, inside the certificate's life
    expired: int
    early: int
    text: bytes  # signed text to change for the bad-digest copy

    @property
    def path(self) -> Path:
        return DATA / self.name


OUTLOOK = [
    # Outlook (Word 15 editor) through outlook.com: opaque signed-data; certificate
    # 2018-11-28 to 2019-11-28
    Outlook("outlook-outlookcom-opaque-signed-lf.eml", 1543420200, 1600000000, 1500000000,
            b"Invio messaggio SMIME"),
    # Outlook through an Exchange 2013 server: multipart/signed with x-pkcs7-signature;
    # certificate 2021-02-22 to 2022-02-22
    Outlook("outlook-exchange-multipart-signed-lf.eml", 1614005800, 1700000000, 1600000000,
            b"\nText\n"),
]


def changed_copy(sample: Outlook, folder: Path) -> Path:
    """The message with one byte of its signed text changed (inside the base64 CMS of an
    opaque signature, re-encoded in lines as long as the original's)."""
    raw = sample.path.read_bytes()
    head, _, body = raw.partition(b"\n\n")
    if b"multipart/signed" in head:
        changed = raw.replace(sample.text, sample.text[:-2] + b"y\n", 1)
    else:
        cms = base64.b64decode(body)
        assert sample.text in cms
        cms = cms.replace(sample.text, sample.text[:-1] + b"e", 1)
        width = len(body.split(b"\n", 1)[0])
        encoded = base64.b64encode(cms)
        lines = [encoded[i:i + width] for i in range(0, len(encoded), width)]
        trailer = body[len(body.rstrip(b"\n")):]
        changed = head + b"\n\n" + b"\n".join(lines) + trailer
    assert len(changed) == len(raw)
    assert changed != raw
    out = folder / sample.name
    out.write_bytes(changed)
    return out


@pytest.mark.parametrize("sample", OUTLOOK, ids=lambda s: s.name)
@pytest.mark.parametrize("when", ["signed", "expired", "early"])
def test_outlook_verdict_matches_openssl(sample: Outlook, when: str) -> None:
    at = getattr(sample, when)
    openssl = openssl_verdict(sample.path, ACTALIS, at)
    code, report = mailroute_report(sample.path, ACTALIS, at)
    (signer,) = report["signers"]
    assert signer["reason"] == expected(openssl, sha1=True)
    assert code == 1  # SHA-1: never valid


@pytest.mark.parametrize("sample", OUTLOOK, ids=lambda s: s.name)
def test_outlook_signature_is_sound_but_sha1(sample: Outlook) -> None:
    # the comparison above would also pass if both tools were wrong alike
    assert openssl_run(sample.path, ACTALIS, sample.signed, chain=True) == "valid"
    assert mailroute_report(sample.path, ACTALIS, sample.signed)[1]["reason"] == (
        "weak-algorithm")
    assert mailroute_report(sample.path, ACTALIS, sample.expired)[1]["reason"] == "expired"
    assert mailroute_report(sample.path, ACTALIS, sample.early)[1]["reason"] == (
        "not-yet-valid")


@pytest.mark.parametrize("sample", OUTLOOK, ids=lambda s: s.name)
def test_outlook_signature_over_a_changed_body_is_a_bad_digest(sample: Outlook,
                                                               tmp_path: Path) -> None:
    changed = changed_copy(sample, tmp_path)
    assert openssl_run(changed, ACTALIS, sample.signed, chain=False) == "bad-digest"
    assert mailroute_report(changed, ACTALIS, sample.signed)[1]["reason"] == "bad-digest"


@pytest.mark.parametrize("sample", OUTLOOK, ids=lambda s: s.name)
def test_outlook_untrusted_anchor_matches_openssl(sample: Outlook, other_ca: Path) -> None:
    assert openssl_verdict(sample.path, other_ca, sample.signed) == "untrusted"
    assert mailroute_report(sample.path, other_ca, sample.signed)[1]["reason"] == "untrusted"


@pytest.mark.parametrize("sample", OUTLOOK, ids=lambda s: s.name)
def test_outlook_encryption_key_preference_names_the_signing_certificate(
        sample: Outlook) -> None:
    # Outlook signs both Microsoft's (1.3.6.1.4.1.311.16.4) and RFC 8551's attribute
    _, report = mailroute_report(sample.path, ACTALIS, sample.signed)
    (signer,) = report["signers"]
    preference = signer["encryption_key_preference"]
    assert preference["source"] == "rfc8551"
    assert preference["certificate_subject"] == signer["subject"]
    assert preference["issuer"].startswith("CN=Actalis Client Authentication CA")
    assert "aes256_cbc" in signer["smime_capabilities"]


@pytest.mark.parametrize("sample", OUTLOOK, ids=lambda s: s.name)
def test_outlook_signed_entity_survives_the_disclaimer(sample: Outlook,
                                                       tmp_path: Path) -> None:
    raw = sample.path.read_bytes()
    out = run(make_filter(tmp_path, var=[f"greeting={WIDE}"]), raw).data
    assert out is not None
    root = parse(out).root
    assert root.mime_type == "multipart/mixed"  # the footer beside, never inside
    assert body_texts(out)[-1][1].count(MARKER) == 1
    entity = tmp_path / "signed-entity.eml"
    entity.write_bytes(root.children[0].to_bytes())
    assert parse(raw).root.body_bytes() == root.children[0].body_bytes()
    assert openssl_run(entity, ACTALIS, sample.signed, chain=True) == "valid"
    assert mailroute_report(entity, ACTALIS, sample.signed)[1]["reason"] == "weak-algorithm"
