"""mailroute.digests: SHA-256 and HMAC-SHA-256 equal hashlib's and hmac's, without OpenSSL."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from mailroute.digests import HmacKey, compare_digest, hmac_sha256, sha256

# RFC 4231, section 4: test cases 1, 2, 3, 4, 6 and 7 (case 5 truncates the output).
RFC_4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than "
     b"block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


def test_rfc_4231_vectors() -> None:
    for key, data, expected in RFC_4231:
        assert hmac_sha256(key, data).hex() == expected


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_equals_the_standard_library(key: bytes, data: bytes) -> None:
    assert hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


@given(st.binary(max_size=100), st.lists(st.binary(max_size=80), max_size=5))
def test_a_key_schedule_serves_many_messages(key: bytes, parts: list[bytes]) -> None:
    keyed = HmacKey(key)
    for _ in range(2):  # the schedule is not consumed by a use
        assert keyed.mac(*parts) == hmac.new(key, b"".join(parts), hashlib.sha256).digest()


@given(st.binary(max_size=300))
def test_sha256_equals_hashlib(data: bytes) -> None:
    digest = sha256(data)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    copy = digest.copy()
    copy.update(b"more")
    assert copy.digest() == hashlib.sha256(data + b"more").digest()


def test_compare_digest() -> None:
    assert compare_digest(b"abc", b"abc")
    assert not compare_digest(b"abc", b"abd")
    assert not compare_digest(b"abc", b"ab")
    assert compare_digest("tag", "tag")


def test_openssl_is_not_loaded() -> None:
    code = ("import sys; from mailroute.digests import hmac_sha256, sha256; "
            "hmac_sha256(b'k', b'm'); sha256(b'x').digest(); "
            "print(sorted(m for m in ('hashlib', 'hmac', '_hashlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
