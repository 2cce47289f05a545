"""atheris harness for the CMS layer: decryption (EnvelopedData, AuthEnvelopedData) and
signature verification (detached and opaque SignedData) on mutated DER. Property: whatever
the bytes, only MailrouteError subclasses escape. Not collected by pytest.

The first input byte picks the operation, the rest is the CMS structure. Seeds are generated
at start with the test PKI (a signed, an opaque-signed, a CBC, a CBC+OAEP and a GCM message)
and written into the first corpus directory given (``fuzz/run cms`` passes one).

    .venv/bin/python fuzz/cms_fuzz.py -max_total_time=60 -max_len=8192 -rss_limit_mb=2048 DIR
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    from mailroute.errors import MailrouteError
    from mailroute.smime import Identity, Signer, TrustAnchors, decrypt, encrypt, sign, verify

from cryptography.hazmat.primitives.asymmetric import rsa
from tests.smime.pki import NOW, build_pki

ENTITY = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
          b"Fuzzing the CMS layer.\r\n")
LIMIT = 1 << 20
PKI = build_pki(Path(tempfile.mkdtemp(prefix="cms-fuzz-pki-")))
assert isinstance(PKI.alice.key, rsa.RSAPrivateKey)
IDENTITIES = [Identity(PKI.alice.cert, PKI.alice.key)]
TRUST = TrustAnchors((PKI.root.cert,))
DECRYPT, VERIFY_OPAQUE, VERIFY_DETACHED = 0, 1, 2


def seeds() -> dict[str, bytes]:
    """One input per operation and format, the operation byte first."""
    signer = Signer(PKI.alice.cert, PKI.alice.key, (PKI.issuing.cert,))
    return {
        "detached": bytes((VERIFY_DETACHED,)) + b"".join(sign([ENTITY], signer, signing_time=NOW)),
        "opaque": bytes((VERIFY_OPAQUE,)) + b"".join(
            sign([ENTITY], signer, signing_time=NOW, detached=False)),
        "cbc": bytes((DECRYPT,)) + b"".join(
            encrypt([ENTITY], [PKI.alice.cert], cipher="aes-256-cbc").chunks),
        "cbc-oaep": bytes((DECRYPT,)) + b"".join(
            encrypt([ENTITY], [PKI.alice.cert], cipher="aes-128-cbc", oaep=True).chunks),
        "gcm": bytes((DECRYPT,)) + b"".join(
            encrypt([ENTITY], [PKI.alice.cert, PKI.dave.cert], cipher="aes-256-gcm").chunks),
    }


def test_one_input(data: bytes) -> None:
    """Decrypt or verify the mutated structure; anything but a MailrouteError is a finding."""
    if not data:
        return
    operation, payload = data[0] % 3, data[1:]
    try:
        if operation == DECRYPT:
            decrypt(payload, IDENTITIES, max_size=LIMIT)
        else:
            verify(payload, content=ENTITY if operation == VERIFY_DETACHED else None,
                   trust=TRUST, at=NOW, from_addresses=["alice@example.org"], max_size=LIMIT)
    except MailrouteError:
        pass


def write_seeds(argv: list[str]) -> None:
    """Add the generated seeds to the first corpus directory on the command line."""
    folders = [Path(a) for a in argv[1:] if not a.startswith("-") and Path(a).is_dir()]
    if folders:
        for name, data in seeds().items():
            (folders[0] / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    write_seeds(sys.argv)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
