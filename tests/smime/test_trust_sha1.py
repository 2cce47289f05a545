"""Chains with a certificate signed with SHA-1: cryptography's path validation refuses them,
OpenSSL accepts them; mailroute checks them itself and calls a sound one ``weak-algorithm``,
never ``valid``, and anything else ``untrusted``. cryptography will not sign with SHA-1, so
``openssl x509 -req -sha1`` issues those certificates."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from cryptography import x509

from mailroute.smime.trust import TrustAnchors
from tests.smime.pki import NOW, Identity, issue

LEAF = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=emailProtection\nsubjectAltName=email:a@example.net\n")
SERVER = "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
SUB_CA = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"


def sha1_issue(folder: Path, name: str, issuer: Identity, extensions: str) -> Path:
    """A certificate for a new key, signed by ``issuer`` with SHA-1; returns the key file
    beside the certificate ``name.crt``."""
    key, csr, ext = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.ext"
    ext.write_text(extensions)
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj",
                    f"/O=Mailroute Test/CN={name}", "-keyout", str(key), "-out", str(csr)],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "x509", "-req", "-sha1", "-in", str(csr), "-CA",
                    str(issuer.cert_path), "-CAkey", str(issuer.key_path), "-set_serial", "7",
                    "-days", "30", "-extfile", str(ext), "-out", str(folder / f"{name}.crt")],
                   check=True, capture_output=True, timeout=60)
    return key


def soon() -> dt.datetime:
    """A moment after openssl issued its certificates (they begin when they are made)."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)


def load(folder: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / f"{name}.crt").read_bytes())


def test_a_sound_sha1_signed_leaf_is_weak_not_untrusted(tmp_path: Path) -> None:
    ca = issue(tmp_path, "ca", issuer=None, ca=True)
    sha1_issue(tmp_path, "leaf", ca, LEAF)
    leaf = load(tmp_path, "leaf")
    assert leaf.signature_hash_algorithm is not None
    assert leaf.signature_hash_algorithm.name == "sha1"
    assert TrustAnchors((ca.cert,)).check(leaf, [], soon()).status == "weak-algorithm"


def test_a_sha1_leaf_under_a_sha1_intermediate_is_weak_only_with_the_intermediate(
        tmp_path: Path) -> None:
    root = issue(tmp_path, "root", issuer=None, ca=True)
    sub_key = sha1_issue(tmp_path, "sub", root, SUB_CA)
    sub = Identity("sub", load(tmp_path, "sub"), root.key, tmp_path / "sub.crt", sub_key)
    sha1_issue(tmp_path, "leaf", sub, LEAF)
    leaf = load(tmp_path, "leaf")
    anchors = TrustAnchors((root.cert,))
    assert anchors.check(leaf, [sub.cert], soon()).status == "weak-algorithm"
    assert anchors.check(leaf, [], soon()).status == "untrusted"


def test_a_sha1_leaf_signed_by_another_key_under_the_anchor_s_name_is_untrusted(
        tmp_path: Path) -> None:
    ca = issue(tmp_path, "ca", issuer=None, ca=True)
    (tmp_path / "other").mkdir()
    other = issue(tmp_path / "other", "ca", issuer=None, ca=True)  # same name, another key
    sha1_issue(tmp_path, "forged", other, LEAF)
    forged = load(tmp_path, "forged")
    assert forged.issuer == ca.cert.subject
    assert TrustAnchors((ca.cert,)).check(forged, [], soon()).status == "untrusted"


def test_a_sha1_leaf_for_another_purpose_is_untrusted(tmp_path: Path) -> None:
    ca = issue(tmp_path, "ca", issuer=None, ca=True)
    sha1_issue(tmp_path, "server", ca, SERVER)
    assert TrustAnchors((ca.cert,)).check(load(tmp_path, "server"), [], soon()).status == (
        "untrusted")


def test_a_sha1_leaf_from_an_anchor_expired_by_then_is_not_weak(tmp_path: Path) -> None:
    ca = issue(tmp_path, "ca", issuer=None, ca=True, not_before=NOW - dt.timedelta(days=2),
               not_after=NOW + dt.timedelta(days=2))
    sha1_issue(tmp_path, "leaf", ca, LEAF)
    leaf = load(tmp_path, "leaf")
    later = NOW + dt.timedelta(days=10)  # the leaf is still valid, the anchor is not
    assert TrustAnchors((ca.cert,)).check(leaf, [], later).status != "weak-algorithm"


def test_an_anchor_not_yet_valid_is_not_yet_valid_and_an_expired_one_expired(
        tmp_path: Path) -> None:
    """Found by the crypto audit: every time fault in the chain read ``expired``, also an
    intermediate or anchor whose validity had not begun (openssl: "not yet valid")."""
    ca = issue(tmp_path, "ca", issuer=None, ca=True, not_before=NOW - dt.timedelta(days=2),
               not_after=NOW + dt.timedelta(days=2))
    leaf = issue(tmp_path, "leaf", issuer=ca, email="a@example.org",
                 not_before=NOW - dt.timedelta(days=30), not_after=NOW + dt.timedelta(days=30))
    anchors = TrustAnchors((ca.cert,))
    assert anchors.check(leaf.cert, [], NOW).status == "valid"
    assert anchors.check(leaf.cert, [], NOW - dt.timedelta(days=10)).status == "not-yet-valid"
    assert anchors.check(leaf.cert, [], NOW + dt.timedelta(days=10)).status == "expired"
