"""The certificates in a SignedData are used as received: their issuers signed those bytes.

asn1crypto's re-encoding normalises a percent-escaped URI (``cn%3dCA`` becomes ``cn=CA``), as
found in the CRL distribution points of Actalis' S/MIME certificates (Outlook's samples in
tests/realmail): a re-encoded certificate no longer matches its issuer's signature, and a
sound chain was reported ``untrusted``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mailroute.smime import Signer, SignerStatus, TrustAnchors, sign, verify
from tests.smime.conftest import ENTITY, run
from tests.smime.pki import Identity, issue

pytestmark = pytest.mark.interop
MAX = 1 << 26
ESCAPED = "ldap://ldap.example.org/cn%3dMailroute%20Test%20CA?certificateRevocationList"


def _escaped_crl() -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(ESCAPED)], relative_name=None,
        reasons=None, crl_issuer=None)])


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Identity, Identity, Identity]:
    """A root, an intermediate and a leaf, both issued with an escaped CRL URI."""
    root = issue(tmp_path, "root", issuer=None, ca=True)
    sub = issue(tmp_path, "sub", issuer=root, ca=True, extensions=(_escaped_crl(),))
    leaf = issue(tmp_path, "leaf", issuer=sub, email="leaf@example.org",
                 extensions=(_escaped_crl(),))
    return root, sub, leaf


def test_a_certificate_with_an_escaped_uri_keeps_its_issuer_s_signature(
        chain: tuple[Identity, Identity, Identity], tmp_path: Path) -> None:
    root, sub, leaf = chain
    der = b"".join(sign([ENTITY], Signer(leaf.cert, leaf.key, (sub.cert,)),
                        signing_time=dt.datetime.now(dt.UTC), detached=True))
    (tmp_path / "sig.der").write_bytes(der)
    (tmp_path / "entity").write_bytes(ENTITY)
    run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "sig.der",
        "-content", tmp_path / "entity", "-CAfile", root.cert_path, "-purpose", "smimesign",
        "-out", "/dev/null")  # OpenSSL accepts the chain
    result = verify(der, content=ENTITY, trust=TrustAnchors((root.cert,)),
                    at=dt.datetime.now(dt.UTC), max_size=MAX)
    assert result.signers[0].status is SignerStatus.VALID
    signer = result.signers[0].certificate
    assert signer is not None
    # the certificate handed on (to the key directory, the report) is the one received
    assert signer.public_bytes(Encoding.DER) == leaf.cert.public_bytes(Encoding.DER)
    assert ESCAPED.encode() in signer.public_bytes(Encoding.DER)
